"""Running a model on a batch of any size without recompiling for every size.

A backend that compiles per input shape (JAX, ``tf.function``) would compile
once per odd batch size; padding each small batch with zero rows up to the
next power of two keeps that to a handful of shapes. Used by the metered
:class:`~keras_dcp.attacks.BlackBox` and the experiment runner.
"""

from __future__ import annotations

import keras
import numpy as np


def pad_rows_to_power_of_two(x: np.ndarray, minimum: int = 1) -> np.ndarray:
    """``x`` with zero rows appended up to ``max(minimum, 2^ceil(log2 n))`` rows.

    >>> pad_rows_to_power_of_two(np.ones((5, 2)), minimum=8).shape
    (8, 2)
    """
    n = len(x)
    rows = max(int(minimum), 1 << max(0, (n - 1).bit_length()))
    if rows == n:
        return x
    return np.concatenate([x, np.zeros((rows - n, *x.shape[1:]), x.dtype)])


def predict_padded(model: keras.Model, x: np.ndarray, batch_size: int = 256, minimum: int = 1) -> np.ndarray:
    """``model(x)`` as float32 NumPy, ``(n, ...) -> (n, K)``, in compiled calls of few distinct shapes.

    Up to ``batch_size`` rows: one ``predict_on_batch`` on ``x`` padded by
    :func:`pad_rows_to_power_of_two`; more: ``model.predict`` in batches of
    ``batch_size``.
    """
    n = len(x)
    if n == 0:
        num_classes = model.output_shape[-1]
        return np.zeros((0, num_classes), "float32")
    if n <= batch_size:
        out = model.predict_on_batch(pad_rows_to_power_of_two(x, minimum))
        return np.asarray(keras.ops.convert_to_numpy(out), "float32")[:n]
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0), "float32")


__all__ = ["pad_rows_to_power_of_two", "predict_padded"]
