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


def to_tf_keras(model: Any) -> Any:
    """Rebuild a Keras 3 functional model in tf_keras, with the same weights.

    Handles the plain layers of the zoo (Conv2D, BatchNormalization, Dense,
    ReLU, Add, pooling, Rescaling, Softmax...) and the keras_dcp defenses
    (replaced by their twins). Shapes and names are kept.

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
        new_layer = _convert_layer(layer)
        outputs = new_layer(args[0] if len(args) == 1 else args)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        for old, new in zip(node.outputs, outputs):
            tensors[id(old)] = new
        if layer.weights:
            new_layer.set_weights(layer.get_weights())
    new_outputs = [tensors[id(t)] for t in model.outputs]
    return tf_keras.Model(new_inputs, new_outputs[0] if len(new_outputs) == 1 else new_outputs, name=model.name)


__all__ = ["to_tf_keras"]
