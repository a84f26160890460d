"""DCP and reverse sigmoid: the reverse-sigmoid noise, the detector, the l1 budget and top-1 preservation."""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_dcp.ops.rows import (
    PROB_CEIL,
    PROB_FLOOR,
    as_probabilities,
    first_argmax,
    is_empty,
    normalize,
    restore_nan,
    row_max,
    sanitize_unit,
    valid_rows,
)


def reverse_sigmoid_noise(y: Any, beta: float, gamma: float):
    """Reverse-sigmoid noise of Lee et al. (2019), per entry.

    .. math::

        r(y) = \\beta \\left(\\sigma(\\gamma\\,\\mathrm{logit}(y_c)) - \\tfrac12\\right),
        \\quad y_c = \\mathrm{clip}(y, 10^{-12}, 1 - 10^{-7})

    computed in float32 as ``(beta / 2) tanh((gamma / 2) (log y_c - log(1 - y_c)))``,
    the same value (the probability is clipped, not the odds). ``r`` is positive where ``y > 1/2``
    and negative below, so ``y - r`` pushes mass from the top class to the
    others. Shapes: ``(batch, K) -> (batch, K)``.

    >>> import numpy as np
    >>> r = reverse_sigmoid_noise(np.array([[0.5, 0.9]], "float32"), beta=0.7, gamma=0.2)
    >>> np.asarray(r).astype(float).round(4).tolist()
    [[0.0, 0.0757]]
    """
    y_c = ops.clip(y, PROB_FLOOR, PROB_CEIL)
    # log(y) - log(1 - y), not log(y / (1 - y)): the odds reach 1e7 at the upper
    # clip, and an int8 tensor that has to hold them rounds 1 - y to zero (the
    # int8 TFLite DIV then fails). sigmoid(x) - 1/2 = tanh(x / 2) / 2: same
    # value, no exp, no division.
    logit = ops.log(y_c) - ops.log(1.0 - y_c)
    return noise_from_logit(logit, beta, gamma)


def noise_from_logit(logit: Any, beta: float, gamma: float):
    """``beta (sigmoid(gamma logit) - 1/2)``, written ``(beta/2) tanh(gamma logit / 2)``. Any shape."""
    return (0.5 * beta) * ops.tanh((0.5 * gamma) * logit)


def detector(y: Any, tau: float, nu: float | None = 1000.0):
    """DCP's detector of uncertain rows: the weight ``alpha`` of the noise.

    .. math::

        \\alpha(y) = \\sigma(\\nu (\\tau - \\max_k y_k)),
        \\qquad \\nu = \\text{None}: \\alpha(y) = [\\max_k y_k < \\tau]

    Shapes: ``(batch, K) -> (batch, 1)``, float32 in ``[0, 1]``. A large
    ``nu`` makes ``alpha`` underflow to exactly 0 for confident rows
    (``max y > tau + 88 / nu``), which is what leaves them untouched.

    >>> import numpy as np
    >>> np.asarray(detector(np.array([[0.9, 0.1], [0.6, 0.4]], "float32"), tau=0.7, nu=None)).tolist()
    [[0.0], [1.0]]
    """
    y = ops.cast(as_probabilities(y), "float32")
    return detector_from_max(row_max(y), tau, nu)


def detector_from_max(y_max: Any, tau: float, nu: float | None):
    """:func:`detector` from the row maxima ``(batch, 1)``."""
    if nu is None:
        return ops.cast(y_max < tau, "float32")
    return ops.sigmoid(nu * (tau - y_max))


def limit_l1(y: Any, y_perturbed: Any, l1_budget: float):
    """Scale the move ``y' - y`` back so its l1 norm never exceeds ``eps``.

    .. math::

        y'' = y + \\min\\left(1, \\frac{\\epsilon}{\\lVert y' - y \\rVert_1}\\right)(y' - y)

    A convex combination of two distributions, so ``y''`` is one too.
    Shapes: ``(batch, K), (batch, K) -> (batch, K)``.

    >>> import numpy as np
    >>> np.round(np.asarray(limit_l1(np.array([[0.5, 0.5]]), np.array([[0.9, 0.1]]), 0.2)), 3).tolist()
    [[0.6, 0.4]]
    """
    delta = y_perturbed - y
    distance = ops.sum(ops.abs(delta), axis=-1, keepdims=True)
    safe_distance = ops.where(distance > 0.0, distance, ops.ones_like(distance))
    scale = ops.minimum(1.0, l1_budget / safe_distance)
    return y + scale * delta


