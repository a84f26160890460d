"""Keyed DCP: Deception plus secret, per-input label moves (:func:`keras_dcp.ops.keyed_deception`)."""

from __future__ import annotations

import math
import secrets
from typing import Any

import keras
import numpy as np

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.deception import DEFAULT_BETA, DEFAULT_GAMMA, check_noise_params
from keras_dcp.defenses.registry import register_defense
from keras_dcp.validation import check_bool, check_int, check_number


@register_defense("dcp-keyed")
@keras.saving.register_keras_serializable(package="keras_dcp")
class KeyedDeception(OutputDefense):
    """DCP plus secret label moves on unfamiliar queries, the same answer for the same query.

    .. math::

        y' = \\begin{cases} \\mathrm{swap}_{c, t}(D(y)) & u_1(x) < \\rho\\,[E(z) < E_0] \\\\
                            D(y) & \\text{otherwise}\\end{cases},
        \\qquad y = \\mathrm{softmax}(z), \\quad E(z) = \\log \\textstyle\\sum_k e^{z_k}

    with ``D`` DCP, ``c`` its top class, ``t`` a class drawn by ``u_2(x)``
    among the others, and ``u(x) = frac(1000 W^T vec(x))`` from a secret random
    projection ``W`` (the key; :func:`keras_dcp.ops.keyed_deception`). DCP
    keeps the top-1 label, so a label-only thief is not slowed at all; this
    variant gives such a thief wrong labels on a share of the queries whose
    energy ``E`` is low (inputs unlike the training data, where a thief's
    natural images of another dataset land), at a benign accuracy cost set by
    ``energy_threshold`` (:func:`calibrate_energy_threshold`). It takes the
    model's logits (:func:`keras_dcp.protect` wires it so) and the query.

    Key handling: ``key`` (an int) seeds ``W``; None draws a fresh random key.
    ``W`` is a (non-trainable) weight of the layer, saved with the model's
    weights, so a reloaded model answers the same; the key itself is not in
    the layer's config unless ``store_key=True``. Anyone who holds the
    ``.keras`` file holds ``W`` (and the model): protect it as the model.
    :meth:`rotate_key` draws a new ``W`` (answers to repeated queries change
    once, at rotation).

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> layer = keras_dcp.KeyedDeception(energy_threshold=2.0, key=7)
    >>> z = np.array([[6.0, 0.0, -1.0], [0.4, 0.3, 0.1]], "float32")
    >>> out = keras.ops.convert_to_numpy(layer([z, np.random.default_rng(0).random((2, 4, 4, 1), "float32")]))
    >>> bool(np.allclose(out[0], keras.ops.convert_to_numpy(keras.ops.softmax(z[:1]))[0])), out.shape
    (True, (2, 3))

    Args:
        beta, gamma, tau, nu: DCP's (:class:`keras_dcp.DeceptionLayer`).
        energy_threshold: ``E_0``: rows with a lower logit energy may move
            (``-inf``, the default: none, plain DCP).
        flip_rate: ``rho``, the chance that such a row moves, in [0, 1].
        key: int seed of the secret projection; None: a random one.
        store_key: keep ``key`` in the config (off: only ``W``, in the weights).

    Call arguments:
        inputs: ``[logits (batch, K), queries (batch, ...)]``.
        training: when True the layer is a plain softmax.

    Returns:
        Defended probabilities, shape ``(batch, K)``, float32.
    """

    needs_inputs = True
    input_kind = "logits"
    params = ("beta", "gamma", "tau", "nu", "energy_threshold", "flip_rate")

    def __init__(
        self,
        beta: float = DEFAULT_BETA,
        gamma: float = DEFAULT_GAMMA,
        tau: float | None = None,
        nu: float | None = 1000.0,
        energy_threshold: float = float("-inf"),
        flip_rate: float = 1.0,
        key: int | None = None,
        store_key: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.beta, self.gamma, self.tau, self.nu = check_noise_params(beta, gamma, tau, nu)
        threshold = check_number("energy_threshold", energy_threshold, allow_inf=True)
        if threshold == float("inf"):
            raise ValueError(f"`energy_threshold` must be finite or -inf. Received: energy_threshold={threshold}")
        self.energy_threshold = threshold
        self.flip_rate = check_number("flip_rate", flip_rate, minimum=0.0, maximum=1.0)
        self.store_key = check_bool("store_key", store_key)
        self.key = secrets.randbits(63) if key is None else check_int("key", key, minimum=0)
        self.projection = None

    @classmethod
    def from_params(cls, key: int | None = None, store_key: bool = False, **params: Any) -> "KeyedDeception":
        """From a spec: ``dcp-keyed:energy_threshold=4.2,key=42`` (``key``, ``store_key`` are not in ``params``)."""
        return cls(key=key, store_key=store_key, **params)

    def build_inputs(self, probability_shape, input_shape) -> None:
        if any(d is None for d in input_shape[1:]):
            raise ValueError(f"KeyedDeception needs a known query shape; got {input_shape}.")
        size = int(np.prod(input_shape[1:]))
        self.projection = self.add_weight(
            name="projection", shape=(size, 2), trainable=False,
            initializer=keras.initializers.Constant(_projection(self.key, size)),
        )

    def rotate_key(self, key: int | None = None) -> int:
        """Draw a new secret projection (from ``key``, else a random key); returns the key."""
        self.key = secrets.randbits(63) if key is None else check_int("key", key, minimum=0)
        self.projection.assign(_projection(self.key, int(self.projection.shape[0])))
        return self.key

    def call(self, inputs, training=None):
        if training:
            return keras.ops.softmax(keras.ops.cast(inputs[0], "float32"), axis=-1)
        return super().call(inputs)

    def defend(self, logits, x):
        uniforms = defense_ops.keyed_uniforms(x, self.projection)
        return defense_ops.keyed_deception(
            logits, uniforms, beta=self.beta, gamma=self.gamma, tau=self.tau, nu=self.nu,
            energy_threshold=self.energy_threshold, flip_rate=self.flip_rate,
        )

    def get_config(self):
        config = super().get_config()
        config["store_key"] = self.store_key
        if self.store_key:
            config["key"] = self.key
        return config


def _projection(key, size):
    return (np.random.default_rng(key).standard_normal((size, 2)) / math.sqrt(size)).astype("float32")


def expected_benign_cost(moves: np.ndarray, correct: np.ndarray, num_classes: int) -> float:
    """Expected accuracy lost to label moves: ``mean_i m_i ([correct_i] - [wrong_i] / (K - 1))``.

    ``moves`` is each row's chance of moving. A moved row that was right
    becomes wrong; a moved row that was wrong becomes right with chance
    ``1 / (K - 1)`` (its target is drawn among the other classes).
    Expectation over the key.
    """
    correct = np.asarray(correct, bool)
    return float(np.mean(np.asarray(moves, "float64") * (correct - (~correct) / (num_classes - 1))))


def calibrate_threshold(scores: np.ndarray, correct: np.ndarray, budget_points: float, num_classes: int,
                        flip_rate: float = 1.0) -> float:
    """The largest ``t`` such that moving the rows with ``score < t`` costs at most ``budget_points``.

    The cost of moving the ``i`` lowest-scored rows is
    ``flip_rate * sum_j ([correct_j] - [wrong_j] / (K - 1)) / n``
    (:func:`expected_benign_cost`); ``t`` lies halfway between the last row
    moved and the next one.

    Args:
        scores: ``(n,)`` finite familiarity scores (lower: less familiar).
        correct: ``(n,)`` whether the model is right on each row.
        budget_points: the accuracy the user accepts to lose, in points.
        num_classes: ``K``.
        flip_rate: the chance that a flagged row moves, in [0, 1].

    Returns:
        ``t`` (``-inf`` when not even the least familiar row fits the budget).
    """
    scores = np.asarray(scores, "float64").reshape(-1)
    correct = np.asarray(correct, bool).reshape(-1)
    if not len(scores) or len(scores) != len(correct):
        raise ValueError(f"`scores` and `correct` must be non-empty and of one length. Received: {len(scores)} "
                         f"scores and {len(correct)} flags.")
    if not np.all(np.isfinite(scores)):
        raise ValueError("`scores` must be finite; NaN or inf found (non-finite logits?).")
    budget = check_number("budget_points", budget_points, minimum=0.0) / 100.0
    flip_rate = check_number("flip_rate", flip_rate, minimum=0.0, maximum=1.0)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 2:
        raise ValueError(f"`num_classes` must be an integer >= 2. Received: num_classes={num_classes!r}")
    order = np.argsort(scores)
    gains = flip_rate * (correct[order] - (~correct[order]) / (num_classes - 1)) / len(scores)
    fits = np.flatnonzero(np.cumsum(gains) <= budget + 1e-12)
    if not len(fits):
        return float("-inf")
    last = int(fits.max())  # the most rows moved while the cost is within budget
    edge = scores[order[last]]
    following = scores[order[last + 1]] if last + 1 < len(scores) else edge + 1.0
    return float(0.5 * (edge + following))


def calibrate_energy_threshold(logits: np.ndarray, labels: np.ndarray, budget_points: float,
                               flip_rate: float = 1.0) -> float:
    """The largest ``energy_threshold`` whose expected benign accuracy cost stays within ``budget_points``.

    The energies are the layer's own (:func:`keras_dcp.ops.energy`, float32),
    so a row flagged here is flagged by the deployed layer.

    Args:
        logits: the model's logits on the defender's held-out labelled images, ``(n, K)``.
        labels: their labels ``(n,)``.
        budget_points: the accuracy the user accepts to lose, in points (``0.5`` = half a point).
        flip_rate: as in :class:`KeyedDeception`.

    Returns:
        ``E_0`` (``-inf`` when not even the least familiar image fits the budget).
    """
    logits = np.asarray(logits, "float32")
    if logits.ndim != 2 or logits.shape[1] < 2:
        raise ValueError(f"`logits` must have shape (n, K) with K >= 2. Received: shape={logits.shape}")
    energies = keras.ops.convert_to_numpy(defense_ops.energy(logits))[:, 0]
    labels = np.asarray(labels).reshape(-1)
    if labels.size != len(logits):
        raise ValueError(f"`labels` must have one label per row of `logits`. Received: {labels.size} "
                         f"labels for {len(logits)} rows.")
    correct = logits.argmax(axis=1) == labels
    return calibrate_threshold(energies, correct, budget_points, logits.shape[1], flip_rate)


__all__ = ["KeyedDeception", "calibrate_energy_threshold", "calibrate_threshold", "expected_benign_cost"]
