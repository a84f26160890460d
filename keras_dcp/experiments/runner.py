"""``run_experiment``: every defense setting against every attack, as one results dict.

For each defense spec ``d`` the victim ``f`` is served as
``f_d = keras_dcp.protect(f, d)`` (or ``f`` itself for ``none``) behind a
metered :class:`keras_dcp.attacks.BlackBox`; each attack steals a clone from
it with the same seed, query images and budget; the clone is scored on the
victim's test set. Backend-agnostic: Keras 3 and NumPy only (MAZE and DFME
bring TensorFlow in through :mod:`keras_dcp.attacks` when asked for).
"""

from __future__ import annotations

import hashlib
import os
import time
from typing import Any, Callable, Sequence

import keras
import numpy as np

from keras_dcp.attacks.registry import ATTACKS, attack_class, build_attack
from keras_dcp.attacks.vectorized import with_precision
from keras_dcp.data.images import to_float
from keras_dcp.defenses.registry import build_defense, describe
from keras_dcp.experiments.parallel import CloneBatch, check_parallel_clones, resolve_parallel_clones
from keras_dcp.experiments.schema import validate_results
from keras_dcp.inference import predict_padded
from keras_dcp.model_io import load_keras_model
from keras_dcp.validation import check_choice, check_int

#: An answer counts as perturbed when some probability moved by more than this.
PERTURBED_TOLERANCE = 1e-6


class DefenseMeter:
    """The defended victim as a callable that also measures what the defense did.

    ``meter(x)`` returns the protected model's answers ``y'`` ``(n, K)``; while
    ``recording`` it also runs the undefended victim for ``y`` and accumulates
    ``sum_i ||y'_i - y_i||_1`` and ``#{i : max_k |y'_ik - y_ik| > 1e-6}``.
    Wrapped in a :class:`~keras_dcp.attacks.BlackBox` it sees exactly the
    attacker's paid-for queries; evaluation happens after ``recording`` is
    turned off.

    ``cache`` (a dict shared by the meters of one defense) keeps the answers
    to every recorded batch by its content: a second run asking the same
    images (the label-only attack after the soft-label one, with the same
    seed) is answered from it, counted and measured as usual, without running
    the models again. The victim's answers are computed once per (defense,
    query batch).
    """

    def __init__(self, protected, undefended, batch_size=256, cache=None):
        self.protected = protected
        self.undefended = undefended
        self.batch_size = batch_size
        self.cache = cache
        self.recording = True
        self.count = 0
        self.l1_sum = 0.0
        self.perturbed = 0

    def _answers(self, x):
        """``(y', y)``: defended and undefended answers (``y`` None when not recording), from the cache if there."""
        key = None
        if self.cache is not None and self.recording:
            key = (x.shape, str(x.dtype), hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest())
            if key in self.cache:
                return self.cache[key]
        y_defended = predict_padded(self.protected, x, self.batch_size)
        y = None
        if self.recording:
            y = y_defended if self.protected is self.undefended else predict_padded(self.undefended, x, self.batch_size)
        if key is not None:
            self.cache[key] = (y_defended, y)
        return y_defended, y

    def __call__(self, x):
        y_defended, y = self._answers(x)
        if self.recording:
            delta = np.abs(y_defended.astype("float64") - y.astype("float64"))
            self.count += len(x)
            self.l1_sum += float(delta.sum())
            self.perturbed += int(np.sum(delta.max(axis=1) > PERTURBED_TOLERANCE)) if len(x) else 0
        return y_defended

    @property
    def l1_distance(self):
        """Mean ``||y' - y||_1`` over the recorded queries (0 with none)."""
        return self.l1_sum / self.count if self.count else 0.0

    @property
    def perturbed_fraction(self):
        """Share of recorded queries the defense changed."""
        return self.perturbed / self.count if self.count else 0.0


def make_attack(name, make_clone, epochs=10, batch_size=64, learning_rate=0.1, seed=0, verbose=0,
                distribute_strategy=None, options=None):
    """Instantiate the attack ``name`` through the registry (:func:`keras_dcp.attacks.build_attack`).

    ``seed``, ``verbose`` and ``distribute_strategy`` go to every attack;
    ``epochs``, ``batch_size`` and ``learning_rate`` (clone training) to the
    attacks that declare them in ``clone_training_arguments`` (KnockoffNets
    and its variants). ``options`` (a dict) adds or overrides attack-specific
    constructor arguments.
    """
    return build_attack(
        name, make_clone, seed=seed, verbose=verbose, distribute_strategy=distribute_strategy, options=options,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
    )


