"""Coarser answers: rounding, the top-1 label, the top-k classes."""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_dcp.ops.rows import as_float32, as_probabilities, first_argmax, is_empty, normalize, restore_nan, sanitize


def rounding(y: Any, decimals: int = 2):
    """Round every probability to ``decimals`` places: ``round(y * 10^d) / 10^d``.

    Not renormalised (that is what an API that rounds returns), so a row sums
    to 1 only within ``K * 10^-d / 2``. Shapes: ``(batch, K) -> (batch, K)``.

    >>> import numpy as np
    >>> np.asarray(rounding(np.array([[0.84, 0.16]], "float32"), 1)).astype(float).round(6).tolist()
    [[0.8, 0.2]]
    """
    y32, dtype = as_float32(y)
    if is_empty(y32):
        return ops.cast(y32, dtype)
    scale = float(10**decimals)
    return ops.cast(ops.round(y32 * scale) / scale, dtype)


def top_label(y: Any):
    """One-hot of each row's argmax: ``y'_k = [k = argmax_j y_j]``, per row; a NaN row stays NaN.

    Shapes: ``(batch, K) -> (batch, K)``, dtype of ``y``.

    >>> import numpy as np
    >>> np.asarray(top_label(np.array([[0.2, 0.8], [0.6, 0.4]], "float32"))).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    y = as_probabilities(y)
    if is_empty(y):
        return y
    out = ops.one_hot(first_argmax(y), y.shape[-1], dtype=ops.dtype(y))
    return restore_nan(ops.sum(ops.cast(y, "float32"), axis=-1, keepdims=True), out)


def top_k(y: Any, k: int = 1):
    """Keep the ``k`` largest probabilities of each row and renormalise.

    .. math::

        y'_j = \\frac{y_j [j \\in \\mathrm{top}_k(y)]}{\\sum_{i \\in \\mathrm{top}_k(y)} y_i}

    Shapes: ``(batch, K) -> (batch, K)``, dtype of ``y``. ``k = 1`` is
    :func:`top_label`; ties at the k-th value are all kept.

    >>> import numpy as np
    >>> np.asarray(top_k(np.array([[0.5, 0.3, 0.2]], "float32"), 2)).astype(float).round(3).tolist()
    [[0.625, 0.375, 0.0]]
    """
    y32, dtype = as_float32(y)
    if is_empty(y32):
        return ops.cast(y32, dtype)
    sane = sanitize(y32)
    kth_largest = ops.top_k(sane, k)[0][..., -1:]
    kept = ops.where(sane >= kth_largest, sane, 0.0)
    out = ops.cast(normalize(kept, y32.shape[-1]), dtype)
    return restore_nan(ops.sum(y32, axis=-1, keepdims=True), out)


__all__ = ["rounding", "top_k", "top_label"]