#: Machine epsilon of the float dtypes a defense may return.
_EPSILON = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def top1_margin(dtype: str) -> float:
    """The lead :func:`keep_top1` leaves the winner: ``max(1e-6, 2 eps(dtype))``.

    Rounding to ``dtype`` moves each entry by at most half a step, so a lead of
    two machine epsilons survives the cast (float32 and float64: 1e-6;
    float16: 2.0e-3; bfloat16: 1.6e-2).
    """
    return max(1e-6, 2.0 * _EPSILON.get(dtype, _EPSILON["float32"]))


def keep_top1(y: Any, y_perturbed: Any, margin: float = 1e-6):
    """The smallest move back toward ``y`` that keeps ``argmax`` unchanged.

    Along ``y(t) = y' + t (y - y')``, ``t in [0, 1]``, the winner ``c`` of
    ``y`` beats class ``j`` once
    ``a_j + t (b_j - a_j) >= m_j`` with ``a_j = y'_c - y'_j``,
    ``b_j = y_c - y_j >= 0`` and margin ``m_j = min(margin, b_j / 2)``, i.e. for

    .. math::

        t^* = \\max_j \\mathrm{clip}\\left(\\frac{m_j - a_j}{b_j - a_j}, 0, 1\\right)

    over the classes with ``a_j < m_j``. ``y(t*)`` is still a distribution and
    no farther from ``y`` (in l1) than ``y'``. Rows where float rounding still
    changes the winner fall back to ``y`` itself. Shapes:
    ``(batch, K), (batch, K) -> (batch, K)``.

    >>> import numpy as np
    >>> out = np.asarray(keep_top1(np.array([[0.5, 0.4, 0.1]], "float32"), np.array([[0.3, 0.5, 0.2]], "float32")))
    >>> int(out.argmax())
    0
    """
    num_classes = y.shape[-1]
    winner = first_argmax(y)
    winner_mask = ops.one_hot(winner, num_classes, dtype="float32")
    y_win = ops.sum(y * winner_mask, axis=-1, keepdims=True)
    yp_win = ops.sum(y_perturbed * winner_mask, axis=-1, keepdims=True)
    a = yp_win - y_perturbed
    b = y_win - y
    m = ops.minimum(margin, 0.5 * b)
    slope = b - a
    needs_move = (a < m) & (winner_mask == 0.0)
    safe_slope = ops.where(slope > 0.0, slope, ops.ones_like(slope))
    t_j = ops.where(needs_move, ops.clip((m - a) / safe_slope, 0.0, 1.0), 0.0)
    t_j = ops.where(needs_move & (slope <= 0.0), 1.0, t_j)
    t = ops.max(t_j, axis=-1, keepdims=True)
    moved = y_perturbed + t * (y - y_perturbed)
    kept = ops.expand_dims(first_argmax(moved) == winner, -1)
    return ops.where(kept, moved, y)


def defend_with_noise(
    y: Any,
    beta: float,
    gamma: float,
    tau: float | None = None,
    nu: float | None = None,
    l1_budget: float | None = None,
    preserve_top1: bool = False,
):
    """Shared body of DCP (``tau`` given) and reverse sigmoid (``tau=None``: alpha = 1).

    ``y' = N(max(s - alpha(s) r(s), 0))`` on ``s = clip(y, 0, 1)``, then the
    optional l1 budget and top-1 preservation against ``N(s)``; untouched
    valid rows, NaN rows and empty batches as in the :mod:`keras_dcp.ops`
    docstring.
    """
    y = as_probabilities(y)
    if is_empty(y):
        return y
    dtype = ops.dtype(y)
    num_classes = y.shape[-1]
    y32 = ops.cast(y, "float32")
    total = ops.sum(y32, axis=-1, keepdims=True)
    s = sanitize_unit(y32)
    alpha = 1.0 if tau is None else detector_from_max(row_max(s), tau, nu)
    noise = reverse_sigmoid_noise(s, beta, gamma)
    out = normalize(ops.maximum(s - alpha * noise, 0.0), num_classes)
    valid = valid_rows(total, ops.min(y32, axis=-1, keepdims=True))
    if l1_budget is not None or preserve_top1:
        reference = normalize(s, num_classes)
        if l1_budget is not None:
            out = limit_l1(reference, out, l1_budget)
        if preserve_top1:
            out = keep_top1(reference, out, margin=top1_margin(dtype))
    out = ops.cast(out, dtype)
    if preserve_top1:
        # Rounding to a narrow dtype (float16) can still tie or flip the winner;
        # such rows fall back to the input itself (or, if invalid, its N(s)).
        fallback = ops.where(valid, y, ops.cast(reference, dtype))
        kept = ops.expand_dims(first_argmax(out) == first_argmax(fallback), -1)
        out = ops.where(kept, out, fallback)
    if tau is not None:
        # Select from the caller's tensor, not its float32 copy, so untouched
        # rows are bit-identical in every dtype.
        out = ops.where((alpha <= 0.0) & valid, y, out)
    return restore_nan(total, out)


