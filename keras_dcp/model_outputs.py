"""What a classifier outputs: probabilities or logits, and where its logits are.

Shared by :func:`keras_dcp.protect` (which wires a defense after the softmax or
on the logits) and by the defenses that carry a second model
(:class:`keras_dcp.MAD`, :class:`keras_dcp.AdaptiveMisinformation`).
"""

from __future__ import annotations

from typing import Any

import keras

_PROBABILITY_ACTIVATIONS = {"softmax"}
_LOGIT_ACTIVATIONS = {"linear"}


def activation_name(layer: Any) -> str | None:
    """The name of ``layer``'s output activation (``"softmax"``, ``"linear"``...), or None if unknown."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    try:
        name = keras.activations.serialize(activation)
    except Exception:  # an arbitrary callable: we cannot tell
        return None
    if isinstance(name, dict):
        name = name.get("config", name.get("class_name"))
    return name if isinstance(name, str) else None


def detect_output_kind(model: keras.Model) -> str | None:
    """``"probabilities"``, ``"logits"`` or None (cannot tell) for ``model``'s last layer."""
    layers = getattr(model, "layers", None)
    if not layers:
        return None
    name = activation_name(layers[-1])
    if name in _PROBABILITY_ACTIVATIONS:
        return "probabilities"
    if name in _LOGIT_ACTIVATIONS:
        return "logits"
    return None


def logits_tensor(model: keras.Model):
    """The symbolic logits of a functional classifier that ends in a softmax: ``(inputs, logits)``.

    Works for models ending in a ``Softmax`` layer (its input is the logits)
    or in a ``Dense(..., activation="softmax")`` (rebuilt with a linear
    activation and the same weights), and for models already ending in a
    linear layer. ``inputs`` is the model's input structure. Raises ValueError
    otherwise.
    """
    if not getattr(model, "inputs", None) or not getattr(model, "layers", None):
        raise ValueError(f"Model {model.name!r} is not a built functional model; cannot find its logits.")
    inputs = functional_inputs(model)
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return inputs, last.input
    if isinstance(last, keras.layers.Dense):
        activation = activation_name(last)
        if activation == "softmax":
            config = dict(last.get_config(), activation="linear", name=f"{last.name}_logits")
            head = keras.layers.Dense.from_config(config)
            logits = head(last.input)
            head.set_weights(last.get_weights())
            return inputs, logits
        if activation == "linear":
            return inputs, last.output
    raise ValueError(
        f"Cannot find the logits of model {model.name!r} (last layer {last.name!r} of type "
        f"{type(last).__name__}); end it in a Softmax layer or a Dense layer with softmax."
    )


def functional_inputs(model: Any):
    """The model's symbolic inputs in the structure it was built with (tensor, list or dict), or None."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    try:
        return model.input  # functional models: the structure they were built with
    except (AttributeError, ValueError):  # a Sequential model: its one input tensor
        return inputs[0] if len(inputs) == 1 else list(inputs)


__all__ = ["activation_name", "detect_output_kind", "functional_inputs", "logits_tensor"]
