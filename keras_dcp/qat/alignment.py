"""Make a QAT model's biases exactly the int32 biases its int8 TFLite model will use.

A quantization-aware (tfmot) model simulates int8 inference in float: fake
quant on the weights (per output channel) and on the activations. One step of
the real int8 graph is not simulated: the TFLite converter folds each
BatchNormalization into the convolution before it and stores the folded bias

    b'_k = beta_k - mean_k * c_k  (+ conv_bias_k * c_k),   c_k = gamma_k / sqrt(var_k + eps)

as an int32 on the grid ``s_in * s_w,k`` (input activation scale times the
channel's weight scale):

    b_int_k = round(b'_k / (s_in * s_w,k)).

The Keras QAT model keeps the exact ``b'_k``. The difference is at most half a
grid step, a small fraction of an output step, but wherever a pre-rounding value
lies that close to a rounding boundary the int8 output differs from the
simulated one by a whole step, and in a deep network those one-step
differences spread from layer to layer. :func:`align_biases` removes that
seed: it converts the model once, reads the int32 biases back and moves
``beta`` (or the bias of a layer without BatchNormalization) by
``b_int_k * s_in * s_w,k - b'_k``, so the Keras model and the int8 model use the
same biases. The change to the model is at most half a bias grid step per
channel.

Measured effect on a QAT ResNet-20: docs/results/tflite.md (QAT section).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from keras_dcp.qat.quantize import is_qat_model
from keras_dcp.tflite.flatbuffer import load_model, opcode_name

#: TFLite operators that carry an int32 bias as their third input.
_BIASED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def _inner(layer):
    """The wrapped Keras layer of a tfmot ``QuantizeWrapper``, or the layer itself."""
    return getattr(layer, "layer", layer)


def _convertible_part(model):
    """``model`` up to the input of its last Softmax (the int8 part), or the whole model."""
    import tf_keras

    for layer in reversed(model.layers):
        if isinstance(_inner(layer), tf_keras.layers.Softmax):
            return tf_keras.Model(model.inputs, layer.input)
    return model


def tflite_biases(content: bytes) -> dict[str, np.ndarray]:
    """``{output tensor name: float64 bias}`` of every biased op of an int8 ``.tflite`` model.

    The bias is the stored int32 vector times its per-channel scale, i.e. what
    the int8 kernel adds. Float ops (no quantized bias) are skipped.
    """
    model_t = load_model(content)
    subgraph = model_t.subgraphs[0]
    biases = {}
    for operator in subgraph.operators:
        if opcode_name(model_t, operator) not in _BIASED_OPS or len(operator.inputs) < 3 or operator.inputs[2] < 0:
            continue
        tensor = subgraph.tensors[operator.inputs[2]]
        quantization = tensor.quantization
        if quantization is None or quantization.scale is None or not len(quantization.scale):
            continue
        values = np.frombuffer(bytes(model_t.buffers[tensor.buffer].data), dtype=np.int32)
        name = subgraph.tensors[operator.outputs[0]].name
        name = name.decode() if isinstance(name, bytes) else name
        biases[name] = values.astype(np.float64) * np.asarray(quantization.scale, np.float64)
    return biases


def folded_bias(batch_norm, linear):
    """``b'``: the bias of ``linear`` (a conv/dense or None) with the BatchNormalization after it folded in, float64."""
    variance = batch_norm.moving_variance.numpy().astype(np.float64)
    gamma = batch_norm.gamma.numpy().astype(np.float64) if batch_norm.scale else 1.0
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    folded = -batch_norm.moving_mean.numpy().astype(np.float64) * scale
    if batch_norm.center:
        folded = folded + batch_norm.beta.numpy()
    if linear is not None and getattr(linear, "use_bias", False):
        folded = folded + linear.bias.numpy() * scale
    return folded