def recovery_report(attack: Any, victim: keras.Model, x_queries: np.ndarray | None, batch_size: int = 256) -> dict:
    """For attacks that estimate the victim's posteriors (``attack.recovered``): how close they came.

    ``recovered_l1`` is the mean ``||p_hat_i - f(q_i)||_1`` over the queried
    images against the *undefended* victim's posteriors, beside
    ``answers_l1``, the same for the answers themselves (what a thief that
    does not invert trains on); ``resolved_fraction`` the share of answers
    with an exact preimage. Empty for other attacks.
    """
    recovered = getattr(attack, "recovered", None)
    if recovered is None or x_queries is None or getattr(attack, "query_indices", None) is None:
        return {}
    truth = predict_padded(victim, x_queries[attack.query_indices], batch_size)
    report = {
        "recovered_l1": float(np.abs(np.asarray(recovered) - truth).sum(axis=1).mean()),
        "answers_l1": float(np.abs(np.asarray(attack.answers) - truth).sum(axis=1).mean()),
    }
    if getattr(attack, "resolved", None) is not None:
        report["resolved_fraction"] = float(np.mean(attack.resolved))
    return report


def belief_report(attack: Any) -> dict:
    """For defense-aware attacks: the DCP parameters the thief used, given or estimated from its answers.

    ``{"thief_defense_params": {"beta": float, "gamma": float, "tau": float},
    "thief_estimated": bool}``; empty for attacks that do not model the defense.
    """
    params = getattr(attack, "defense_params", None)
    knowledge = getattr(attack, "knowledge", None)
    if not isinstance(params, dict):
        return {}
    return {"thief_defense_params": {k: float(v) for k, v in params.items()},
            "thief_estimated": bool(getattr(knowledge, "estimate", False))}


def _default_make_clone(victim):
    """A fresh copy of the victim's architecture (new random weights): the paper's setting."""

    def make_clone():
        return keras.models.clone_model(victim)

    return make_clone


def best_responses(runs):
    """Per defense setting and budget, the attack with the highest clone accuracy.

    A thief picks what works, so a defense setting is only as strong as its
    best response. Runs are grouped by ``(defense, params, budget)``.

    Returns:
        A list of dicts ``{defense, params, budget, defender_accuracy, attack,
        attacker_accuracy, l1_distance}``, in the order the groups first appear.
    """
    groups = {}
    for run in runs:
        key = (run["defense"], repr(sorted(run["params"].items())), run.get("budget"))
        best = groups.get(key)
        if best is None or run["attacker_accuracy"] > best["attacker_accuracy"]:
            groups[key] = run
    return [
        {
            "defense": run["defense"],
            "params": run["params"],
            "budget": run.get("budget"),
            "defender_accuracy": run["defender_accuracy"],
            "attack": run["attack"],
            "attacker_accuracy": run["attacker_accuracy"],
            "l1_distance": run["l1_distance"],
        }
        for run in groups.values()
    ]


