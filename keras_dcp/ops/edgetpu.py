"""DCP for the Edge TPU: the same defense written with the few int8 ops the Edge TPU runs.

The Edge TPU runs fully int8 graphs built from a short list of ops (SOFTMAX,
LOGISTIC, ADD, SUB, MUL, MAXIMUM, MINIMUM, REDUCE_MAX, SUM, FULLY_CONNECTED,
...) and has no LOG, EXP, DIV, CAST, comparisons or SELECT.
:func:`deception_edgetpu` rewrites DCP with those ops only, starting from the
*logits*: in int8 a softmax output has a step of 1/256, so log(y) of a small
class cannot be recovered from it, whereas logit differences keep it (see
docs/tflite.md).
"""

from __future__ import annotations

from typing import Any

import math

from keras import ops

from keras_dcp.ops.deception import detector_from_max, noise_from_logit
from keras_dcp.ops.rows import PROB_FLOOR

#: Tangent points of the piecewise-linear approximations used by
#: :func:`deception_edgetpu`; more points, smaller error, more ops.
EDGETPU_LOG_POINTS = 6
EDGETPU_LOG1M_POINTS = 8
EDGETPU_RECIPROCAL_POINTS = 8


def _spread(column, num_classes):
    """``(batch, 1) -> (batch, K)`` by a matmul with a row of ones.

    A FULLY_CONNECTED op instead of a broadcasting ADD/MUL, so the int8 graph
    never relies on broadcasting a per-row value (an exact product in int8:
    the weight 1 is representable).
    """
    return ops.matmul(column, ops.ones((1, num_classes), dtype="float32"))


def _tangent_envelope(x, points, f, df, convex):
    """Envelope of the tangents of ``f`` at ``points``, evaluated at ``x``.

    .. math::

        T(x) = \\max_i \\text{ (convex) or } \\min_i \\text{ (concave) }
        \\big(f(p_i) + f'(p_i)(x - p_i)\\big)

    A convex function lies above its tangents and a concave one below, so
    ``T`` is a lower (upper) bound that touches ``f`` at every ``p_i``. Built
    from scalar MUL, ADD and MAXIMUM/MINIMUM only. Shapes: any -> same.
    """
    envelope = None
    for point in points:
        slope = float(df(point))
        line = x * slope + float(f(point) - slope * point)
        if envelope is None:
            envelope = line
        elif convex:
            envelope = ops.maximum(envelope, line)
        else:
            envelope = ops.minimum(envelope, line)
    return envelope


def _geometric_points(low, high, count):
    if count < 1:
        raise ValueError(f"need at least one tangent point; got {count!r}.")
    if count == 1:
        return [float(low)]
    ratio = (high / low) ** (1.0 / (count - 1))
    return [float(low * ratio**i) for i in range(count)]


def deception_edgetpu(
    logits: Any,
    beta=0.7,
    gamma=0.2,
    tau=None,
    nu=1000.0,
    log_points=EDGETPU_LOG_POINTS,
    log1m_points=EDGETPU_LOG1M_POINTS,
    reciprocal_points=EDGETPU_RECIPROCAL_POINTS,
):
    """DCP from logits with Edge TPU ops only (an approximation of :func:`deception`).

    With ``y = softmax(z)``, ``s_k = z_k - max_j z_j`` and ``y_max = max_k y_k``,
    the exact identity ``log y_k = s_k + log y_max`` gives the logit without a
    log of a small probability:

    .. math::

        \\mathrm{logit}(y_k) = \\max(s_k + \\widehat{\\log}(y_{max}), \\log 10^{-12})
        + \\widehat{-\\log(1 - y_k)},

        r_k = \\beta(\\sigma(\\gamma\\,\\mathrm{logit}(y_k)) - \\tfrac12), \\quad
        \\alpha = \\sigma(\\nu(\\tau - y_{max})), \\quad
        v = \\max(y - \\alpha r, 0), \\quad
        y' = v \\hat R (2 - S \\hat R), \\quad S = \\textstyle\\sum_k v_k

    where the hats are tangent envelopes (:func:`_tangent_envelope`):
    ``log`` on ``[1/K, 1]`` (concave: min of ``log_points`` tangents),
    ``-log(1 - y)`` on ``[0, 1 - 1/256]`` (convex: max of ``log1m_points``
    tangents) and ``1/S`` on ``[1 - beta/2, 1 + K beta/2]`` (the range of
    ``S``; convex: max of ``reciprocal_points`` tangents), refined by one
    Newton step ``R (2 - S R)``. Measured error vs :func:`deception` in
    float32: see docs/tflite.md. ``nu=None`` (hard step) becomes the ramp
    ``clip(10^4 (tau - y_max), 0, 1)``.

    Not covered: the l1 budget and top-1 preservation (they need division and
    argmax), and the NaN/invalid-row conventions of :func:`deception` (the
    input is logits of a model, finite by construction).

    Args:
        logits: ``(batch, K)`` logits ``z`` (before the softmax).
        beta, gamma, tau, nu: as in :func:`deception`.
        log_points, log1m_points, reciprocal_points: tangent counts.

    Returns:
        ``(batch, K)`` defended probabilities, float32.
    """
    z = ops.cast(ops.convert_to_tensor(logits), "float32")
    num_classes = z.shape[-1]
    tau = beta if tau is None else tau
    y = ops.softmax(z, axis=-1)
    y_max = ops.max(y, axis=-1, keepdims=True)
    shifted = z - _spread(ops.max(z, axis=-1, keepdims=True), num_classes)
    log_y_max = _tangent_envelope(
        y_max, _geometric_points(1.0 / num_classes, 1.0, log_points),
        math.log, lambda p: 1.0 / p, convex=False,
    )
    log_y = ops.maximum(shifted + _spread(log_y_max, num_classes), math.log(PROB_FLOOR))
    # Points dense near 1, where -log(1 - y) bends: 1 - p geometric in [1/256, 1].
    log1m_at = [1.0 - q for q in _geometric_points(1.0 / 256.0, 1.0, log1m_points)]
    minus_log1m = _tangent_envelope(
        y, sorted(log1m_at), lambda p: -math.log1p(-p), lambda p: 1.0 / (1.0 - p), convex=True,
    )
    noise = noise_from_logit(log_y + minus_log1m, beta, gamma)
    if nu is None:
        alpha = ops.minimum(ops.maximum((tau - y_max) * 1e4, 0.0), 1.0)
    else:
        alpha = detector_from_max(y_max, tau, nu)
    moved = ops.maximum(y - _spread(alpha, num_classes) * noise, 0.0)
    total = ops.sum(moved, axis=-1, keepdims=True)
    low, high = max(1.0 - 0.5 * beta, 1e-3), 1.0 + 0.5 * beta * num_classes
    reciprocal = ops.maximum(_tangent_envelope(
        total, _geometric_points(low, high, reciprocal_points),
        lambda p: 1.0 / p, lambda p: -1.0 / (p * p), convex=True,
    ), 0.0)
    first = moved * _spread(reciprocal, num_classes)
    # One Newton step for 1/S, applied to the output rather than to R so that
    # the rounding of R in int8 is corrected too.
    return first * _spread(2.0 - total * reciprocal, num_classes)


__all__ = ["EDGETPU_LOG1M_POINTS", "EDGETPU_LOG_POINTS", "EDGETPU_RECIPROCAL_POINTS", "deception_edgetpu"]
