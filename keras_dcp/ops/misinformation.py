"""Adaptive Misinformation (Kariyappa & Qureshi, CVPR 2020): answer out-of-distribution queries with misinformation.

The defender trains a second model ``f^`` (the *misinformation model*) to put
little mass on the true class (loss ``-log(1 - f^(x)_y)``,
:func:`keras_dcp.training.train_misinformation`) and mixes its answer in where
the victim ``f`` is unsure, which is where a thief's out-of-distribution
queries land:

.. math::

    \\tilde y = (1 - \\alpha)\\, f(x) + \\alpha\\, \\hat f(x), \\qquad
    \\alpha = \\sigma\\left(\\nu\\,(\\tau - \\max_k f(x)_k)\\right)

(``nu = 1000`` in the paper; the authors' code uses ``1e4``; ``nu=None`` is
the hard step ``[max_k f(x)_k < tau]``). Unlike DCP it changes top-1 labels of
the queries it flags, so it also costs a label-only thief, and benign users
whose images the victim is unsure of.
"""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_dcp.ops.deception import detector_from_max
from keras_dcp.ops.rows import as_probabilities, is_empty, reference_rows, restore_nan, row_max


def adaptive_misinformation(y: Any, y_misinformation: Any, tau: float = 0.5, nu: float | None = 1000.0):
    """``y~ = y + alpha (y^ - y)``, ``alpha = sigmoid(nu (tau - max y))``, per row.

    Valid rows the detector passes (``alpha == 0``, confident ones) come back
    bit-identical to ``y``; rows that are not distributions are first
    sanitised (:mod:`keras_dcp.ops` conventions), and so are the
    misinformation rows. Shapes: ``(batch, K), (batch, K) -> (batch, K)``,
    dtype of ``y``.

    >>> import numpy as np
    >>> y = np.array([[0.98, 0.01, 0.01], [0.4, 0.35, 0.25]], "float32")
    >>> y_hat = np.array([[0.0, 0.5, 0.5], [0.0, 0.2, 0.8]], "float32")
    >>> out = np.asarray(adaptive_misinformation(y, y_hat, tau=0.5))
    >>> bool((out[0] == y[0]).all()), out[1].astype(float).round(3).tolist()
    (True, [0.0, 0.2, 0.8])

    Args:
        y: the victim's probabilities ``f(x)``, shape ``(batch, K)``, any float dtype.
        y_misinformation: the misinformation model's probabilities ``f^(x)``, same shape.
        tau: detector threshold in ``(0, 1]``.
        nu: detector slope ``> 0``, or None for the hard step.

    Returns:
        Tensor of shape ``(batch, K)`` and the dtype of ``y``.
    """
    y = as_probabilities(y)
    y_hat = as_probabilities(y_misinformation)
    if y.shape[-1] is not None and y_hat.shape[-1] is not None and y.shape[-1] != y_hat.shape[-1]:
        raise ValueError(
            f"adaptive_misinformation: y has {y.shape[-1]} classes but the misinformation model "
            f"{y_hat.shape[-1]}."
        )
    if is_empty(y):
        return y
    dtype = ops.dtype(y)
    y32 = ops.cast(y, "float32")
    total, valid, reference = reference_rows(y32)
    _, _, misinformation = reference_rows(ops.cast(y_hat, "float32"))
    alpha = detector_from_max(row_max(reference), tau, nu)
    out = ops.cast(reference + alpha * (misinformation - reference), dtype)
    # Select from the caller's tensor, so untouched rows are bit-identical in every dtype.
    out = ops.where((alpha <= 0.0) & valid, y, out)
    return restore_nan(total, out)


__all__ = ["adaptive_misinformation"]