def run_experiment(
    victim: keras.Model | str | os.PathLike,
    x_test: np.ndarray,
    y_test: np.ndarray,
    x_queries: np.ndarray | None = None,
    defenses: str | Sequence[str] = ("none", "dcp"),
    attacks: str | Sequence[str] = ("knockoff", "knockoff-label"),
    budget: int | None = None,
    make_clone: Callable[[], keras.Model] | None = None,
    epochs: int = 10,
    batch_size: int = 64,
    learning_rate: float = 0.1,
    seed: int = 0,
    dataset: str = "unknown",
    distribute_strategy: Any = None,
    attack_options: dict[str, dict[str, Any]] | None = None,
    verbose: int = 1,
    eval_batch_size: int = 256,
    parallel_clones: int | None = None,
    precision: str = "float32",
) -> dict[str, Any]:
    """Attack every defense setting with every attack; return the results dict.

    For defense setting ``d`` and attack ``a``: serve ``f_d`` (the victim
    protected with ``d``), let ``a`` steal a clone ``g`` with ``budget``
    queries, then record over the test set ``(x_i, y_i)_{i<n}``

    * ``defender_accuracy = mean_i [argmax f_d(x_i) = y_i]``,
    * ``attacker_accuracy = mean_i [argmax g(x_i) = y_i]``,
    * ``agreement = mean_i [argmax g(x_i) = argmax f_d(x_i)]`` (and
      ``agreement_undefended`` against ``f``),

    and over the attacker's queries ``q_j`` the mean ``||f_d(q_j) - f(q_j)||_1``
    (``l1_distance``) and the share of answers changed (``perturbed_fraction``).
    Every run uses the same seed, so the same query subset and clone
    initialisation: differences come from the defense.

    Args:
        victim: the undefended ``keras.Model`` (probabilities out), or a path
            to a ``.keras`` file.
        x_test, y_test: the victim's test set; images uint8 or float in
            ``[0, 1]``, shape ``(n, H, W, C)``; int labels ``(n,)``.
        x_queries: the thief's natural images for KnockoffNets, same shape
            convention (not needed for ``maze``/``dfme`` alone).
        defenses: defense specs (``"none"``, ``"dcp:beta=0.7,gamma=0.2"``,
            ``"rs:beta=0.5"``...; see :func:`keras_dcp.build_defense`).
        attacks: names from :data:`ATTACKS`.
        budget: queries per attack; default all of ``x_queries`` (required
            for ``maze``/``dfme``).
        make_clone: ``() -> keras.Model`` (uncompiled, softmax out); default
            the victim's architecture with fresh weights.
        epochs, batch_size, learning_rate: clone training settings.
        seed: seeds every attack.
        dataset: name recorded in ``results["victim"]["dataset"]``.
        distribute_strategy: a ``tf.distribute.Strategy`` passed to the attacks.
        attack_options: ``{attack name: {kwarg: value}}`` extra constructor
            arguments per attack.
        verbose: 0 silent; 1 a progress bar over runs; 2 also the attacks'
            own progress bars.
        eval_batch_size: batch size for test-set predictions and for the
            victim's answers (the black box's chunks).
        parallel_clones: None (default): every clone trains on its own
            (Keras ``fit``). ``N``: on the JAX backend, the KnockoffNets runs
            with random sampling that share clone-training settings and budget
            train together, ``N`` at a time, in one compiled program
            (:mod:`keras_dcp.experiments.parallel`); the other runs go one at a
            time. On another backend a one-line notice says so and every
            clone trains on its own.
        precision: ``"float32"`` or ``"mixed_bfloat16"`` (bfloat16 compute,
            float32 variables) for the clones, both ways of training.

    Returns:
        The results dict (see :mod:`keras_dcp.experiments.schema`), with
        ``best_responses`` and ``config`` added.
    """
    from keras_dcp import attacks as attack_lib
    from keras_dcp.protect import protect

    if isinstance(victim, (str, os.PathLike)):
        victim = load_keras_model(victim, what="victim")
    if not isinstance(victim, keras.Model):
        raise ValueError(f"`victim` must be a keras.Model or a .keras path; got {type(victim).__name__}.")
    defenses = [defenses] if isinstance(defenses, str) else list(defenses)
    attacks = [attacks] if isinstance(attacks, str) else list(attacks)
    if not defenses:
        raise ValueError("Give at least one defense spec (use 'none' for the undefended victim).")
    if not attacks:
        raise ValueError("Give at least one attack.")
    attack_classes = {name: attack_class(name) for name in attacks}  # unknown names fail here
    check_parallel_clones(parallel_clones)
    check_choice("precision", precision, ("float32", "mixed_bfloat16"))
    layers = [(spec, build_defense(spec)) for spec in defenses]  # fail on bad specs before any work

    x_test = to_float(x_test)
    y_test = np.asarray(y_test).reshape(-1).astype("int64")
    if x_test.ndim != 4 or len(x_test) != len(y_test) or not len(x_test):
        raise ValueError(f"x_test {x_test.shape} and y_test {y_test.shape} must be n > 0 images and n labels.")
    input_shape = tuple(victim.input_shape[1:])
    num_classes = int(victim.output_shape[-1])
    if x_test.shape[1:] != input_shape:
        raise ValueError(f"Test images have shape {x_test.shape[1:]}; the victim takes {input_shape}.")
    needs_queries = any(cls.needs_query_images for cls in attack_classes.values())
    if needs_queries:
        if x_queries is None:
            raise ValueError("KnockoffNets attacks need query images (x_queries).")
        x_queries = to_float(x_queries)
        if x_queries.shape[1:] != input_shape:
            raise ValueError(f"Query images have shape {x_queries.shape[1:]}; the victim takes {input_shape}.")
        if budget is None:
            budget = len(x_queries)
        budget = check_int("budget", budget, minimum=1)
        if budget > len(x_queries):
            raise ValueError(f"budget={budget} exceeds the {len(x_queries)} query images.")
    if budget is None:
        raise ValueError("Give a query budget for MAZE/DFME.")
    budget = check_int("budget", budget, minimum=1)
    architecture = make_clone or _default_make_clone(victim)
    make_clone = with_precision(architecture, precision)

    if int(y_test.max()) >= num_classes:
        raise ValueError(
            f"The test labels go up to {int(y_test.max())} but the victim has {num_classes} classes: "
            "is this the victim's test set?"
        )
    undefended_test = predict_padded(victim, x_test, eval_batch_size)
    victim_accuracy = float(np.mean(np.argmax(undefended_test, axis=1) == y_test))
    parallel_clones = resolve_parallel_clones(parallel_clones)
    batch = None
    if parallel_clones is not None:
        batch = CloneBatch(parallel_clones, architecture, x_queries, precision=precision,
                           eval_batch_size=eval_batch_size, verbose=1 if verbose else 0)
    runs = []
    progress = _progress(len(layers) * len(attacks), verbose)
    for spec, layer in layers:
        name, params = describe(layer)
        served = victim if layer is None else protect(victim, layer)
        defended_test = predict_padded(served, x_test, eval_batch_size)
        defender_accuracy = float(np.mean(np.argmax(defended_test, axis=1) == y_test))
        answers = {}  # this defense's answers by query batch, shared by its runs
        for attack_name in attacks:
            if progress is not None:
                progress.set_description(f"{spec} / {attack_name}")
            keras.utils.set_random_seed(seed)
            cache = answers if attack_classes[attack_name].needs_query_images else None
            meter = DefenseMeter(served, victim, batch_size=eval_batch_size, cache=cache)
            black_box = attack_lib.BlackBox(
                meter, budget=budget, input_shape=input_shape, num_classes=num_classes, batch_size=eval_batch_size
            )
            attack = make_attack(
                attack_name, make_clone, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                seed=seed, verbose=1 if verbose >= 2 else 0, distribute_strategy=distribute_strategy,
                options=(attack_options or {}).get(attack_name),
            )
            run = {"defense": name, "params": params, "spec": spec, "attack": attack_name, "budget": budget,
                   "queries_used": 0, "defender_accuracy": defender_accuracy}
            runs.append(run)
            if batch is not None and batch.accepts(attack):
                batch.add(run, attack, black_box, meter, budget, np.argmax(defended_test, axis=1))
                continue  # trained below, with others
            started = time.perf_counter()
            if attack_classes[attack_name].needs_query_images:
                clone = attack.extract(black_box, x_queries, budget=budget)
            else:
                clone = attack.extract(black_box, budget=budget)
            seconds = time.perf_counter() - started
            meter.recording = False
            report = attack_lib.evaluate_clone(clone, black_box, x_test, y_test, undefended=victim)
            run.update(
                {
                    "queries_used": int(black_box.queries_used),
                    "attacker_accuracy": float(report["attacker_accuracy"]),
                    "agreement": float(report["agreement"]),
                    "agreement_undefended": float(report["agreement_undefended"]),
                    "l1_distance": float(meter.l1_distance),
                    "perturbed_fraction": float(meter.perturbed_fraction),
                    "seconds": float(seconds),
                    **recovery_report(attack, victim, x_queries, eval_batch_size),
                    **belief_report(attack),
                }
            )
            if progress is not None:
                progress.update(1)
                progress.set_postfix(clone=f"{report['attacker_accuracy']:.3f}")
    if batch is not None:
        batch.train_and_evaluate(x_test, y_test, np.argmax(undefended_test, axis=1), progress)
    if progress is not None:
        progress.close()
    results = {
        "victim": {
            "dataset": str(dataset),
            "accuracy": victim_accuracy,
            "architecture": victim.name,
            "num_classes": num_classes,
            "test_images": int(len(x_test)),
        },
        "runs": runs,
        "best_responses": best_responses(runs),
        "config": {
            "budget": budget,
            "query_images": None if x_queries is None else int(len(x_queries)),
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "learning_rate": float(learning_rate),
            "seed": int(seed),
            "backend": keras.backend.backend(),
            "parallel_clones": parallel_clones,
            "precision": precision,
        },
    }
    if batch is not None and batch.groups:
        results["config"]["clone_groups"] = batch.groups
    return validate_results(results)


def _progress(total, verbose):
    if not verbose:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="run", desc="attacks", leave=True)
