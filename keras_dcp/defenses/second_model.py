"""The shell of the defenses that run a second model on the query (MAD's surrogate, AM's misinformation model).

Such a layer is called on ``[probabilities, inputs]`` (``needs_inputs``):
:func:`keras_dcp.protect` wires it so, after calling :meth:`bind`, which
builds the documented default second model from the protected model when
none was given. The second model is part of the layer: its architecture is
in the layer's config (``keras.saving.serialize_keras_object``), its weights
are saved with the layer's, and a ``.keras`` file reloads with
``safe_mode=True``. The layer freezes it (``trainable = False``, on the
model object it was given): fine-tuning the protected model, where the
defense is the identity, leaves it alone. Its output is read as probabilities, or as logits (a
softmax is applied) when it ends in a linear layer.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import keras

from keras_dcp.defenses.base import OutputDefense
from keras_dcp.model_io import load_keras_model
from keras_dcp.model_outputs import detect_output_kind


def fresh_copy(model: keras.Model, role: str) -> keras.Model:
    """``model``'s architecture with new random weights (``keras.models.clone_model``); a ValueError if it cannot be cloned."""
    try:
        return keras.models.clone_model(model)
    except Exception as error:  # subclassed models cannot be cloned
        raise ValueError(
            f"Cannot copy the architecture of model {getattr(model, 'name', model)!r} to build the default "
            f"{role} ({type(error).__name__}: {error}); pass the {role} explicitly."
        ) from None


def load_second_model(value: Any, what: str) -> keras.Model | None:
    """A model, None, or a path to a ``.keras`` file (loaded with :func:`keras_dcp.model_io.load_keras_model`)."""
    if isinstance(value, (str, os.PathLike)):
        return load_keras_model(value, what=what)
    return value


class SecondModelDefense(OutputDefense):
    """Base class of the defenses that also run a second model on the query.

    Subclasses name the constructor argument that holds the model in
    :attr:`model_argument` and implement :meth:`default_model` and
    ``defend(y, x)``; :meth:`second_model_probabilities` gives the second
    model's probabilities at ``x``.
    """

    needs_inputs = True
    #: The constructor argument (and attribute, and config key) holding the second model.
    model_argument: ClassVar[str] = "model"
    #: What the second model is called in messages.
    model_role: ClassVar[str] = "second model"

    def __init__(self, model: keras.Model | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if model is not None and not isinstance(model, keras.Model):
            raise ValueError(
                f"`{self.model_argument}` must be a keras.Model, a .keras path (in a spec) or None; "
                f"got {type(model).__name__}."
            )
        self._set_model(model)

    def _set_model(self, model):
        if model is not None:
            # Part of the served defense: fine-tuning the protected model (where the layer is the
            # identity) leaves it alone, and Keras does not look for gradients that cannot exist.
            model.trainable = False
        setattr(self, self.model_argument, model)
        self._from_logits = model is not None and detect_output_kind(model) == "logits"

    @property
    def second_model(self) -> keras.Model | None:
        return getattr(self, self.model_argument)

    def default_model(self, model: keras.Model) -> keras.Model:
        """The second model used when none was given, built from the protected ``model``."""
        raise NotImplementedError

    def bind(self, model: keras.Model) -> None:
        if self.second_model is None:
            self._set_model(self.default_model(model))

    def build_inputs(self, probability_shape, input_shape) -> None:
        second = self.second_model
        if second is None:
            raise ValueError(
                f"{type(self).__name__} has no {self.model_role}: pass `{self.model_argument}=` or wire it "
                "with keras_dcp.protect(model, defense), which builds the default from the protected model."
            )
        outputs = second.output_shape
        if not isinstance(outputs, tuple) or len(outputs) != 2 or outputs[-1] != probability_shape[-1]:
            raise ValueError(
                f"The {self.model_role} must output (batch, {probability_shape[-1]}) like the protected "
                f"model; it outputs {outputs}."
            )
        expected = getattr(second, "input_shape", None)
        if isinstance(expected, tuple) and len(expected) == len(input_shape) and all(
            e is None or i is None or e == i for e, i in zip(expected[1:], input_shape[1:])
        ):
            return
        if isinstance(expected, tuple):
            raise ValueError(
                f"The {self.model_role} takes inputs of shape {expected}; the protected model's are "
                f"{tuple(input_shape)}."
            )

    def second_model_probabilities(self, x):
        """The second model's probabilities at ``x``, float32 ``(batch, K)``."""
        out = keras.ops.cast(self.second_model(x, training=False), "float32")
        return keras.ops.softmax(out, axis=-1) if self._from_logits else out

    def get_config(self):
        config = super().get_config()
        second = self.second_model
        config[self.model_argument] = None if second is None else keras.saving.serialize_keras_object(second)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        second = config.get(cls.model_argument)
        if isinstance(second, dict):
            config[cls.model_argument] = keras.saving.deserialize_keras_object(second)
        return cls(**config)
