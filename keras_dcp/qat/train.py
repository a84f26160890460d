"""Fine-tune a QAT model, and put a defense twin after its probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from keras_dcp.defenses.deception import DeceptionLayer
from keras_dcp.qat.alignment import align_biases
from keras_dcp.qat.calibration import calibrate_ranges
from keras_dcp.qat.twins import tf_keras_module, twin_of


def train_qat(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    epochs: int = 1,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    seed: int = 0,
    verbose: int = 1,
    align: bool = True,
    calibrate: bool = True,
) -> dict[str, Any]:
    """Fine-tune a QAT model (from :func:`quantize_model`) on ``(x, y)`` in place.

    Adam on the sparse cross-entropy of the model's probabilities (on our
    ResNet-20, ``1e-3`` gave a closer int8 model than ``1e-4``: see
    docs/results/tflite.md); ``x`` as
    the model takes it (float images in ``[0, 1]`` for the zoo), ``y`` int
    labels. With ``align=True`` (default) the trained model's biases are then
    moved onto the int32 grid of its int8 export
    (:func:`keras_dcp.qat.align_biases`), so the Keras model and
    the int8 model add the same biases. Returns the Keras
    ``History.history`` dict (with ``"aligned_layers"``: the layers moved).
    With ``calibrate=True`` (default) every quantization range is first set
    from the first 1,000 images (:func:`keras_dcp.qat.calibrate_ranges`), so
    training starts from the post-training-quantized model instead of tfmot's
    ``[-6, 6]`` defaults.
    """
    import tensorflow as tf

    tf_keras = tf_keras_module()
    tf_keras.utils.set_random_seed(seed)
    if calibrate:
        calibrate_ranges(model, np.asarray(x[:1000], "float32"))
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    data = tf.data.Dataset.from_tensor_slices((np.asarray(x, "float32"), np.asarray(y, "int64")))
    data = data.shuffle(len(x), seed=seed).batch(batch_size)
    history = model.fit(data, epochs=epochs, verbose=verbose).history
    if align:
        history["aligned_layers"] = sorted(align_biases(model))
    return history


def protect_qat(model: Any, defense: Any = None) -> Any:
    """Append the tf_keras twin of ``defense`` (default DCP) to a (QAT) tf_keras model.

    Args:
        model: a tf_keras model ending in probabilities (e.g. the output of
            :func:`quantize_model` on a zoo victim).
        defense: a Keras 3 defense layer (e.g. ``keras_dcp.DeceptionLayer()``),
            a twin, or None for ``DeceptionLayer()``. A defense that takes
            logits (``keras_dcp.EdgeTPUDeception``) is wired on the input of
            the model's last Softmax, so that
            ``export_tflite(..., quantize="int8", tail="int8", representative=x)``
            gives an all-int8 graph the Edge TPU maps whole.

    Returns:
        A tf_keras functional model: ``defense(model(x))``.
    """
    tf_keras = tf_keras_module()
    defense = DeceptionLayer() if defense is None else defense
    logits_input = getattr(defense, "input_kind", getattr(getattr(defense, "keras3_class", None), "input_kind", None))
    if getattr(defense, "needs_inputs", False):
        raise ValueError(f"protect_qat() does not wire defenses that also read the query ({type(defense).__name__}).")
    if not isinstance(defense, tf_keras.layers.Layer):
        defense = twin_of(defense)
    source = model.outputs[0]
    if logits_input == "logits":
        softmaxes = [layer for layer in model.layers if isinstance(getattr(layer, "layer", layer), tf_keras.layers.Softmax)]
        if not softmaxes:
            raise ValueError(f"{type(defense).__name__} takes logits and the model has no Softmax layer to start from.")
        source = softmaxes[-1].input
    return tf_keras.Model(model.inputs, defense(source), name=f"{model.name}_protected")


__all__ = ["protect_qat", "train_qat"]
