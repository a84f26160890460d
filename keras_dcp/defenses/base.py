"""The shell every output defense shares: a Keras layer over one pure function."""

from __future__ import annotations

import keras


class OutputDefense(keras.layers.Layer):
    """Base class of the output-perturbation defenses.

    A subclass sets its constructor arguments as attributes, lists their names
    in ``_config_keys`` and implements ``defend(y)`` with a function of
    :mod:`keras_dcp.ops`. This class supplies the Keras conventions:

    * input checked at build time: a 2D ``(batch, K)`` tensor with known ``K``;
    * no autocasting: the math runs in float32 and the output has the input
      dtype, so the layer is mixed-precision safe;
    * identity when ``training=True``, so fine-tuning a protected model is not
      poisoned by its own defense (the defense protects what is served);
    * ``get_config`` holds exactly the constructor arguments;
    * ``compute_output_shape`` is the input shape.
    """

    _config_keys: tuple = ()

    def __init__(self, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.supports_masking = True

    def build(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects probabilities of shape "
                f"(batch, num_classes); got an input of shape {tuple(input_shape)}. "
                "Place it after the model's softmax (flatten first if needed)."
            )
        if input_shape[-1] is None or input_shape[-1] < 2:
            raise ValueError(
                f"{type(self).__name__} needs a known number of classes >= 2; "
                f"got input shape {tuple(input_shape)}."
            )
        super().build(input_shape)

    def call(self, inputs, training=None):
        if training:
            return inputs
        return self.defend(inputs)

    def defend(self, y):
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self._config_keys})
        return config


def check_positive(name, value, allow_none=False):
    """Raise a ValueError naming ``name`` unless ``value`` is a positive number."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"`{name}` must be a positive number; got {value!r}.")
    return float(value)


def check_l1_budget(value):
    """``None`` or a number >= 0, as float; else a ValueError naming ``l1_budget``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"`l1_budget` must be a number >= 0 or None; got {value!r}.")
    return float(value)


def check_bool(name, value):
    """A real bool; else a ValueError naming ``name``."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; got {value!r}.")
    return value
