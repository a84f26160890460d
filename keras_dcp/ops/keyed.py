"""Keyed DCP: Deception plus secret, per-input label moves on the rows the thief needs most.

DCP keeps the top-1 label, so a thief who trains on labels only is not slowed
at all. This variant moves the label of some flagged rows, deterministically
per input and unpredictably without a secret key:

.. math::

    u(x) = \\mathrm{frac}(10^3\\, W^\\top \\mathrm{vec}(x)) \\in [0, 1)^2, \\qquad
    p(y) = \\rho\\; \\mathrm{clip}\\!\\left(\\frac{\\tau_f - \\max_k y_k}{\\tau_f - 1/K}, 0, 1\\right)

with ``W`` a secret random projection (the key), ``u_1(x) < p(y)`` deciding a
move and ``u_2(x)`` picking its target uniformly among the other ``K - 1``
classes. A moved row is DCP's answer with the values of its top class and the
target swapped, so it is still an exact DCP image (of the swapped posterior)
and inversion cannot tell it from an honest one. Repeating a query returns
the same answer (``u`` is a function of the input), so averaging repeats gains
nothing. The move probability grows as the top probability falls: thieves'
natural-image queries are mostly unsure, benign test images mostly sure; the
benign cost is set by ``tau_f`` (:func:`keras_dcp.defenses.calibrate_flip_threshold`).
"""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_dcp.ops.deception import deception
from keras_dcp.ops.rows import as_probabilities, first_argmax, is_empty, row_max

#: Scale of the projection before its fractional part is taken: neighbouring
#: images land on unrelated values of ``u``.
KEY_SCALE = 1000.0


def keyed_uniforms(x: Any, projection: Any):
    """``u = frac(1000 W^T vec(x))`` per row: ``(batch, ...) x (D, 2) -> (batch, 2)`` in ``[0, 1)``."""
    flat = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))
    scaled = KEY_SCALE * ops.matmul(flat, ops.cast(projection, "float32"))
    return scaled - ops.floor(scaled)


def move_probability(y_max: Any, flip_tau: float, flip_rate: float, num_classes: int):
    """``p = rate clip((tau_f - y_max) / (tau_f - 1/K), 0, 1)``: 0 above ``tau_f``, ``rate`` at a flat row."""
    width = max(flip_tau - 1.0 / num_classes, 1e-6)
    return flip_rate * ops.clip((flip_tau - y_max) / width, 0.0, 1.0)


def keyed_deception(
    y: Any,
    uniforms: Any,
    beta: float = 0.7,
    gamma: float = 0.2,
    tau: float | None = None,
    nu: float | None = 1000.0,
    flip_tau: float = 0.5,
    flip_rate: float = 1.0,
):
    """DCP (:func:`keras_dcp.ops.deception`), then a keyed label move on the rows that draw one.

    Args:
        y: probabilities ``(batch, K)``.
        uniforms: ``(batch, 2)`` in ``[0, 1)``, per input (:func:`keyed_uniforms`).
        beta, gamma, tau, nu: DCP's.
        flip_tau: rows whose top probability is below this may move.
        flip_rate: the move probability of a flat row (at most 1).

    Returns:
        ``(batch, K)`` in the dtype of ``y``; confident valid rows bit-identical.

    >>> import numpy as np
    >>> y = np.array([[0.95, 0.03, 0.02], [0.4, 0.35, 0.25]], "float32")
    >>> out = np.asarray(keyed_deception(y, np.array([[0.1, 0.2], [0.1, 0.9]], "float32"), flip_tau=0.6))
    >>> bool((out[0] == y[0]).all()), int(out[1].argmax())
    (True, 2)
    """
    y = as_probabilities(y)
    if is_empty(y):
        return y
    dtype = ops.dtype(y)
    num_classes = y.shape[-1]
    base = deception(y, beta=beta, gamma=gamma, tau=tau, nu=nu)  # confident rows: y itself, bit for bit
    defended = ops.cast(base, "float32")
    uniforms = ops.cast(uniforms, "float32")
    probability = move_probability(row_max(ops.cast(y, "float32")), flip_tau, flip_rate, num_classes)
    move = uniforms[:, :1] < probability  # never for rows above tau_f; NaN rows compare False
    top = first_argmax(defended)
    order = ops.top_k(defended, num_classes)[1][:, 1:]  # the other classes, most likely first
    pick = ops.cast(ops.minimum(ops.floor(uniforms[:, 1] * (num_classes - 1)), num_classes - 2), "int32")
    target = ops.take_along_axis(order, ops.expand_dims(pick, -1), axis=-1)[:, 0]
    top_mask = ops.one_hot(top, num_classes, dtype="float32")
    target_mask = ops.one_hot(target, num_classes, dtype="float32")
    top_value = ops.sum(defended * top_mask, axis=-1, keepdims=True)
    target_value = ops.sum(defended * target_mask, axis=-1, keepdims=True)
    swapped = defended + (target_mask - top_mask) * (top_value - target_value)
    return ops.where(move, ops.cast(swapped, dtype), base)


__all__ = ["KEY_SCALE", "keyed_deception", "keyed_uniforms", "move_probability"]
