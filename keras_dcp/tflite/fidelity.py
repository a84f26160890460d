"""``fidelity``: how closely a ``.tflite`` export reproduces its Keras model's defended output.

Quantization changes a protected model's answers twice: through the backbone
(which class scores come out) and through the defense (which rows DCP's
detector calls uncertain, and how much they move). Before shipping an int8
model, measure both on images like the ones it will be asked about:

    agreement   = mean_i [argmax_k y_i,k == argmax_k r_i,k]
    mean_l1     = mean_i sum_k |y_i,k - r_i,k|
    detector_differs = mean_i [(max_k y_i,k < tau) != (max_k r_i,k < tau)]   (optional)

with ``y`` the ``.tflite`` model's output (dequantized) and ``r`` the
reference Keras model's, both ``(n, K)``. The goal used in
docs/results/tflite.md is agreement >= 0.99 and mean l1 <= 0.02.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def compare_outputs(outputs: np.ndarray, reference: np.ndarray, tau: float | None = None) -> dict[str, float]:
    """Agreement, mean l1 and (with ``tau``) the detector-decision difference of two ``(n, K)`` arrays.

    Raises:
        ValueError: if the shapes differ or are not ``(n, K)`` with ``n >= 1``.
    """
    outputs, reference = np.asarray(outputs, "float64"), np.asarray(reference, "float64")
    if outputs.shape != reference.shape or outputs.ndim != 2 or len(outputs) == 0:
        raise ValueError(
            f"outputs and reference must both be (n, K) with n >= 1; got {outputs.shape} and {reference.shape}."
        )
    row = {
        "agreement": float(np.mean(outputs.argmax(1) == reference.argmax(1))),
        "mean_l1": float(np.abs(outputs - reference).sum(1).mean()),
    }
    if tau is not None:
        row["detector_differs"] = float(np.mean((outputs.max(1) < tau) != (reference.max(1) < tau)))
    return row


def fidelity(
    model: Any,
    reference: Any,
    x: np.ndarray,
    batch_size: int = 500,
    xnnpack: bool = True,
    tau: float | None = None,
) -> dict[str, float]:
    """Compare a ``.tflite`` model with its reference Keras model on inputs ``x``.

    Args:
        model: the ``.tflite`` file (path or bytes), e.g. from
            :func:`keras_dcp.tflite.export_tflite`.
        reference: the model it was exported from (Keras 3, or a tf_keras QAT
            model from :mod:`keras_dcp.qat`), or its outputs on ``x`` as an
            ``(n, K)`` array.
        x: float inputs as the Keras model takes them, ``(n, ...)``; int8
            inputs are quantized from them with the model's input scale.
        batch_size: rows per invoke.
        xnnpack: run with the XNNPACK delegate (LiteRT's default); False uses
            TFLite's builtin kernels, which round differently.
        tau: also report ``detector_differs`` for this threshold.

    Returns:
        ``{"agreement", "mean_l1"[, "detector_differs"], "rows"}``.
    """
    from keras_dcp.tflite.interpreter import make_interpreter, predict

    x = np.asarray(x)
    if x.ndim < 2 or len(x) == 0:
        raise ValueError(f"`x` must be a non-empty batch of model inputs (n, ...); got shape {x.shape}.")
    outputs = predict(None, x, batch_size=batch_size, interpreter=make_interpreter(model, xnnpack=xnnpack))
    expected = reference if isinstance(reference, np.ndarray) else reference.predict(x, batch_size=batch_size,
                                                                                      verbose=0)
    return {**compare_outputs(outputs, np.asarray(expected), tau=tau), "rows": int(len(x))}


__all__ = ["compare_outputs", "fidelity"]
