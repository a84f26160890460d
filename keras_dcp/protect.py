"""``protect(model, defense)``: a new model that serves defended probabilities."""

from __future__ import annotations

import keras

from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.deception import DeceptionLayer
from keras_dcp.model_outputs import detect_output_kind, functional_inputs, logits_tensor

#: Re-exported here, where they were first defined.
__all__ = ["detect_output_kind", "logits_tensor", "protect"]


def _copy_model(model):
    """A clone with the same weights, or the model itself for subclassed models."""
    try:
        clone = keras.models.clone_model(model)
    except Exception:
        # Subclassed models cannot be cloned; wrapping reuses (never edits) them.
        return model
    clone.set_weights(model.get_weights())
    return clone


def protect(
    model: keras.Model,
    defense: OutputDefense | None = None,
    from_logits: bool | None = None,
    name: str | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> keras.Model:
    """Return a new model that applies ``defense`` to ``model``'s probabilities.

    ``protected(x) = defense(softmax(model(x)))`` when the model ends in logits,
    ``defense(model(x))`` when it ends in a softmax; a defense that takes
    logits (``defense.input_kind == "logits"``, e.g. the Edge TPU formulation)
    is wired on the model's logits instead, and one that also looks at the
    query (``defense.needs_inputs``, e.g. :class:`~keras_dcp.MAD`) gets
    ``defense([probabilities, x])``. ``defense.bind(model)`` is called first:
    a defense whose second model was not given builds its default from
    ``model`` there (MAD: the same architecture with fresh weights). The user's model is never
    modified: Sequential and functional models are cloned with their weights;
    subclassed models are wrapped (the protected model then shares their
    variables). The protected model takes its inputs exactly as the original
    does (a tensor stays a tensor, a dict stays a dict, same names), so it is a
    drop-in replacement for ``predict``, ``__call__`` and the exported
    ``serve`` / ``serving_default`` endpoints.

    Args:
        model: a built Keras 3 classifier with one output of shape ``(batch, K)``.
        defense: an :class:`~keras_dcp.defenses.OutputDefense` layer; default
            ``DeceptionLayer()``.
        from_logits: True if the model outputs logits, False if probabilities,
            None to detect it from the last layer (a softmax activation means
            probabilities, a linear one logits).
        name: the new model's name (default ``<model name>_protected``).
        input_shape: the input shape without batch dimension; needed only for
            subclassed models that do not know theirs.

    Returns:
        A functional ``keras.Model`` with the same inputs and the defended output.

    Raises:
        ValueError: if the model's output kind cannot be detected, its input
            shape is unknown, its output is not 2D, or it already ends in a
            defense.
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"protect() needs a keras.Model; got {type(model).__name__}.")
    defense = DeceptionLayer() if defense is None else defense
    if not isinstance(defense, OutputDefense):
        raise ValueError(
            "`defense` must be a keras_dcp defense layer (e.g. keras_dcp.DeceptionLayer()); "
            f"got {type(defense).__name__}."
        )
    if model.layers and isinstance(model.layers[-1], OutputDefense):
        raise ValueError(f"Model {model.name!r} already ends in a defense ({model.layers[-1].name}).")
    if from_logits is None:
        kind = detect_output_kind(model)
        if kind is None:
            last = model.layers[-1].name if getattr(model, "layers", None) else "?"
            raise ValueError(
                f"Cannot tell whether model {model.name!r} outputs probabilities or logits "
                f"(last layer {last!r}). Pass from_logits=True if it outputs logits "
                "(a softmax will be inserted) or from_logits=False if it already outputs "
                "probabilities."
            )
        from_logits = kind == "logits"
    copy = _copy_model(model)
    inputs, outputs = _symbolic_graph(model, copy, input_shape)
    if len(outputs.shape) != 2:
        raise ValueError(
            f"protect() needs an output of shape (batch, num_classes); {model.name!r} "
            f"outputs {tuple(outputs.shape)}."
        )
    if defense.input_kind == "logits":
        if not from_logits:
            if copy is model:
                raise ValueError(
                    f"{type(defense).__name__} takes logits, and the logits of subclassed model "
                    f"{model.name!r} cannot be reached; make it output logits and pass from_logits=True."
                )
            inputs, outputs = logits_tensor(copy)
    elif from_logits:
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    defense.bind(model)
    if defense.needs_inputs:
        queries = keras.tree.flatten(inputs)
        if len(queries) != 1:
            raise ValueError(
                f"{type(defense).__name__} runs a second model on the query and supports single-input "
                f"models; {model.name!r} has {len(queries)} inputs."
            )
        outputs = defense([outputs, queries[0]])
    else:
        outputs = defense(outputs)
    return keras.Model(inputs, outputs, name=name or f"{model.name}_protected")


def _symbolic_graph(model, copy, input_shape):
    """``(inputs, output)`` of the copy as one flat functional graph, inputs structured as the original's."""
    graph_inputs = functional_inputs(copy) if copy is not model else None
    if isinstance(copy, keras.Sequential) and graph_inputs is not None:
        # Rebuild the Sequential model as a flat graph of fresh layers (each
        # called once, so `layer.input`/`layer.output` stay in this graph) on
        # an input named like the original's, so the exported signature keeps
        # its input name.
        original = model.inputs[0]
        inputs = keras.Input(batch_shape=original.shape, dtype=original.dtype, name=original.name)
        outputs = inputs
        for layer in model.layers:
            fresh = type(layer).from_config(layer.get_config())
            outputs = fresh(outputs)
            fresh.set_weights(layer.get_weights())
        return inputs, outputs
    if graph_inputs is not None:
        outputs = copy.outputs
        if len(outputs) != 1:
            raise ValueError(f"protect() needs a single-output model; {model.name!r} has {len(outputs)}.")
        return graph_inputs, outputs[0]
    shape = tuple(input_shape) if input_shape is not None else _known_input_shape(model)
    if shape is None:
        raise ValueError(
            f"Cannot tell the input shape of model {model.name!r}: pass "
            "input_shape=(H, W, C) (without the batch dimension)."
        )
    inputs = keras.Input(shape=shape, name="image")
    return inputs, copy(inputs)


def _known_input_shape(model):
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        return None
    return tuple(shape[1:]) if shape is not None else None
