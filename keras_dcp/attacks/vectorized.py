"""Training many KnockoffNets clones at once: one compiled program, the clones' variables stacked (JAX).

A defense sweep trains dozens of clones that share an architecture, a budget
and the training recipe. On the JAX backend :func:`train_clones` trains ``N``
of them together: the training step of *one* clone is written as a pure
function of its variables over ``model.stateless_call``, ``jax.vmap`` maps it
over the clones' stacked variables, and ``jax.jit`` compiles the result once.
Each clone keeps its own seed (initial weights from
``keras.utils.set_random_seed(seed); make_clone()``, as
:class:`~keras_dcp.attacks.KnockoffNets` builds them), its own transfer set
(indices into shared query images, and targets), its own data order and its
own augmentation; ``vmap`` only batches the arithmetic, so clone ``i`` trained
with others equals clone ``i`` trained alone up to float rounding.

The step is the reference clone training of KnockoffNets written out
(:class:`~keras_dcp.attacks.KnockoffNets` gets it from ``compile`` + ``fit``):

.. math::

    \\mathcal{L} = -\\frac{1}{b} \\sum_{i \\in \\text{batch}} \\sum_k t_{ik} \\log \\operatorname{clip}(q_{ik}, 10^{-7}, 1 - 10^{-7}),
    \\qquad g \\leftarrow \\nabla_w \\mathcal{L} + \\lambda w, \\quad
    v \\leftarrow \\mu v - \\eta_t g, \\quad w \\leftarrow w + \\mu v - \\eta_t g

(Keras' ``CategoricalCrossentropy`` on the clone's probabilities ``q``, and
:class:`~keras_dcp.attacks.SGDL2`: ``lambda = 5e-4`` *coupled*, ``mu = 0.9``
Nesterov) with ``eta_t = eta (1 + cos(pi t / T)) / 2`` over all ``T`` steps,
batches of 64 (the last one smaller), an optional pad-4 crop + flip
(:func:`keras_dcp.augment.random_crop_flip_jax`). One step from the same
weights on the same batch equals Keras' ``train_on_batch`` with
:func:`~keras_dcp.attacks.reference_sgd` (tested to 1e-5). What differs from
``KnockoffNets.extract`` is only the random data order (drawn from
``jax.random`` per clone, not by ``fit``), so a clone trained here and one from
``extract`` are two draws of the same training, equally accurate on average.

Example (JAX backend):

>>> trained = train_clones(make_clone, seeds=[0, 0, 1], images=x_queries, indices=rows, targets=targets,
...                        training=CloneTraining(epochs=30))  # doctest: +SKIP
>>> probabilities = trained.predict(x_test)  # (3, n, K)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
import time
from typing import Callable, Iterator, Sequence

import keras
import numpy as np

from keras_dcp.validation import check_choice, check_int

#: Clone precisions: float32, or bfloat16 compute with float32 variables.
PRECISIONS = ("float32", "mixed_bfloat16")


@contextlib.contextmanager
def precision_policy(precision: str = "float32") -> Iterator[None]:
    """Build models under the Keras dtype policy ``precision`` (restored afterwards)."""
    check_choice("precision", precision, PRECISIONS)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def with_precision(make_clone: Callable[[], keras.Model], precision: str = "float32") -> Callable[[], keras.Model]:
    """``make_clone`` whose models are built under ``precision`` (itself for ``"float32"``)."""
    check_choice("precision", precision, PRECISIONS)
    if precision == "float32":
        return make_clone

    def make_clone_with_precision():
        with precision_policy(precision):
            return make_clone()

    return make_clone_with_precision


def require_jax(what: str = "Training clones together") -> None:
    """A ValueError unless the Keras backend is JAX."""
    if keras.backend.backend() != "jax":
        raise ValueError(f"{what} needs the JAX backend (KERAS_BACKEND=jax); the backend is {keras.backend.backend()}.")


@dataclasses.dataclass(frozen=True)
class CloneTraining:
    """The clone-training recipe (KnockoffNets' reference defaults).

    Clones trained together must share it (and their budget), because they
    take their steps together.
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"
    augment: bool = False

    def __post_init__(self):
        check_int("epochs", self.epochs, minimum=1)
        check_int("batch_size", self.batch_size, minimum=1)
        check_choice("lr_schedule", self.lr_schedule, ("cosine", "constant"))

    @classmethod
    def of(cls, attack) -> "CloneTraining":
        """The recipe of a :class:`~keras_dcp.attacks.KnockoffNets` instance."""
        return cls(
            epochs=attack.epochs, batch_size=attack.batch_size, learning_rate=attack.learning_rate,
            momentum=attack.momentum, nesterov=attack.nesterov, weight_decay=attack.weight_decay,
            lr_schedule=attack.lr_schedule, augment=attack.augment,
        )

    def steps_per_epoch(self, transfer_size: int) -> int:
        return math.ceil(transfer_size / self.batch_size)

    def learning_rates(self, transfer_size: int) -> np.ndarray:
        """``eta_t`` for every step ``t`` of the run, float32, as Keras' ``CosineDecay`` computes it."""
        total = self.epochs * self.steps_per_epoch(transfer_size)
        rate = np.float32(self.learning_rate)
        if self.lr_schedule == "constant":
            return np.full(total, rate, "float32")
        fraction = np.arange(total, dtype="float32") / np.float32(total)
        return (rate * (np.float32(0.5) * (np.float32(1.0) + np.cos(np.float32(math.pi) * fraction)))).astype(
            "float32"
        )


def build_clones(make_clone: Callable[[], keras.Model], seeds: Sequence[int], sample: np.ndarray,
                 precision: str = "float32") -> list[keras.Model]:
    """One clone per seed: ``keras.utils.set_random_seed(seed); make_clone()`` (built on ``sample``).

    Raises ValueError if ``make_clone`` does not return a ``keras.Model`` or the
    clones' variables differ in number or shape (they must share an architecture).
    """
    models = []
    for seed in seeds:
        keras.utils.set_random_seed(int(seed))
        with precision_policy(precision):
            model = make_clone()
        if not isinstance(model, keras.Model):
            raise ValueError(f"`make_clone()` must return a keras.Model; got {type(model).__name__}.")
        if not model.built:
            model(sample[:1])
        models.append(model)
    reference = _signature(models[0])
    for model in models[1:]:
        if _signature(model) != reference:
            raise ValueError(
                "Clones trained together must share an architecture; `make_clone()` returned different ones."
            )
    return models


def _signature(model):
    return [(tuple(v.shape), str(v.dtype)) for v in model.trainable_variables + model.non_trainable_variables]


def _stack(models, attribute):
    import jax.numpy as jnp

    columns = zip(*(getattr(model, attribute) for model in models))
    return [jnp.stack([jnp.asarray(v.value) for v in column]) for column in columns]


def cross_entropy(targets, probabilities):
    """Keras' ``CategoricalCrossentropy()`` (probabilities in, mean over the batch): a scalar."""
    per_sample = keras.ops.categorical_crossentropy(targets, probabilities, from_logits=False)
    return keras.ops.mean(per_sample)


def sgd_l2_update(weights, gradients, velocities, learning_rate, training: CloneTraining):
    """:class:`~keras_dcp.attacks.SGDL2`'s update on lists of arrays: ``(weights, velocities)`` after one step."""
    new_weights, new_velocities = [], []
    for w, g, v in zip(weights, gradients, velocities):
        g = g.astype(w.dtype)
        if training.weight_decay:
            g = g + training.weight_decay * w
        v = v * training.momentum - g * learning_rate
        w = w + (v * training.momentum - g * learning_rate if training.nesterov else v)
        new_weights.append(w)
        new_velocities.append(v)
    return new_weights, new_velocities


def clone_step(template: keras.Model, training: CloneTraining, size: int):
    """The training step of one clone on one batch of ``size`` rows, a pure JAX function.

    ``step(state, images, rows, targets, order, epoch_key, start, step_index, learning_rate)
    -> (state, loss)`` with ``state = (trainable, non_trainable, velocities)``
    (lists of arrays, the template's variable order): the batch is
    ``images[rows[order[start : start + size]]]`` with targets
    ``targets[order[start : start + size]]``, augmented with the key
    ``fold_in(fold_in(epoch_key, 1), step_index)`` when ``training.augment``.
    """
    import jax

    from keras_dcp.augment import random_crop_flip_jax

    def loss_fn(trainable, non_trainable, x, y):
        probabilities, non_trainable = template.stateless_call(trainable, non_trainable, x, training=True)
        return cross_entropy(y, keras.ops.cast(probabilities, "float32")), non_trainable

    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state, images, rows, targets, order, epoch_key, start, step_index, learning_rate):
        trainable, non_trainable, velocities = state
        ids = jax.lax.dynamic_slice_in_dim(order, start, size)
        x = images[rows[ids]]
        y = targets[ids]
        if training.augment:
            key = jax.random.fold_in(jax.random.fold_in(epoch_key, 1), step_index)
            x = random_crop_flip_jax(key, x, pad=4, flip=True)
        (loss, non_trainable), gradients = value_and_grad(trainable, non_trainable, x, y)
        trainable, velocities = sgd_l2_update(trainable, gradients, velocities, learning_rate, training)
        return (trainable, list(non_trainable), velocities), loss

    return step


