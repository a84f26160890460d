"""A Keras 3 functional model rebuilt in tf_keras with the same weights (tfmot needs tf_keras)."""

from __future__ import annotations

import inspect
from typing import Any

from keras_dcp.defenses.registry import DEFENSES
from keras_dcp.qat.twins import tf_keras_module, twin_of

#: Keras-3-only keys of a layer config that tf_keras does not know.
_BASE_KEYS = {"name", "trainable", "dtype"}


def _convert_layer(layer):
    """A fresh tf_keras layer with ``layer``'s configuration (no weights yet)."""
    tf_keras = tf_keras_module()
    if type(layer) in DEFENSES.values():
        return twin_of(layer)
    cls = getattr(tf_keras.layers, type(layer).__name__, None)
    if cls is None:
        raise ValueError(
            f"to_tf_keras() cannot convert layer {layer.name!r} of type {type(layer).__name__}: "
            "no tf_keras layer of that name."
        )
    config = layer.get_config()
    dtype = config.get("dtype")
    if isinstance(dtype, dict):  # Keras 3 DTypePolicy -> its name
        config["dtype"] = dtype.get("config", {}).get("name", "float32")
    accepted = set(inspect.signature(cls.__init__).parameters) | _BASE_KEYS
    # Initializers, regularizers and constraints are dropped: the weights are
    # copied, and their Keras 3 serialized form does not load in tf_keras.
    config = {
        k: v for k, v in config.items()
        if k in accepted and not k.endswith(("_initializer", "_regularizer", "_constraint"))
    }
    return cls.from_config(config)


def _rescaling_as_depthwise(layer, channels):
    """``Rescaling(s, o)`` on images as a 1x1 ``DepthwiseConv2D`` with kernel ``s`` and bias ``o``.

    The same values in float (``s x + o``, one multiply-add), but an op tfmot
    quantizes: the exported QAT model then starts with an int8
    DEPTHWISE_CONV_2D instead of a float DEQUANTIZE -> MUL -> ADD -> QUANTIZE
    block, so it is int8 end to end (Edge TPU). The rescaling cannot be folded
    into the int8 input's scale and zero point instead: for the zoo's
    ``u = 2 x - 1`` the zero point would have to be ``z + 1 / s_u``, not an
    integer for any ``s_u`` that keeps ``x`` in ``[0, 1]`` within int8.
    Returns ``(tf_keras layer, weights)``.
    """
    import numpy as np

    tf_keras = tf_keras_module()
    scale = np.broadcast_to(np.asarray(layer.scale, "float32"), (channels,))
    offset = np.broadcast_to(np.asarray(layer.offset, "float32"), (channels,))
    new = tf_keras.layers.DepthwiseConv2D(1, use_bias=True, name=layer.name)
    return new, [scale.reshape(1, 1, channels, 1).copy(), offset.copy()]


def to_tf_keras(model: Any) -> Any:
    """Rebuild a Keras 3 functional model in tf_keras, with the same weights.

    Handles the plain layers of the zoo (Conv2D, BatchNormalization, Dense,
    ReLU, Add, pooling, Rescaling, Softmax...) and the keras_dcp defenses
    (replaced by their twins). Shapes and names are kept. A ``Rescaling`` of
    images becomes a 1x1 ``DepthwiseConv2D`` computing the same values, which
    quantizes to int8 (see :func:`_rescaling_as_depthwise`).

    Raises:
        ValueError: for a layer with no tf_keras counterpart, or a model that
            is not functional.
    """
    import keras

    tf_keras = tf_keras_module()
    if not getattr(model, "inputs", None):
        raise ValueError("to_tf_keras() needs a functional Keras 3 model (with model.inputs).")
    tensors = {}
    new_inputs = []
    for tensor in model.inputs:
        new = tf_keras.Input(shape=tuple(tensor.shape[1:]), dtype=tensor.dtype, name=tensor.name)
        tensors[id(tensor)] = new
        new_inputs.append(new)
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        nodes = [n for n in layer._inbound_nodes if all(id(t) in tensors for t in n.input_tensors)]
        if len(nodes) != 1:
            raise ValueError(f"to_tf_keras() supports layers called once; {layer.name!r} is called {len(nodes)} times.")
        node = nodes[0]
        args = [tensors[id(t)] for t in node.input_tensors]
        weights = layer.get_weights()
        if isinstance(layer, keras.layers.Rescaling) and len(node.input_tensors[0].shape) == 4:
            new_layer, weights = _rescaling_as_depthwise(layer, int(node.input_tensors[0].shape[-1]))
        else:
            new_layer = _convert_layer(layer)
        outputs = new_layer(args[0] if len(args) == 1 else args)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for old, new in zip(node.outputs, outputs):
            tensors[id(old)] = new
        if weights:
            new_layer.set_weights(weights)
    new_outputs = [tensors[id(t)] for t in model.outputs]
    return tf_keras.Model(new_inputs, new_outputs[0] if len(new_outputs) == 1 else new_outputs, name=model.name)


__all__ = ["to_tf_keras"]
