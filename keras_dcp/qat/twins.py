"""tf_keras twins of the defense layers: the same math, for quantization-aware training.

tfmot 0.8 only accepts tf_keras (Keras 2) models, while keras-dcp is Keras 3.
A twin has the same constructor arguments and checks as its Keras 3 layer,
and its ``call`` runs the very same :mod:`keras_dcp.ops` function
(``keras.ops`` works on the plain TF tensors a tf_keras layer receives under
the TensorFlow backend). Twins are registered with
``tf_keras.utils.register_keras_serializable`` so QAT models save and load.
"""

from __future__ import annotations

from typing import Any

_TWINS: dict[str, type] = {}


def tf_keras_module():
    """The ``tf_keras`` module, or an ImportError that names the ``qat`` extra."""
    try:
        import tf_keras
    except ImportError as error:  # pragma: no cover - depends on the extra
        raise ImportError("keras_dcp.qat needs the `qat` extra: pip install 'keras-dcp[qat]'.") from error
    return tf_keras


def twin_class(keras3_class: type) -> type:
    """The tf_keras twin of a Keras 3 defense class (created and registered once).

    The twin validates its arguments by building the Keras 3 layer (same
    ``ValueError`` messages), stores the same config (its ``params``), is the
    identity when ``training=True`` and otherwise calls the Keras 3 layer's
    ``defend``, i.e. the same :mod:`keras_dcp.ops` function.
    """
    name = keras3_class.__name__
    if name in _TWINS:
        return _TWINS[name]
    tf_keras = tf_keras_module()
    defense_params = keras3_class.params

    class Twin(tf_keras.layers.Layer):
        params = defense_params

        def __init__(self, **kwargs):
            layer_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in self.params}
            kwargs.setdefault("autocast", False)
            super().__init__(**kwargs)
            self._defense = type(self).keras3_class(**layer_kwargs)
            for key in self.params:
                setattr(self, key, getattr(self._defense, key))

        def call(self, inputs, training=None):
            if training:
                return self._defense.call(inputs, training=True)
            return self._defense.defend(inputs)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            config = super().get_config()
            config.update({key: getattr(self, key) for key in self.params})
            return config

    Twin.keras3_class = keras3_class
    Twin.__name__ = Twin.__qualname__ = name
    Twin.__doc__ = f"tf_keras twin of :class:`{keras3_class.__module__}.{name}` (same math, for QAT).\n\n" + (
        keras3_class.__doc__ or ""
    )
    Twin = tf_keras.utils.register_keras_serializable(package="keras_dcp", name=name)(Twin)
    _TWINS[name] = Twin
    return Twin


def twin_of(layer: Any):
    """A tf_keras twin layer with the config of the Keras 3 defense ``layer``."""
    cls = twin_class(type(layer))
    return cls(**layer.param_values(), name=layer.name)


def is_twin(layer: Any) -> bool:
    """True for a twin layer (or class) made by :func:`twin_class`."""
    cls = layer if isinstance(layer, type) else type(layer)
    return _TWINS.get(cls.__name__) is cls


def twin_classes() -> dict[str, type]:
    """``{class name: twin class}`` of every twin made so far (a ``custom_objects`` scope)."""
    return dict(_TWINS)


__all__ = ["is_twin", "tf_keras_module", "twin_class", "twin_classes", "twin_of"]