@dataclasses.dataclass
class TrainedClones:
    """What :func:`train_clones` returns.

    Attributes:
        models: the trained clones (``keras.Model``, weights written back).
        losses: ``(N, epochs)`` mean training loss per clone and epoch.
        seconds: wall time of the training (compilation included).
        images: images trained on, all clones together (``N * epochs * B``).
        images_per_second: ``images / seconds``.
        compile_seconds: wall time of the first step (compilation, mostly).
    """

    models: list
    losses: np.ndarray
    seconds: float
    images: int
    compile_seconds: float
    _trainable: list = dataclasses.field(default=None, repr=False)
    _non_trainable: list = dataclasses.field(default=None, repr=False)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def predict(self, x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
        """Every clone's probabilities on ``x``: ``(n, H, W, C) -> (N, n, K)`` float32.

        One vmapped forward pass (inference mode) per batch of ``batch_size``.
        """
        import jax

        template = self.models[0]

        def forward(trainable, non_trainable, batch):
            return template.stateless_call(trainable, non_trainable, batch, training=False)[0]

        run = _compiled(("predict", _architecture(template)), lambda: jax.jit(jax.vmap(forward, in_axes=(0, 0, None))))
        x = np.asarray(x, "float32")
        batch_size = max(1, min(int(batch_size), len(x)))
        out = []
        for start in range(0, len(x), batch_size):
            batch = x[start : start + batch_size]
            rows = len(batch)
            if rows < batch_size:  # one compiled shape
                batch = np.concatenate([batch, np.zeros((batch_size - rows, *x.shape[1:]), "float32")])
            out.append(np.asarray(run(self._trainable, self._non_trainable, batch), "float32")[:, :rows])
        return np.concatenate(out, axis=1)


def train_clones(
    make_clone: Callable[[], keras.Model],
    seeds: Sequence[int],
    images: np.ndarray,
    indices: np.ndarray,
    targets: np.ndarray,
    training: CloneTraining = CloneTraining(),
    precision: str = "float32",
    verbose: int = 1,
) -> TrainedClones:
    """Train ``N = len(seeds)`` clones together on their transfer sets (JAX backend).

    Args:
        make_clone: ``() -> keras.Model`` (uncompiled, probabilities out); the
            same architecture for every call.
        seeds: one per clone: its initial weights, data order and augmentation.
        images: the shared query images, float32 ``(n, H, W, C)``; kept on the device.
        indices: ``(N, B)`` ints, clone ``i``'s transfer set is ``images[indices[i]]``.
        targets: ``(N, B, K)`` float32 training targets (soft answers or one-hot
            labels, :meth:`KnockoffNets.training_targets`); kept on the device.
        training: the shared recipe (:class:`CloneTraining`).
        precision: ``"float32"`` or ``"mixed_bfloat16"`` (bfloat16 compute,
            float32 variables and softmax).
        verbose: 1 shows one progress bar for all clones, in images per second.

    Returns:
        :class:`TrainedClones`.
    """
    require_jax()
    import jax
    import jax.numpy as jnp

    seeds = [check_int("seed", s) for s in seeds]
    images = np.asarray(images, "float32")
    indices = np.asarray(indices)
    targets = np.asarray(targets, "float32")
    num_clones = len(seeds)
    if not num_clones:
        raise ValueError("Give at least one seed (one clone).")
    if images.ndim != 4 or indices.ndim != 2 or targets.ndim != 3:
        raise ValueError(f"Expected images (n, H, W, C), indices (N, B), targets (N, B, K); got "
                         f"{images.shape}, {indices.shape}, {targets.shape}.")
    if indices.shape[0] != num_clones or targets.shape[:2] != indices.shape:
        raise ValueError(f"{num_clones} seeds need indices ({num_clones}, B) and targets ({num_clones}, B, K); got "
                         f"{indices.shape} and {targets.shape}.")
    if indices.size and (indices.min() < 0 or indices.max() >= len(images)):
        raise ValueError(f"`indices` must lie in [0, {len(images)}).")
    transfer_size = indices.shape[1]
    if transfer_size < 1:
        raise ValueError("Empty transfer sets: nothing to train on.")

    models = build_clones(make_clone, seeds, images, precision)
    template = models[0]
    trainable = _stack(models, "trainable_variables")
    state = (trainable, _stack(models, "non_trainable_variables"), [jnp.zeros_like(w) for w in trainable])
    clone_keys = jnp.stack([jax.random.PRNGKey(seed) for seed in seeds])
    device_images = jnp.asarray(images)
    device_rows = jnp.asarray(indices, dtype="int32")
    device_targets = jnp.asarray(targets)

    # The step depends on the architecture, the optimizer's constants and augmentation, not on the schedule
    # or the epochs; looked up once per batch size (not per step: the key costs a JSON dump).
    step_key = ("step", _architecture(template), training.momentum, training.nesterov, training.weight_decay,
                training.augment)
    steps_by_size = {}

    def step_for(size):
        if size not in steps_by_size:
            steps_by_size[size] = _compiled(step_key + (size,), lambda: _vectorized_step(template, training, size))
        return steps_by_size[size]

    epoch_orders = _compiled(("orders", transfer_size), lambda: _epoch_orders(transfer_size))

    batch = training.batch_size
    steps = training.steps_per_epoch(transfer_size)
    rates = training.learning_rates(transfer_size)
    progress = _progress(num_clones * training.epochs * transfer_size, num_clones, verbose)
    losses = np.zeros((num_clones, training.epochs), "float64")
    started = time.perf_counter()
    compile_seconds = None
    in_flight = None
    for epoch in range(training.epochs):
        epoch_keys, orders = epoch_orders(clone_keys, np.int32(epoch))
        epoch_losses = []
        for s in range(steps):
            start = s * batch
            size = min(batch, transfer_size - start)
            state, loss = step_for(size)(
                state, device_images, device_rows, device_targets, orders, epoch_keys,
                np.int32(start), np.int32(s), rates[epoch * steps + s],
            )
            epoch_losses.append(loss)
            if compile_seconds is None:
                loss.block_until_ready()
                compile_seconds = time.perf_counter() - started
            if progress is not None:
                # One step in flight: the bar counts finished steps, so its rate is the real images/s.
                if in_flight is not None:
                    in_flight[0].block_until_ready()
                    progress.update(num_clones * in_flight[1])
                in_flight = (loss, size)
        sizes = np.array([min(batch, transfer_size - s * batch) for s in range(steps)], "float64")
        # The epoch's loss, as Keras reports it: the mean over samples.
        losses[:, epoch] = (np.asarray(jnp.stack(epoch_losses, axis=1)) * sizes).sum(axis=1) / transfer_size
    jax.block_until_ready(state)
    seconds = time.perf_counter() - started
    if progress is not None:
        if in_flight is not None:
            progress.update(num_clones * in_flight[1])
        progress.close()
    trainable, non_trainable, _ = state
    for index, model in enumerate(models):
        for variable, stacked in zip(model.trainable_variables, trainable):
            variable.assign(stacked[index])
        for variable, stacked in zip(model.non_trainable_variables, non_trainable):
            variable.assign(stacked[index])
    return TrainedClones(
        models=models, losses=losses, seconds=seconds, images=num_clones * training.epochs * transfer_size,
        compile_seconds=float(compile_seconds or 0.0), _trainable=trainable, _non_trainable=non_trainable,
    )


#: Compiled programs by (what, architecture, recipe, batch): groups of clones of one sweep compile once.
_COMPILED: dict = {}


def _compiled(key, make):
    if key not in _COMPILED:
        if len(_COMPILED) >= 16:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = make()
    return _COMPILED[key]


def _architecture(model):
    """What decides the compiled program: the model's config (layer names replaced by positions) and variables.

    Two builds of one ``make_clone`` differ only in Keras' automatic names
    (``conv2d_3`` vs ``conv2d_7``), so they share their compiled programs.
    """
    text = model.to_json()
    names = list(dict.fromkeys(re.findall(r'"name": "([^"]*)"', text)))
    for position, name in sorted(enumerate(names), key=lambda item: -len(item[1])):
        text = text.replace(f'"{name}"', f'"#{position}"')
    return text, tuple(_signature(model))


def _epoch_orders(transfer_size):
    """``(keys (N, 2), epoch) -> (epoch_keys, orders (N, B))``: each clone's key and data order for the epoch."""
    import jax

    def orders(keys, epoch):
        epoch_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, epoch)
        permute = jax.vmap(lambda k: jax.random.permutation(jax.random.fold_in(k, 0), transfer_size))
        return epoch_keys, permute(epoch_keys)

    return jax.jit(orders)


def _vectorized_step(template, training, size):
    import jax

    batched = jax.vmap(clone_step(template, training, size), in_axes=(0, None, 0, 0, 0, 0, None, None, None))
    # Donated state buffers are reused in place on an accelerator (the CPU backend cannot donate).
    return jax.jit(batched, donate_argnums=(0,) if jax.default_backend() != "cpu" else ())


def _progress(total, num_clones, verbose):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", unit_scale=True, desc=f"training {num_clones} clone(s)", leave=False)


__all__ = [
    "PRECISIONS",
    "CloneTraining",
    "TrainedClones",
    "build_clones",
    "clone_step",
    "cross_entropy",
    "precision_policy",
    "require_jax",
    "sgd_l2_update",
    "train_clones",
    "with_precision",
]
