"""Start a QAT model from calibrated ranges instead of tfmot's defaults.

tfmot's 8-bit scheme creates every activation range as ``[-6, 6]`` and every
weight range the same way, and only moves them in training mode: weights take
their last value's range at each training step, activations an exponential
moving average with decay ``0.999``. Until then the model quantizes with those
defaults: on a small CNN its answers agreed with the float model's on 12% of
digits (chance), and after 300 training steps the activation ranges still
hold about ``0.999^300 = 74%`` of ``[-6, 6]``, so QAT spends its first epochs
repairing its own initialisation and drifts away from the float model.

:func:`calibrate_ranges` sets every range from data in one inference pass
(batch norm on its moving statistics, as exported): weight ranges to the
weights' min/max (per channel), activation ranges to the min/max observed on
the calibration batch (the model input's range: the running min/max over
all values, with 0 included), each layer seeing its inputs already quantized
with the ranges set before it. Afterwards the QAT model is the post-training
quantized model, which is where fine-tuning should start.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np


@contextlib.contextmanager
def _ranges_from_this_batch() -> Iterator[None]:
    """While active, every tfmot quantizer call sets its range from its input, in any mode."""
    from tensorflow_model_optimization.python.core.quantization.keras import quant_ops

    moving_average, last_value = quant_ops.MovingAvgQuantize, quant_ops.LastValueQuantize
    all_values = quant_ops.AllValuesQuantize

    def moving_average_from_batch(inputs, min_var, max_var, **kwargs):
        kwargs.update(ema_decay=0.0, is_training=True)
        return moving_average(inputs, min_var, max_var, **kwargs)

    def last_value_always(inputs, min_var, max_var, **kwargs):
        kwargs.update(is_training=True)
        return last_value(inputs, min_var, max_var, **kwargs)

    def all_values_always(inputs, min_var, max_var, **kwargs):
        kwargs.update(is_training=True)
        return all_values(inputs, min_var, max_var, **kwargs)

    quant_ops.MovingAvgQuantize, quant_ops.LastValueQuantize = moving_average_from_batch, last_value_always
    quant_ops.AllValuesQuantize = all_values_always
    try:
        yield
    finally:
        quant_ops.MovingAvgQuantize, quant_ops.LastValueQuantize = moving_average, last_value
        quant_ops.AllValuesQuantize = all_values


def calibrate_ranges(qat_model: Any, x: np.ndarray) -> dict[str, float]:
    """Set a tfmot QAT model's weight and activation ranges from ``x`` in one pass (in place).

    Args:
        qat_model: a tf_keras model from :func:`keras_dcp.qat.quantize_model`.
        x: a calibration batch ``(n, ...)`` as the model takes it (a few
            hundred to a thousand images; they go through in one call).

    Returns:
        ``{range variable name: value}`` of the activation ranges set (for inspection).
    """
    x = np.asarray(x, "float32")
    if x.ndim < 2 or not len(x):
        raise ValueError(f"calibrate_ranges() needs a non-empty batch (n, ...); got shape {x.shape}.")
    with _ranges_from_this_batch():
        qat_model(x, training=False)
    return {
        variable.name: float(np.asarray(variable).reshape(-1)[0])
        for variable in qat_model.non_trainable_weights
        if variable.name.rsplit("/", 1)[-1].startswith(("output_m", "post_activation_m", "activation_m"))
        or "quantize_layer_m" in variable.name
    }


__all__ = ["calibrate_ranges"]
