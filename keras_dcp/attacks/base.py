"""The ``Attack`` contract and what every attack shares: validation, the
reference optimizer, and the on-disk store of paid-for queries.

Contract (checked for every attack by one parametrized test):

* ``Attack(make_clone, ...).extract(victim, ...)`` takes a
  :class:`~keras_dcp.attacks.BlackBox` and returns the trained clone, a
  ``keras.Model`` mapping ``(n, H, W, C)`` images to ``(n, K)`` probabilities;
* every victim answer the clone learns from is paid for through
  ``victim.query`` (and so counted and logged);
* after ``extract``, ``attack.queries_used`` is the number of victim answers
  the attack paid for (including answers reused from a checkpoint) and
  ``attack.history`` a dict of per-epoch / per-iteration metrics.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, Callable, ClassVar

import keras
import numpy as np

from keras_dcp.attacks.blackbox import BlackBox, BudgetExceededError
from keras_dcp.validation import check_int


class Attack:
    """Base class of the model-stealing attacks.

    Class attributes (what the attack needs; read by the runner, the CLI and
    the tables through :mod:`keras_dcp.attacks.registry`):

    * ``name``: its registry name (set by ``register_attack``);
    * ``needs_query_images``: it queries natural images the thief owns;
    * ``label_only``: it learns from top-1 labels only;
    * ``clone_training_arguments``: the runner's clone-training settings
      (``epochs``, ``batch_size``, ``learning_rate``) it accepts.

    Args:
        make_clone: callable ``() -> keras.Model``, uncompiled, mapping images
            ``(n, H, W, C)`` to softmax probabilities ``(n, K)``. It is called
            once per :meth:`extract` (inside the distribution strategy's scope
            when one is given).
        seed: seeds Python, NumPy and the Keras backend at the start of
            :meth:`extract` (``keras.utils.set_random_seed``), so runs repeat.
        verbose: 0 silent, 1 progress bars.
    """

    name: ClassVar[str] = ""
    needs_query_images: ClassVar[bool] = False
    label_only: ClassVar[bool] = False
    clone_training_arguments: ClassVar[tuple[str, ...]] = ()

    def __init__(self, make_clone: Callable[[], keras.Model], seed: int = 0, verbose: int = 1):
        if not callable(make_clone):
            raise ValueError(f"`make_clone` must be a callable returning a keras.Model; got {make_clone!r}.")
        self.make_clone = make_clone
        self.seed = check_int("seed", seed)
        self.verbose = int(verbose) if isinstance(verbose, bool) else check_int("verbose", verbose, minimum=0)
        self.history: dict = {}
        self.queries_used = 0

    def extract(self, victim: BlackBox, *args: Any, **kwargs: Any) -> keras.Model:
        """Steal ``victim``; returns the trained clone (a ``keras.Model``)."""
        raise NotImplementedError

    # -- shared helpers -------------------------------------------------------

    @staticmethod
    def _check_victim(victim):
        if not isinstance(victim, BlackBox):
            raise ValueError(
                "`victim` must be a keras_dcp.attacks.BlackBox (wrap the model: BlackBox(model, budget=...)); "
                f"got {type(victim).__name__}."
            )
        return victim

    @staticmethod
    def _resolve_budget(victim, budget, available=None, name="budget"):
        """The number of queries to spend: ``budget``, else what the victim and data allow.

        Raises BudgetExceededError up front (nothing is queried) if ``budget``
        exceeds what the victim has left, and ValueError if it exceeds
        ``available`` (e.g. the number of query images).
        """
        if budget is not None:
            budget = check_int(name, budget, minimum=1)
            if victim.remaining is not None and budget > victim.remaining:
                raise BudgetExceededError(
                    f"The attack asks for {budget} queries but the victim has {victim.remaining} left."
                )
            if available is not None and budget > available:
                raise ValueError(f"`{name}`={budget} exceeds the {available} query images given.")
            return budget
        limits = [v for v in (victim.remaining, available) if v is not None]
        if not limits:
            raise ValueError(f"Give a `{name}`: the victim has no budget and the attack no natural limit.")
        return int(min(limits))

    def _new_clone(self, sample=None):
        """``make_clone()``, checked and built (on ``sample``, one batch) if it is not yet."""
        clone = self.make_clone()
        if not isinstance(clone, keras.Model):
            raise ValueError(f"`make_clone()` must return a keras.Model; got {type(clone).__name__}.")
        if not clone.built and sample is not None:
            clone(sample)
        return clone


def check_distribute_strategy(distribute_strategy):
    """None or an object with a ``scope()`` (a ``tf.distribute.Strategy``)."""
    if distribute_strategy is not None and not hasattr(distribute_strategy, "scope"):
        raise ValueError(
            "`distribute_strategy` must be a tf.distribute.Strategy (or None); "
            f"got {type(distribute_strategy).__name__}."
        )
    return distribute_strategy


class _NullScope:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def strategy_scope(distribute_strategy):
    """``distribute_strategy.scope()``, or a do-nothing context without one."""
    return _NullScope() if distribute_strategy is None else distribute_strategy.scope()


@keras.saving.register_keras_serializable(package="keras_dcp")
class SGDL2(keras.optimizers.SGD):
    """SGD with *coupled* weight decay, as ``torch.optim.SGD(weight_decay=...)``.

    .. math::

        g \\leftarrow g + \\lambda w, \\quad
        v \\leftarrow \\mu v - \\eta g, \\quad
        w \\leftarrow w + \\mu v - \\eta g \\;(\\text{nesterov})

    The reference KnockoffNets, MAZE and DFME code trains with this update;
    Keras' own ``SGD(weight_decay=...)`` is the decoupled variant (the decay
    skips the momentum buffer), which behaves differently at lr 0.1.

    Args:
        l2: the decay ``lambda`` (5e-4 in the references).
        **kwargs: ``keras.optimizers.SGD`` arguments.
    """

    def __init__(self, l2=5e-4, **kwargs):
        super().__init__(**kwargs)
        self.l2 = float(l2)

    def update_step(self, gradient, variable, learning_rate):
        if self.l2:
            gradient = keras.ops.add(
                gradient, keras.ops.multiply(keras.ops.cast(self.l2, variable.dtype), variable)
            )
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["l2"] = self.l2
        return config


def reference_sgd(learning_rate=0.1, total_steps=None, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine"):
    """The reference clone optimizer: SGD lr 0.1, momentum 0.9, nesterov, wd 5e-4, cosine.

    ``schedule="cosine"`` decays ``lr_t = lr (1 + cos(pi t / T)) / 2`` over
    ``T = total_steps`` optimizer steps; ``"constant"`` keeps ``lr``.
    """
    if schedule == "cosine":
        if not total_steps or total_steps < 1:
            raise ValueError(f"A cosine schedule needs total_steps >= 1; got {total_steps!r}.")
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=int(total_steps))
    elif schedule == "constant":
        rate = learning_rate
    else:
        raise ValueError(f"`schedule` must be 'cosine' or 'constant'; got {schedule!r}.")
    return SGDL2(l2=weight_decay, learning_rate=rate, momentum=momentum, nesterov=nesterov)


def fingerprint(array, max_items=4096):
    """A short hash of an array's shape, dtype and a sample of its values (to match a checkpoint to its data)."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256(repr((array.shape, str(array.dtype))).encode())
    flat = array.reshape(-1)
    if flat.size:
        step = max(1, flat.size // max_items)
        digest.update(np.ascontiguousarray(flat[::step]).tobytes())
    return digest.hexdigest()[:16]


def _atomic_write(path, write):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class QueryStore:
    """Paid-for queries on disk, so an interrupted attack never pays twice.

    ``directory/queries/chunk-NNNNNN.npz`` holds one answered batch each (any
    arrays: indices into a query set, generated images, answers...), written
    atomically right after the victim answered. ``directory/state.json`` holds
    small attack state and ``directory/meta.json`` what the run was (attack,
    data fingerprint, budget) so a resume against other data is refused.
    """

    def __init__(self, directory):
        self.directory = os.fspath(directory)
        self._chunk_dir = os.path.join(self.directory, "queries")
        os.makedirs(self._chunk_dir, exist_ok=True)
        self._next = len(self._chunk_files())

    def _chunk_files(self):
        return sorted(f for f in os.listdir(self._chunk_dir) if f.startswith("chunk-") and f.endswith(".npz"))

    def check_meta(self, meta):
        """Write ``meta`` on a fresh store; on resume, refuse a mismatch (ValueError)."""
        path = os.path.join(self.directory, "meta.json")
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            diffs = {k: (saved.get(k), v) for k, v in meta.items() if saved.get(k) != v}
            if diffs:
                raise ValueError(
                    f"Checkpoint {self.directory!r} belongs to another run ({diffs}); use a new checkpoint_dir."
                )
        else:
            _atomic_write(path, lambda tmp: _write_json(tmp, meta))

    def append(self, **arrays):
        path = os.path.join(self._chunk_dir, f"chunk-{self._next:06d}.npz")
        _atomic_write(path, lambda tmp: _save_npz(tmp, arrays))
        self._next += 1

    def chunks(self):
        """Every stored chunk in order, as dicts of arrays."""
        out = []
        for name in self._chunk_files():
            with np.load(os.path.join(self._chunk_dir, name)) as data:
                out.append({key: data[key] for key in data.files})
        return out

    def load(self, *keys):
        """The stored chunks concatenated per key: ``{key: array}`` (empty dict if none)."""
        chunks = self.chunks()
        if not chunks:
            return {}
        return {key: np.concatenate([c[key] for c in chunks], axis=0) for key in (keys or chunks[0].keys())}

    def read_state(self):
        path = os.path.join(self.directory, "state.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return json.load(f)

    def write_state(self, state):
        _atomic_write(os.path.join(self.directory, "state.json"), lambda tmp: _write_json(tmp, state))

    def path(self, *parts):
        return os.path.join(self.directory, *parts)


def _write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)


def _save_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def make_progbar(total, verbose, unit="queries"):
    """A Keras progress bar over ``total`` (None when ``verbose`` is 0)."""
    if not verbose:
        return None
    return keras.utils.Progbar(total, unit_name=unit, verbose=1)
