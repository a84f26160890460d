"""The shell every output defense shares: a Keras layer over one pure function."""

from __future__ import annotations

from typing import Any, ClassVar

import keras

from keras_dcp.ops.rows import as_probabilities, is_empty


class OutputDefense(keras.layers.Layer):
    """Base class of the output-perturbation defenses.

    A subclass sets its constructor arguments as attributes, lists their names
    in the public class attribute :attr:`params` (what ART calls ``params``:
    the defense's configuration, read by the registry, the CLI, the runner,
    the tables and the tf_keras twins) and implements ``defend(y)`` with a
    function of :mod:`keras_dcp.ops`. This class supplies the Keras
    conventions:

    * input checked at build time: a 2D ``(batch, K)`` tensor with known ``K``;
    * no autocasting: the math runs in float32 and the output has the input
      dtype, so the layer is mixed-precision safe;
    * identity when ``training=True``, so fine-tuning a protected model is not
      poisoned by its own defense (the defense protects what is served);
    * a batch of zero rows is returned as it came, shape ``(0, K)``;
    * ``get_config`` holds exactly the constructor arguments;
    * ``compute_output_shape`` is the input shape.

    Class attributes:
        params: names of the constructor arguments that make up the config.
        input_kind: ``"probabilities"`` (after the softmax, the default) or
            ``"logits"`` (before it; :func:`keras_dcp.protect` wires the layer
            on the model's logits).
        needs_inputs: False (the default) for a defense of the probabilities
            alone; True for one that also looks at the query (it runs a second
            model on it, e.g. :class:`keras_dcp.MAD`). Such a layer is called
            on ``[probabilities, inputs]`` and :func:`keras_dcp.protect` wires
            it so (single-input models).

    Hooks :func:`keras_dcp.protect` calls: :meth:`bind` (before wiring), and
    the property :attr:`tflite_exportable` that the exporters read.
    """

    params: ClassVar[tuple[str, ...]] = ()
    input_kind: ClassVar[str] = "probabilities"
    needs_inputs: ClassVar[bool] = False

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.supports_masking = True

    def bind(self, model: keras.Model) -> None:
        """Called by :func:`keras_dcp.protect` with the user's model before wiring; nothing by default.

        A defense whose second model was not given builds its documented
        default from the protected model here.
        """

    @property
    def tflite_exportable(self) -> bool:
        """Whether the layer converts to TFLite builtins (:func:`keras_dcp.export_tflite` refuses it otherwise)."""
        return True

    def build(self, input_shape):
        if self.needs_inputs:
            if not (isinstance(input_shape, (list, tuple)) and len(input_shape) == 2
                    and all(isinstance(s, (list, tuple)) for s in input_shape)):
                raise ValueError(
                    f"{type(self).__name__} looks at the query too: call it on [probabilities, inputs] "
                    f"(keras_dcp.protect does); got an input of shape {input_shape}."
                )
            self._check_probability_shape(input_shape[0])
            self.build_inputs(tuple(input_shape[0]), tuple(input_shape[1]))
        else:
            self._check_probability_shape(input_shape)
        super().build(input_shape)

    def build_inputs(self, probability_shape, input_shape) -> None:
        """For ``needs_inputs`` defenses: check the query's shape against the second model."""

    def _check_probability_shape(self, input_shape):
        if len(input_shape) != 2:
            raise ValueError(
                f"{type(self).__name__} expects {self.input_kind} of shape "
                f"(batch, num_classes); got an input of shape {tuple(input_shape)}. "
                "Place it after the model's softmax (flatten first if needed)."
            )
        if input_shape[-1] is None or input_shape[-1] < 2:
            raise ValueError(
                f"{type(self).__name__} needs a known number of classes >= 2; "
                f"got input shape {tuple(input_shape)}."
            )

    def call(self, inputs, training=None):
        if self.needs_inputs:
            y, x = inputs
            y = as_probabilities(y)
            if training or is_empty(y):
                return y
            return self.defend(y, x)
        inputs = as_probabilities(inputs)
        if training or is_empty(inputs):
            return inputs
        return self.defend(inputs)

    def defend(self, y, *inputs):
        """The defended probabilities of ``y`` (and, for ``needs_inputs`` defenses, the query ``inputs[0]``)."""
        raise NotImplementedError

    def compute_output_shape(self, input_shape):
        return input_shape[0] if self.needs_inputs else input_shape

    def compute_output_spec(self, inputs, training=None):
        if self.needs_inputs:  # the probabilities' spec; the second model is not traced symbolically
            y = inputs[0]
            return keras.KerasTensor(y.shape, dtype=y.dtype)
        return super().compute_output_spec(inputs, training=training)

    def get_config(self):
        config = super().get_config()
        config.update({key: getattr(self, key) for key in self.params})
        return config

    def param_values(self) -> dict[str, Any]:
        """``{name: value}`` of :attr:`params`: what a spec string or a results table shows."""
        return {key: getattr(self, key) for key in self.params}
