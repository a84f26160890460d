"""Export a protected tf_keras (QAT) model to int8 TFLite with the defense tail in float32.

A QAT model's graph arrives at the converter already quantized by its
fake-quant ops, so the float tail cannot be carved out by denylisting as for
Keras 3 models (:mod:`keras_dcp.tflite.export`). Instead the model is split at
the logits (:func:`split_protected`), the int8 backbone and the float32
softmax + defense are converted separately, and the two flatbuffers are
stitched into one (:func:`keras_dcp.tflite.flatbuffer.stitch`). A QAT backbone
keeps its trained ranges (no re-calibration).
"""

from __future__ import annotations

from typing import Any

from keras_dcp.qat.alignment import warn_if_not_aligned
from keras_dcp.qat.quantize import is_qat_model
from keras_dcp.qat.twins import is_twin, tf_keras_module
from keras_dcp.tflite.converter import DEFAULT_CALIBRATION_SAMPLES, converter_for, representative_generator
from keras_dcp.tflite.flatbuffer import quantize_output, stitch


def split_protected(model: Any) -> tuple[Any, Any]:
    """``(backbone, tail)`` of a protected tf_keras model: ``x -> logits`` and ``logits -> defense(softmax)``.

    The split is at the logits: a QAT model's int8 logits follow its trained
    ranges (see :func:`keras_dcp.qat.quantize_model`).
    """
    tf_keras = tf_keras_module()
    defense = model.layers[-1]
    before = model.layers[-2] if len(model.layers) > 1 else None
    softmax = getattr(before, "layer", before)  # tfmot wraps layers in QuantizeWrapper
    if not is_twin(defense) or not isinstance(softmax, tf_keras.layers.Softmax):
        raise ValueError(
            "tail='float' for a tf_keras model needs ... -> Softmax -> keras_dcp defense twin "
            "(keras_dcp.qat.protect_qat builds that); export with tail='int8' otherwise."
        )
    backbone = tf_keras.Model(model.inputs, before.input, name=f"{model.name}_backbone")
    logits = tf_keras.Input(shape=tuple(before.input.shape[1:]), name="logits")
    twin = type(defense).from_config(defense.get_config())
    tail = tf_keras.Model(logits, twin(tf_keras.layers.Softmax()(logits)), name=f"{model.name}_tail")
    return backbone, tail


def convert_qat(
    model: Any,
    representative: Any = None,
    io_type: str = "int8",
    num_calibration: int = DEFAULT_CALIBRATION_SAMPLES,
) -> bytes:
    """int8 backbone (float logits out) stitched to a float32 softmax + defense tail; the ``.tflite`` bytes.

    Args:
        model: a protected tf_keras model (:func:`keras_dcp.qat.protect_qat`),
            QAT or plain.
        representative: calibration inputs, needed only for a plain (not QAT)
            tf_keras backbone.
        io_type: ``"int8"`` (int8 input, int8 output at scale 1/255) or ``"float"``.
        num_calibration: representative samples used.
    """
    import tensorflow as tf

    backbone, tail = split_protected(model)
    qat = is_qat_model(backbone)
    if not qat and representative is None:
        raise ValueError("A tf_keras model that is not a QAT model needs `representative` data to calibrate.")
    with converter_for(backbone) as converter:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if not qat:
            converter.representative_dataset = representative_generator(representative, num_calibration)
        # A QAT backbone is converted from its fake-quant ranges alone:
        # calibrating it again replaces the trained ranges (on ResNet-20 the
        # int8 model then strayed several times further from the Keras one).
        converter.inference_input_type = tf.int8 if io_type == "int8" else tf.float32
        converter.inference_output_type = tf.float32
        backbone_bytes = converter.convert()
    if qat:
        warn_if_not_aligned(backbone, backbone_bytes)
    with converter_for(tail) as converter:
        tail_bytes = converter.convert()
    stitched = stitch(backbone_bytes, tail_bytes)
    return quantize_output(stitched) if io_type == "int8" else stitched


__all__ = ["convert_qat", "split_protected"]