def deception(
    y: Any,
    beta: float = 0.7,
    gamma: float = 0.2,
    tau: float | None = None,
    nu: float | None = 1000.0,
    l1_budget: float | None = None,
    preserve_top1: bool = False,
):
    """The Deception defense (DCP, arXiv 2309.01838) on a batch of rows.

    .. math::

        y' = N\\left(\\max\\left(y - \\alpha(y)\\, r(y), 0\\right)\\right),
        \\qquad N(v) = v / \\textstyle\\sum_k v_k

    with the detector ``alpha`` (:func:`detector`, ``tau=None`` means
    ``tau = beta``) and the reverse-sigmoid noise ``r``
    (:func:`reverse_sigmoid_noise`); then, if asked, the l1 budget
    (:func:`limit_l1`) and top-1 preservation (:func:`keep_top1`).
    Valid rows with ``alpha == 0`` come back bit-identical to ``y``; see the
    :mod:`keras_dcp.ops` docstring for rows that are not distributions.

    >>> import numpy as np
    >>> y = np.array([[0.98, 0.01, 0.01], [0.5, 0.3, 0.2]], "float32")
    >>> out = np.asarray(deception(y, beta=0.7, gamma=0.2))
    >>> bool((out[0] == y[0]).all()), out[1].astype(float).round(3).tolist()
    (True, [0.464, 0.306, 0.23])

    Args:
        y: probabilities, shape ``(batch, K)``, any float dtype.
        beta: noise amplitude, > 0.
        gamma: noise sharpness, > 0.
        tau: detector threshold in (0, 1], or None for ``tau = beta``.
        nu: detector slope, > 0, or None for the hard step.
        l1_budget: optional ``eps >= 0``, the largest l1 move allowed.
        preserve_top1: keep every row's argmax (in the output dtype).

    Returns:
        Tensor of shape ``(batch, K)`` and the dtype of ``y``.
    """
    tau = beta if tau is None else tau
    return defend_with_noise(y, beta, gamma, tau, nu, l1_budget, preserve_top1)


def reverse_sigmoid(
    y: Any,
    beta: float = 1.0,
    gamma: float = 0.2,
    l1_budget: float | None = None,
    preserve_top1: bool = False,
):
    """Reverse sigmoid (Lee et al. 2019): the same noise on every row.

    .. math::

        y' = N\\left(\\max\\left(y - r(y), 0\\right)\\right)

    i.e. :func:`deception` with ``alpha = 1`` everywhere. Shapes:
    ``(batch, K) -> (batch, K)``, dtype of ``y``.

    >>> import numpy as np
    >>> out = np.asarray(reverse_sigmoid(np.array([[0.9, 0.1]], "float32"), beta=1.0, gamma=0.2))
    >>> round(float(out.sum()), 5), bool(out[0, 0] < 0.9)
    (1.0, True)
    """
    return defend_with_noise(y, beta, gamma, None, None, l1_budget, preserve_top1)


__all__ = [
    "deception",
    "defend_with_noise",
    "detector",
    "detector_from_max",
    "keep_top1",
    "limit_l1",
    "noise_from_logit",
    "reverse_sigmoid",
    "reverse_sigmoid_noise",
    "top1_margin",
]
