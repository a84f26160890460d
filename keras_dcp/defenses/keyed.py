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
    """DCP plus secret label moves on unsure queries, the same answer for the same query.

    .. math::

        y' = \\begin{cases} \\mathrm{swap}_{c, t}(D(y)) & u_1(x) < p(y) \\\\ D(y) & \\text{otherwise}\\end{cases},
        \\qquad p(y) = \\rho\\,\\mathrm{clip}\\!\\left(\\frac{\\tau_f - \\max_k y_k}{\\tau_f - 1/K}, 0, 1\\right)

    with ``D`` DCP, ``c`` its top class, ``t`` a class drawn by ``u_2(x)``
    among the others, and ``u(x) = frac(1000 W^T vec(x))`` from a secret random
    projection ``W`` (the key; :func:`keras_dcp.ops.keyed_deception`). DCP
    keeps the top-1 label, so a label-only thief is not slowed at all; this
    variant gives such a thief wrong labels on a share of the unsure queries
    (where natural-image queries of another dataset mostly land), at a benign
    accuracy cost set by ``flip_tau`` (:func:`calibrate_flip_threshold`).
    Confident rows are answered exactly as DCP answers them.

    Key handling: ``key`` (an int) seeds ``W``; None draws a fresh random key.
    ``W`` is a (non-trainable) weight of the layer, saved with the model's
    weights, so a reloaded model answers the same; the key itself is not in
    the layer's config unless ``store_key=True``. Anyone who holds the
    ``.keras`` file holds ``W`` (and the model): protect it as the model.
    :meth:`rotate_key` draws a new ``W`` (answers to repeated queries change
    once, at rotation).

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> layer = keras_dcp.KeyedDeception(flip_tau=0.6, key=7)
    >>> y = np.array([[0.95, 0.03, 0.02], [0.4, 0.35, 0.25]], "float32")
    >>> out = keras.ops.convert_to_numpy(layer([y, np.random.default_rng(0).random((2, 4, 4, 1), "float32")]))
    >>> bool((out[0] == y[0]).all()), bool(abs(out[1].sum() - 1) < 1e-5)
    (True, True)

    Args:
        beta, gamma, tau, nu: DCP's (:class:`keras_dcp.DeceptionLayer`).
        flip_tau: rows with a top probability below it may be moved, in (1/K, 1].
        flip_rate: the move probability of a flat row, in [0, 1].
        key: int seed of the secret projection; None: a random one.
        store_key: keep ``key`` in the config (off: only ``W``, in the weights).

    Call arguments:
        inputs: ``[probabilities (batch, K), queries (batch, ...)]``
            (:func:`keras_dcp.protect` wires it so).
        training: when True the layer is the identity.

    Returns:
        Defended probabilities, shape ``(batch, K)``, dtype of the input.
    """

    needs_inputs = True
    params = ("beta", "gamma", "tau", "nu", "flip_tau", "flip_rate")

    def __init__(
        self,
        beta: float = DEFAULT_BETA,
        gamma: float = DEFAULT_GAMMA,
        tau: float | None = None,
        nu: float | None = 1000.0,
        flip_tau: float = 0.5,
        flip_rate: float = 1.0,
        key: int | None = None,
        store_key: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.beta, self.gamma, self.tau, self.nu = check_noise_params(beta, gamma, tau, nu)
        self.flip_tau = check_number("flip_tau", flip_tau, minimum=0.0, maximum=1.0)
        self.flip_rate = check_number("flip_rate", flip_rate, minimum=0.0, maximum=1.0)
        self.store_key = check_bool("store_key", store_key)
        self.key = secrets.randbits(63) if key is None else check_int("key", key, minimum=0)
        self.projection = None

    @classmethod
    def from_params(cls, key: int | None = None, store_key: bool = False, **params: Any) -> "KeyedDeception":
        """From a spec: ``dcp-keyed:flip_tau=0.4,key=42`` (``key`` and ``store_key`` are not in ``params``)."""
        return cls(key=key, store_key=store_key, **params)

    def build_inputs(self, probability_shape, input_shape) -> None:
        num_classes = probability_shape[-1]
        if self.flip_tau <= 1.0 / num_classes and self.flip_rate > 0:
            raise ValueError(
                f"`flip_tau` must exceed 1/K = {1.0 / num_classes:.3g} to move any row. Received: flip_tau={self.flip_tau}"
            )
        if any(d is None for d in input_shape[1:]):
            raise ValueError(f"KeyedDeception needs a known query shape; got {input_shape}.")
        size = int(np.prod(input_shape[1:]))
        self.projection = self.add_weight(
            name="projection", shape=(size, 2), trainable=False, initializer=self._initializer(size)
        )

    def _initializer(self, size):
        values = np.random.default_rng(self.key).standard_normal((size, 2)) / math.sqrt(size)
        return keras.initializers.Constant(values.astype("float32"))

    def rotate_key(self, key: int | None = None) -> int:
        """Draw a new secret projection (from ``key``, else a random key); returns the key."""
        self.key = secrets.randbits(63) if key is None else check_int("key", key, minimum=0)
        size = int(self.projection.shape[0])
        values = np.random.default_rng(self.key).standard_normal((size, 2)) / math.sqrt(size)
        self.projection.assign(values.astype("float32"))
        return self.key

    def defend(self, y, x):
        uniforms = defense_ops.keyed_uniforms(x, self.projection)
        return defense_ops.keyed_deception(
            y, uniforms, beta=self.beta, gamma=self.gamma, tau=self.tau, nu=self.nu,
            flip_tau=self.flip_tau, flip_rate=self.flip_rate,
        )

    def get_config(self):
        config = super().get_config()
        config["store_key"] = self.store_key
        if self.store_key:
            config["key"] = self.key
        return config


def expected_benign_cost(top_probability: np.ndarray, correct: np.ndarray, flip_tau: float, flip_rate: float = 1.0,
                         num_classes: int = 10) -> float:
    """Expected accuracy lost to label moves: ``mean_i p_i ([correct_i] - [wrong_i] / (K - 1))``.

    A moved row that was right becomes wrong; a moved row that was wrong
    becomes right with chance ``1 / (K - 1)`` (its target is drawn among the
    other classes). Expectation over the key.
    """
    width = max(flip_tau - 1.0 / num_classes, 1e-6)
    probability = flip_rate * np.clip((flip_tau - np.asarray(top_probability, "float64")) / width, 0.0, 1.0)
    correct = np.asarray(correct, bool)
    return float(np.mean(probability * (correct - (~correct) / (num_classes - 1))))


def calibrate_flip_threshold(probabilities: np.ndarray, labels: np.ndarray, budget_points: float,
                             flip_rate: float = 1.0) -> float:
    """The largest ``flip_tau`` whose expected benign accuracy cost stays within ``budget_points``.

    Args:
        probabilities: the (undefended) model's probabilities on the
            defender's held-out labelled images, ``(n, K)``.
        labels: their labels ``(n,)``.
        budget_points: the accuracy the user accepts to lose, in points
            (``0.5`` = half a percentage point).
        flip_rate: as in :class:`KeyedDeception`.

    Returns:
        ``flip_tau`` in ``[1/K, 1]`` (``1/K``: no row may move).
    """
    probabilities = np.asarray(probabilities, "float64")
    num_classes = probabilities.shape[1]
    top, correct = probabilities.max(axis=1), probabilities.argmax(axis=1) == np.asarray(labels).reshape(-1)
    budget = check_number("budget_points", budget_points, minimum=0.0) / 100.0
    low, high = 1.0 / num_classes, 1.0
    if expected_benign_cost(top, correct, high, flip_rate, num_classes) <= budget:
        return high
    for _ in range(60):
        mid = 0.5 * (low + high)
        if expected_benign_cost(top, correct, mid, flip_rate, num_classes) <= budget:
            low = mid
        else:
            high = mid
    return low


__all__ = ["KeyedDeception", "calibrate_flip_threshold", "expected_benign_cost"]
