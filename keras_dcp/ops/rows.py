"""What every defense function shares: constants, row statistics and the conventions for odd rows.

A served model must never crash on odd input and never answer silently wrong,
so every function of :mod:`keras_dcp.ops` follows the same rules (module
docstring of :mod:`keras_dcp.ops`). The helpers here implement them once:

* :func:`as_probabilities`: a floating tensor, or a ``ValueError`` (integer and
  bool "probabilities" are refused rather than silently cast);
* :func:`is_empty`: a batch of zero rows is returned as it came, shape ``(0, K)``;
* :func:`sanitize_unit`: ``s = clip(y, 0, 1)`` written as ``relu6(6 y) / 6``,
  which full-int8 TFLite quantizes for any calibration range (a ``MINIMUM``
  against the constant 1 must share its input's scale, and fails to convert
  when the calibrated probabilities stay well below 1);
* :func:`normalize`, :func:`restore_nan`, :func:`valid_rows`, :func:`first_argmax`,
  :func:`row_max`.
"""

from __future__ import annotations

from typing import Any

from keras import ops

#: Lower clip of the probabilities inside the logit: log(1e-12) is the floor of
#: the reference code.
PROB_FLOOR = 1e-12
#: Upper clip. It must stay below 1 in float32: 1 - 1e-9 rounds to 1.0 there,
#: log(1 - y) becomes -inf, and full-int8 TFLite conversion then fails with
#: "scale out of expressed type range". In float32 it is 1 - 2**-23.
PROB_CEIL = 1.0 - 1e-7
#: How far from 1 a row's sum may be and still count as a distribution.
SUM_TOLERANCE = 1e-3


def as_probabilities(y: Any):
    """``y`` as a tensor of probability rows; a ``ValueError`` unless it is floating point.

    Integer and bool rows are refused: ``[0, 0, 0]`` as int32 or ``[False, True]``
    do not say which distribution they stand for, and casting them silently
    gave wrong answers (an all-zero int row came back all zeros).
    """
    tensor = ops.convert_to_tensor(y)
    dtype = ops.dtype(tensor)
    if not dtype.startswith(("float", "bfloat")):
        raise ValueError(
            "keras_dcp defenses take floating-point probabilities of shape (batch, K); "
            f"got dtype {dtype}. Cast them first, e.g. keras.ops.cast(y, 'float32')."
        )
    return tensor


def is_empty(y: Any) -> bool:
    """True for a batch known to have zero rows (static shape), which every defense returns as is."""
    return y.shape[0] == 0


def as_float32(y: Any):
    """``(float32 copy, original dtype)`` of a probability tensor."""
    y = as_probabilities(y)
    return ops.cast(y, "float32"), ops.dtype(y)


def row_max(y: Any):
    """``max_k y_k`` per row, ``(batch, K) -> (batch, 1)``."""
    return ops.max(y, axis=-1, keepdims=True)


def normalize(v, num_classes: int):
    """``N(v) = v / sum(v)`` per row; an all-zero row becomes uniform ``1/K``."""
    total = ops.sum(v, axis=-1, keepdims=True)
    safe_total = ops.where(total > 0.0, total, ops.ones_like(total))
    uniform = ops.ones_like(v) / float(num_classes)
    return ops.where(total > 0.0, v / safe_total, uniform)


def first_argmax(y: Any):
    """Index of the first largest entry per row: ``(batch, K) -> (batch,)`` int32.

    ``keras.ops.argmax`` on floats adds a sign-bit test (BitwiseAnd) that TFLite
    builtins lack; comparing against the row max and taking argmax of the int
    mask gives the same first index with plain MAX/GREATER_EQUAL/ARG_MAX ops.
    """
    is_max = ops.cast(y >= row_max(y), "int32")
    return ops.argmax(is_max, axis=-1)


def sanitize_unit(y: Any):
    """``clip(y, 0, 1)`` as ``relu6(6 y) / 6``: ``-inf``, negatives -> 0; ``+inf``, > 1 -> 1.

    The same values (to one float32 rounding of ``6 y / 6``), but a graph that
    full-int8 TFLite can quantize whatever range calibration saw (see the
    module docstring).
    """
    return ops.relu6(6.0 * y) * (1.0 / 6.0)


def sanitize(y: Any):
    """The distribution an invalid row stands for: ``s = N(clip(y, 0, 1))``.

    An all-zero row becomes uniform. NaN is not handled here. Shapes:
    ``(batch, K) -> (batch, K)``, float32.
    """
    return normalize(sanitize_unit(y), y.shape[-1])


def valid_rows(total, lowest):
    """``[|sum - 1| <= SUM_TOLERANCE and min >= 0]`` per row, from the row's sum and min."""
    return (ops.abs(total - 1.0) <= SUM_TOLERANCE) & (lowest >= 0.0)


def reference_rows(y32: Any):
    """``(total, valid, reference)`` of float32 rows: their sums, :func:`valid_rows`, and the rows a
    defense reads (valid rows as they are, others as :func:`sanitize` makes them). ``(batch, K)`` in."""
    total = ops.sum(y32, axis=-1, keepdims=True)
    valid = valid_rows(total, ops.min(y32, axis=-1, keepdims=True))
    return total, valid, ops.where(valid, y32, sanitize(y32))


def restore_nan(total, out):
    """Rows whose sum is NaN come back as all-NaN rows of ``out``."""
    return ops.where(ops.isnan(total), float("nan"), out)


__all__ = [
    "PROB_CEIL",
    "PROB_FLOOR",
    "SUM_TOLERANCE",
    "as_float32",
    "as_probabilities",
    "first_argmax",
    "is_empty",
    "normalize",
    "reference_rows",
    "restore_nan",
    "row_max",
    "sanitize",
    "sanitize_unit",
    "valid_rows",
]
