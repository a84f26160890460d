"""The defense math, once: pure functions over ``keras.ops``.

Every layer (Keras 3 and the tf_keras twin used for QAT), exporter and tool
calls these functions, so this module is the one place to read and fix the
equations. All functions take a batch of probability rows ``y`` of shape
``(batch, K)`` and return a tensor of the same shape. They compute in float32
and cast the result back to the input dtype, so they are safe under mixed
precision; under the TensorFlow backend they lower to plain TF ops (and from
there to TFLite builtins).

Rows that are not distributions
-------------------------------
A served model must never crash on odd input, and must never answer silently
wrong. The perturbing defenses (:func:`deception`, :func:`reverse_sigmoid`)
therefore define:

* a row whose sum is NaN (it holds a NaN, or both +inf and -inf) comes back
  as all NaN ("NaN stays NaN");
* a valid row (entries >= 0, sum within ``SUM_TOLERANCE`` of 1, as a softmax
  gives) that the detector leaves alone (``alpha == 0``) comes back
  bit-identical;
* every other row is defended on ``s = clip(y, 0, 1)`` (negative entries count
  as 0, ``+inf`` as 1) and renormalised, so the output is a finite
  distribution that sums to 1 (an all-zero row becomes uniform ``1/K``).

For speed the row statistics (sum, min, max) are read once from the input,
and the detector uses ``clip(max y, 0, 1) = max clip(y, 0, 1)``.
"""

from __future__ import annotations

from keras import ops

#: Lower clip of the probabilities inside the logit: log(1e-12) is the floor of
#: the reference code.
PROB_FLOOR = 1e-12
#: Upper clip. It must stay below 1 in float32: 1 - 1e-9 rounds to 1.0 there,
#: log(1 - y) becomes -inf, and full-int8 TFLite conversion then fails with
#: "scale out of expressed type range".
PROB_CEIL = 1.0 - 1e-7
#: How far from 1 a row's sum may be and still count as a distribution.
SUM_TOLERANCE = 1e-3


def _as_float32(y):
    y = ops.convert_to_tensor(y)
    return ops.cast(y, "float32"), y.dtype


def _normalize(v, num_classes):
    """``N(v) = v / sum(v)`` per row; an all-zero row becomes uniform ``1/K``."""
    total = ops.sum(v, axis=-1, keepdims=True)
    safe_total = ops.where(total > 0.0, total, ops.ones_like(total))
    uniform = ops.ones_like(v) / float(num_classes)
    return ops.where(total > 0.0, v / safe_total, uniform)


def first_argmax(y):
    """Index of the first largest entry per row: ``(batch, K) -> (batch,)`` int32.

    ``keras.ops.argmax`` on floats adds a sign-bit test (BitwiseAnd) that TFLite
    builtins lack; comparing against the row max and taking argmax of the int
    mask gives the same first index with plain MAX/GREATER_EQUAL/ARG_MAX ops.
    """
    is_max = ops.cast(y >= ops.max(y, axis=-1, keepdims=True), "int32")
    return ops.argmax(is_max, axis=-1)


def sanitize(y):
    """The distribution an invalid row stands for: ``s = N(clip(y, 0, 1))``.

    An all-zero row becomes uniform. NaN is not handled here. Shapes:
    ``(batch, K) -> (batch, K)``, float32.
    """
    return _normalize(ops.clip(y, 0.0, 1.0), y.shape[-1])


def _valid_rows(total, lowest):
    return (ops.abs(total - 1.0) <= SUM_TOLERANCE) & (lowest >= 0.0)


def _restore_nan(total, out):
    """Rows whose sum is NaN come back as all-NaN rows of ``out``."""
    return ops.where(ops.isnan(total), float("nan"), out)