def bias_moves(model: Any, content: bytes) -> list:
    """What :func:`align_biases` would change: ``[(layer name, variable, new value, largest change)]``.

    ``model`` is the tf_keras QAT model (or the part of it) that ``content``
    (its int8 ``.tflite`` bytes) was converted from. ``variable`` is the BN's
    ``beta`` or the layer's ``bias``; nothing is assigned.

    Raises:
        ValueError: if no biased int8 op of ``content`` matches a layer.
    """
    import tf_keras

    linear_types = (tf_keras.layers.Conv2D, tf_keras.layers.DepthwiseConv2D, tf_keras.layers.Dense)
    biases = tflite_biases(content)
    layers = {layer.name: layer for layer in model.layers}
    moves = []
    matched = 0
    for tensor_name, real in biases.items():
        tokens = set(re.split(r"[/;:]", tensor_name))
        fused = [layers[name] for name in layers if name in tokens]
        batch_norms = [l for l in fused if isinstance(_inner(l), tf_keras.layers.BatchNormalization)]
        linears = [l for l in fused if isinstance(_inner(l), linear_types)]
        if linears and not batch_norms:
            # The converter names a fused op after its conv alone when the batch
            # norm after it is the identity (an untrained model): find it in the graph.
            following = _following_batch_norm(model, linears[0])
            batch_norms = [following] if following is not None else []
        matched += bool(batch_norms or linears)
        if batch_norms and _inner(batch_norms[0]).center:
            batch_norm = _inner(batch_norms[0])
            folded = folded_bias(batch_norm, _inner(linears[0]) if linears else None)
            if folded.shape == real.shape:
                moves.append((batch_norms[0].name, batch_norm.beta, batch_norm.beta.numpy() + (real - folded),
                              float(np.abs(real - folded).max())))
        elif not batch_norms and linears and getattr(_inner(linears[0]), "use_bias", False):
            linear = _inner(linears[0])
            if linear.bias.shape == real.shape:
                moves.append((linears[0].name, linear.bias, real, float(np.abs(real - linear.bias.numpy()).max())))
    if biases and not matched:
        raise ValueError(
            "the int8 model's biased ops could not be matched to the model's layers "
            f"(tensor names such as {next(iter(biases))!r})."
        )
    return moves


def _following_batch_norm(model, layer):
    """The BatchNormalization layer fed by ``layer`` alone (its only consumer), or None."""
    import tf_keras

    consumers = [
        other for other in model.layers
        if any(layer in (node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers])
               for node in other._inbound_nodes)  # noqa: SLF001 (tf_keras keeps the graph there)
    ]
    if len(consumers) == 1 and isinstance(_inner(consumers[0]), tf_keras.layers.BatchNormalization):
        return consumers[0]
    return None


def align_biases(model: Any) -> dict[str, float]:
    """Move a QAT model's biases onto the int32 grid of its int8 TFLite model, in place.

    Call once training is over (``keras_dcp.qat.train_qat`` does it by
    default), before taking the model's outputs as the reference of its int8
    export. Works on a QAT classifier and on ``protect_qat(...)`` of one (the
    defense and the softmax stay float and are left alone).
    ``keras_dcp.tflite.export_tflite`` warns when it exports a QAT model that
    was not aligned (:func:`warn_if_not_aligned`).

    Args:
        model: a tf_keras model from :func:`keras_dcp.qat.quantize_model`.

    Returns:
        ``{layer name: largest change}``: the BatchNormalization (``beta``) or
        conv/dense (``bias``) layers that were moved and by how much.

    Raises:
        ValueError: if ``model`` is not a tfmot QAT model, or if no biased int8
            op of the converted model could be matched to a layer.
    """
    import tensorflow as tf
    import tf_keras

    if not isinstance(model, tf_keras.Model) or not is_qat_model(model):
        raise ValueError("align_biases() needs a tf_keras QAT model from keras_dcp.qat.quantize_model().")
    part = _convertible_part(model)
    converter = tf.lite.TFLiteConverter.from_keras_model(part)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    changes = {}
    for name, variable, value, change in bias_moves(part, converter.convert()):
        variable.assign(np.asarray(value, "float32"))
        changes[name] = change
    return changes


#: A bias further than this from its int8 value means align_biases() was not run
#: (after it the two agree to float32 rounding; tests/test_qat.py checks < 1e-6).
ALIGNED_ATOL = 1e-6


def warn_if_not_aligned(backbone: Any, content: bytes) -> float:
    """Warn when a QAT backbone's biases are not those of its int8 export; return the largest gap."""
    import warnings

    worst = max((change for *_, change in bias_moves(backbone, content)), default=0.0)
    if worst > ALIGNED_ATOL:
        warnings.warn(
            f"this QAT model's biases differ from its int8 export's by up to {worst:.2g}, so the int8 "
            "model strays further from the Keras one than it needs to; call "
            "keras_dcp.qat.align_biases(model) after training (keras_dcp.qat.train_qat does) and "
            "before exporting or using the Keras model as the reference.",
            UserWarning,
            stacklevel=5,
        )
    return worst


__all__ = ["ALIGNED_ATOL", "align_biases", "bias_moves", "folded_bias", "tflite_biases", "warn_if_not_aligned"]
