"""tfmot's quantization-aware training wrapping, with BatchNorm folding the TFLite converter can use."""

from __future__ import annotations

from typing import Any

from keras_dcp.qat.twins import is_twin, tf_keras_module, twin_classes

#: tfmot's wrapper classes: a model holding one of them simulates int8 inference.
QAT_WRAPPERS = ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer")


def is_qat_model(model: Any) -> bool:
    """True if a tf_keras model carries tfmot fake-quant wrappers."""
    return any(type(layer).__name__ in QAT_WRAPPERS for layer in getattr(model, "layers", ()))


def _foldable_batch_norms(model):
    """Names of the BatchNormalization layers that directly follow a linear conv or dense layer.

    tfmot's default 8-bit transforms (``Conv2DBatchNormQuantize`` and its
    ReLU/Dense variants) take these pairs: no fake quant between the conv and
    the BN, one after the BN (or its ReLU), with the conv weights quantized per
    channel, which is exact under BN folding. The TFLite converter then folds
    the BN into the conv: one int8 CONV_2D, as after post-training
    quantization. A BN given its own quantize_config instead is skipped by
    those transforms and becomes a DEQUANTIZE -> float MUL/ADD -> QUANTIZE
    block after an int8 conv output: not a full-int8 graph (no Edge TPU), and
    4.3x slower under XNNPACK on ResNet-20 (docs/results/tflite.md).
    """
    tf_keras = tf_keras_module()
    names = set()
    for layer in model.layers:
        if not isinstance(layer, tf_keras.layers.BatchNormalization):
            continue
        inbound = [node.inbound_layers for node in layer._inbound_nodes]  # noqa: SLF001
        if len(inbound) != 1:
            continue
        source = inbound[0][0] if isinstance(inbound[0], (list, tuple)) else inbound[0]
        linear = getattr(source, "activation", None) is tf_keras.activations.linear
        if linear and isinstance(source, (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D,
                                          tf_keras.layers.Dense)):
            names.add(layer.name)
    return names


def quantize_model(model: Any) -> Any:
    """tfmot QAT wrapping of a tf_keras model (8-bit default scheme).

    Layers tfmot's default registry supports get its default config.
    BatchNormalization layers right after a linear conv or dense layer are
    annotated without a config, so tfmot's Conv+BN(+ReLU) transforms take them (one fake quant after
    the BN or its ReLU; the converter folds the BN into one int8 CONV_2D). The
    others get an output-only fake quant (e.g. ``Rescaling``, so the next
    layer's int8 input range is learned too), except ``Softmax`` layers and
    defense twins, which stay float: the exported model computes them in
    float32 after the int8 logits (:mod:`keras_dcp.tflite.export`), so
    training sees what runs. (Keeping the Dense head float as well matched
    the Keras QAT model worse on ResNet-20: the trained int8 logits fit it.)
    """
    import tensorflow_model_optimization as tfmot
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_configs as configs,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    tf_keras = tf_keras_module()
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    quantize = tfmot.quantization.keras

    foldable = _foldable_batch_norms(model)

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        if isinstance(layer, tf_keras.layers.Softmax) or is_twin(layer):
            return quantize.quantize_annotate_layer(layer, quantize_config=configs.NoOpQuantizeConfig())
        if registry.supports(layer) or layer.name in foldable:
            # No quantize_config for a BatchNormalization after a conv:
            # tfmot's Conv+BN(+ReLU) transforms skip layers that carry one.
            return quantize.quantize_annotate_layer(layer)
        return quantize.quantize_annotate_layer(layer, quantize_config=configs.Default8BitOutputQuantizeConfig())

    annotated = tf_keras.models.clone_model(model, clone_function=annotate)
    scope = {
        "NoOpQuantizeConfig": configs.NoOpQuantizeConfig,
        "Default8BitOutputQuantizeConfig": configs.Default8BitOutputQuantizeConfig,
        **twin_classes(),
    }
    with quantize.quantize_scope(scope):
        return quantize.quantize_apply(annotated)


__all__ = ["QAT_WRAPPERS", "is_qat_model", "quantize_model"]