def reverse_sigmoid_noise(y, beta, gamma):
    """Reverse-sigmoid noise of Lee et al. (2019), per entry.

    .. math::

        r(y) = \\beta \\left(\\sigma(\\gamma\\,\\mathrm{logit}(y_c)) - \\tfrac12\\right),
        \\quad y_c = \\mathrm{clip}(y, 10^{-12}, 1 - 10^{-7})

    computed in float32 as ``(beta / 2) tanh((gamma / 2) (log y_c - log(1 - y_c)))``,
    the same value (the probability is clipped, not the odds). ``r`` is positive where ``y > 1/2``
    and negative below, so ``y - r`` pushes mass from the top class to the
    others. Shapes: ``(batch, K) -> (batch, K)``.
    """
    y_c = ops.clip(y, PROB_FLOOR, PROB_CEIL)
    # log(y) - log(1 - y), not log(y / (1 - y)): the odds reach 1e7 at the upper
    # clip, and an int8 tensor that has to hold them rounds 1 - y to zero (the
    # int8 TFLite DIV then fails). sigmoid(x) - 1/2 = tanh(x / 2) / 2: same
    # value, no exp, no division.
    logit = ops.log(y_c) - ops.log(1.0 - y_c)
    return _noise_from_logit(logit, beta, gamma)


def _noise_from_logit(logit, beta, gamma):
    """``beta (sigmoid(gamma logit) - 1/2)``, written ``(beta/2) tanh(gamma logit / 2)``."""
    return (0.5 * beta) * ops.tanh((0.5 * gamma) * logit)


def detector(y, tau, nu=1000.0):
    """DCP's detector of uncertain rows: the weight ``alpha`` of the noise.

    .. math::

        \\alpha(y) = \\sigma(\\nu (\\tau - \\max_k y_k)),
        \\qquad \\nu = \\text{None}: \\alpha(y) = [\\max_k y_k < \\tau]

    Shapes: ``(batch, K) -> (batch, 1)``, float32 in ``[0, 1]``. A large
    ``nu`` makes ``alpha`` underflow to exactly 0 for confident rows
    (``max y > tau + 88 / nu``), which is what leaves them untouched.
    """
    return _alpha(ops.max(y, axis=-1, keepdims=True), tau, nu)


def _alpha(y_max, tau, nu):
    if nu is None:
        return ops.cast(y_max < tau, "float32")
    return ops.sigmoid(nu * (tau - y_max))


def limit_l1(y, y_perturbed, l1_budget):
    """Scale the move ``y' - y`` back so its l1 norm never exceeds ``eps``.

    .. math::

        y'' = y + \\min\\left(1, \\frac{\\epsilon}{\\lVert y' - y \\rVert_1}\\right)(y' - y)

    A convex combination of two distributions, so ``y''`` is one too.
    Shapes: ``(batch, K), (batch, K) -> (batch, K)``.
    """
    delta = y_perturbed - y
    distance = ops.sum(ops.abs(delta), axis=-1, keepdims=True)
    safe_distance = ops.where(distance > 0.0, distance, ops.ones_like(distance))
    scale = ops.minimum(1.0, l1_budget / safe_distance)
    return y + scale * delta


def keep_top1(y, y_perturbed, margin=1e-6):
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


def _defend(y, beta, gamma, tau=None, nu=None, l1_budget=None, preserve_top1=False):
    """Shared body of DCP (``tau`` given) and reverse sigmoid (``tau=None``: alpha = 1).

    ``y' = N(max(s - alpha(s) r(s), 0))`` on ``s = clip(y, 0, 1)``, then the
    optional l1 budget and top-1 preservation against ``N(s)``; untouched
    valid rows and NaN rows as in the module docstring.
    """
    y = ops.convert_to_tensor(y)
    y32 = ops.cast(y, "float32")
    total = ops.sum(y32, axis=-1, keepdims=True)
    s = ops.clip(y32, 0.0, 1.0)
    if tau is None:
        alpha = 1.0
    else:
        alpha = _alpha(ops.max(s, axis=-1, keepdims=True), tau, nu)
    noise = reverse_sigmoid_noise(s, beta, gamma)
    out = _normalize(ops.maximum(s - alpha * noise, 0.0), y.shape[-1])
    if l1_budget is not None or preserve_top1:
        reference = _normalize(s, y.shape[-1])
        if l1_budget is not None:
            out = limit_l1(reference, out, l1_budget)
        if preserve_top1:
            out = keep_top1(reference, out)
    out = ops.cast(out, y.dtype)
    if tau is not None:
        # Select from the caller's tensor, not its float32 copy, so untouched
        # rows are bit-identical in every dtype.
        untouched = (alpha <= 0.0) & _valid_rows(total, ops.min(y32, axis=-1, keepdims=True))
        out = ops.where(untouched, y, out)
    return _restore_nan(total, out)


