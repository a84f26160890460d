"""A ``tf.lite.TFLiteConverter`` for any Keras model, and the representative data it calibrates on."""

from __future__ import annotations

import contextlib
import io
import tempfile
from typing import Any, Callable, Iterator

import numpy as np

#: Default number of representative samples used for calibration.
DEFAULT_CALIBRATION_SAMPLES = 500


def representative_generator(representative: Any, num_samples: int) -> Callable[[], Iterator[list]]:
    """A zero-argument generator of ``[x_i]`` batches of one, as the converter wants.

    ``representative`` is an array of model inputs ``(n, ...)`` (float, or
    anything castable to float32; pass exactly what the model takes), or a
    callable returning an iterable of such batches or of lists of arrays.
    """
    if callable(representative):
        def generate():
            for count, item in enumerate(representative()):
                if count >= num_samples:
                    break
                yield [np.asarray(a, "float32") for a in (item if isinstance(item, (list, tuple)) else [item])]
        return generate
    data = np.asarray(representative)
    if data.ndim < 2 or len(data) == 0:
        raise ValueError(
            f"`representative` must be an array of model inputs of shape (n, ...) with n > 0; got shape {data.shape}."
        )

    def generate():
        for i in range(min(len(data), num_samples)):
            yield [data[i:i + 1].astype("float32")]
    return generate


def is_tf_keras_model(model: Any) -> bool:
    """True for a tf_keras (Keras 2) model, e.g. a QAT model of :mod:`keras_dcp.qat`."""
    try:
        import tf_keras
    except ImportError:
        return False
    return isinstance(model, tf_keras.Model)


@contextlib.contextmanager
def converter_for(model: Any, batch_size: int | None = None):
    """A ``tf.lite.TFLiteConverter`` for a Keras 3 or tf_keras model (temp dir cleaned after).

    ``batch_size`` fixes the batch dimension of a Keras 3 model's input
    (default: dynamic, ``1`` until resized).
    """
    import tensorflow as tf

    if is_tf_keras_model(model):
        if batch_size is not None:
            raise ValueError("batch_size is not supported for tf_keras (QAT) models; resize the interpreter instead.")
        yield tf.lite.TFLiteConverter.from_keras_model(model)
        return
    import keras

    if not isinstance(model, keras.Model):
        raise ValueError(f"export_tflite() needs a Keras model; got {type(model).__name__}.")
    with tempfile.TemporaryDirectory(prefix="keras_dcp_export_") as directory:
        # Keras 3 -> SavedModel -> converter: the path TensorFlow documents for
        # Keras 3, and it prints nothing with verbose=False.
        signature = None
        if batch_size is not None:
            shape = getattr(model, "input_shape", None)
            if not isinstance(shape, tuple) or not shape or isinstance(shape[0], (tuple, list)):
                raise ValueError("batch_size needs a model with one input of known shape.")
            dtype = model.inputs[0].dtype if getattr(model, "inputs", None) else "float32"
            signature = [keras.InputSpec(shape=(batch_size, *shape[1:]), dtype=dtype)]
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(directory, format="tf_saved_model", verbose=False, input_signature=signature)
        yield tf.lite.TFLiteConverter.from_saved_model(directory)


__all__ = ["DEFAULT_CALIBRATION_SAMPLES", "converter_for", "is_tf_keras_model", "representative_generator"]