def deception(
    y,
    beta=0.7,
    gamma=0.2,
    tau=None,
    nu=1000.0,
    l1_budget=None,
    preserve_top1=False,
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
    module docstring for rows that are not distributions.

    Args:
        y: probabilities, shape ``(batch, K)``, any float dtype.
        beta: noise amplitude, > 0.
        gamma: noise sharpness, > 0.
        tau: detector threshold in (0, 1], or None for ``tau = beta``.
        nu: detector slope, > 0, or None for the hard step.
        l1_budget: optional ``eps >= 0``, the largest l1 move allowed.
        preserve_top1: keep every row's argmax.

    Returns:
        Tensor of shape ``(batch, K)`` and the dtype of ``y``.
    """
    tau = beta if tau is None else tau
    return _defend(y, beta, gamma, tau, nu, l1_budget, preserve_top1)


def reverse_sigmoid(y, beta=1.0, gamma=0.2, l1_budget=None, preserve_top1=False):
    """Reverse sigmoid (Lee et al. 2019): the same noise on every row.

    .. math::

        y' = N\\left(\\max\\left(y - r(y), 0\\right)\\right)

    i.e. :func:`deception` with ``alpha = 1`` everywhere. Shapes:
    ``(batch, K) -> (batch, K)``, dtype of ``y``.
    """
    return _defend(y, beta, gamma, None, None, l1_budget, preserve_top1)


def rounding(y, decimals=2):
    """Round every probability to ``decimals`` places: ``round(y * 10^d) / 10^d``.

    Not renormalised (that is what an API that rounds returns), so a row sums
    to 1 only within ``K * 10^-d / 2``. Shapes: ``(batch, K) -> (batch, K)``.
    """
    y32, dtype = _as_float32(y)
    scale = float(10**decimals)
    return ops.cast(ops.round(y32 * scale) / scale, dtype)


def top_label(y):
    """One-hot of each row's argmax: ``y'_k = [k = argmax_j y_j]``, per row.

    Shapes: ``(batch, K) -> (batch, K)``, dtype of ``y``.
    """
    y = ops.convert_to_tensor(y)
    return ops.one_hot(first_argmax(y), y.shape[-1], dtype=y.dtype)


def top_k(y, k=1):
    """Keep the ``k`` largest probabilities of each row and renormalise.

    .. math::

        y'_j = \\frac{y_j [j \\in \\mathrm{top}_k(y)]}{\\sum_{i \\in \\mathrm{top}_k(y)} y_i}

    Shapes: ``(batch, K) -> (batch, K)``, dtype of ``y``. ``k = 1`` is
    :func:`top_label`.
    """
    y32, dtype = _as_float32(y)
    sane = sanitize(y32)
    kth_largest = ops.top_k(sane, k)[0][..., -1:]
    kept = ops.where(sane >= kth_largest, sane, 0.0)
    out = ops.cast(_normalize(kept, y32.shape[-1]), dtype)
    return _restore_nan(ops.sum(y32, axis=-1, keepdims=True), out)


__all__ = [
    "PROB_CEIL",
    "PROB_FLOOR",
    "SUM_TOLERANCE",
    "deception",
    "detector",
    "first_argmax",
    "keep_top1",
    "limit_l1",
    "reverse_sigmoid",
    "reverse_sigmoid_noise",
    "rounding",
    "sanitize",
    "top_k",
    "top_label",
]


# --- Edge TPU-friendly DCP -------------------------------------------------
#
# The Edge TPU runs fully int8 graphs built from a short list of ops (SOFTMAX,
# LOGISTIC, ADD, SUB, MUL, MAXIMUM, MINIMUM, REDUCE_MAX, SUM, FULLY_CONNECTED,
# ...) and has no LOG, EXP, DIV, CAST, comparisons or SELECT. The functions
# below rewrite DCP with those ops only, starting from the *logits*: in int8 a
# softmax output has a step of 1/256, so log(y) of a small class cannot be
# recovered from it, whereas logit differences keep it (see docs/tflite.md).

import math  # noqa: E402  (appended section; stdlib only)

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
    logits,
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
    noise = _noise_from_logit(log_y + minus_log1m, beta, gamma)
    if nu is None:
        alpha = ops.minimum(ops.maximum((tau - y_max) * 1e4, 0.0), 1.0)
    else:
        alpha = _alpha(y_max, tau, nu)
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


__all__ += ["deception_edgetpu"]
