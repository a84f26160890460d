"""Quantization-aware training (QAT) with tensorflow-model-optimization.

tfmot 0.8 only accepts tf_keras (Keras 2) models, while keras-dcp is Keras 3.
This module provides:

* the tf_keras twins of the defense layers (:func:`twin_class`,
  :func:`twin_of`): same constructor
  arguments and checks, and ``call`` runs the very same
  :mod:`keras_dcp.ops` function as the Keras 3 layer (``keras.ops`` works on
  the plain TF tensors a tf_keras layer receives under the TensorFlow
  backend), registered with ``tf_keras.utils.register_keras_serializable``;
* :func:`to_tf_keras`: a Keras 3 functional model (the zoo's victims) rebuilt
  in tf_keras with the same weights;
* :func:`quantize_model`: tfmot's QAT wrapping (layers tfmot does not know,
  e.g. ``Rescaling``, get an output fake quant; softmax and defense stay
  float, as they are exported);
* :func:`train_qat` and :func:`protect_qat`: fine-tune, then append the twin
  of a defense after the probabilities, ready for
  ``keras_dcp.tflite.export_tflite(..., quantize="int8")``;
* :func:`align_biases` (:mod:`keras_dcp.qat_alignment`, run by
  :func:`train_qat`): the Keras model's folded biases set to the int32 biases
  of its int8 export, so the two add the same biases;
* :func:`most_faithful` and :func:`mixup_images` (:mod:`keras_dcp.qat_selection`):
  keep, among several QAT runs, the one whose int8 export is closest to its
  Keras model.

Install with the ``qat`` extra (tf_keras, tensorflow-model-optimization).
"""

from __future__ import annotations

import inspect

import numpy as np

_TWIN_CACHE = {}


def _tf_keras():
    try:
        import tf_keras
    except ImportError as error:  # pragma: no cover - depends on the extra
        raise ImportError("keras_dcp.qat needs the `qat` extra: pip install 'keras-dcp[qat]'.") from error
    return tf_keras


def _defense_classes():
    from keras_dcp.defenses.spec import DEFENSES
    from keras_dcp.tflite.edgetpu import EdgeTPUDeception

    classes = {cls.__name__: cls for cls in DEFENSES.values()}
    classes[EdgeTPUDeception.__name__] = EdgeTPUDeception
    return classes


def twin_class(keras3_class):
    """The tf_keras twin of a Keras 3 defense class (created and registered once).

    The twin validates its arguments by building the Keras 3 layer (same
    ``ValueError`` messages), stores the same config, is the identity when
    ``training=True`` and otherwise calls the Keras 3 layer's ``defend``,
    i.e. the same :mod:`keras_dcp.ops` function.
    """
    name = keras3_class.__name__
    if name in _TWIN_CACHE:
        return _TWIN_CACHE[name]
    tf_keras = _tf_keras()

    class Twin(tf_keras.layers.Layer):
        _keras3_class = keras3_class
        _config_keys = keras3_class._config_keys

        def __init__(self, **kwargs):
            layer_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in self._config_keys}
            kwargs.setdefault("autocast", False)
            super().__init__(**kwargs)
            self._defense = keras3_class(**layer_kwargs)
            for key in self._config_keys:
                setattr(self, key, getattr(self._defense, key))

        def call(self, inputs, training=None):
            if training:
                return self._defense.call(inputs, training=True)
            return self._defense.defend(inputs)

        def compute_output_shape(self, input_shape):
            return input_shape

        def get_config(self):
            config = super().get_config()
            config.update({key: getattr(self, key) for key in self._config_keys})
            return config

    Twin.__name__ = Twin.__qualname__ = name
    Twin.__doc__ = f"tf_keras twin of :class:`{keras3_class.__module__}.{name}` (same math, for QAT).\n\n" + (
        keras3_class.__doc__ or ""
    )
    Twin = tf_keras.utils.register_keras_serializable(package="keras_dcp", name=name)(Twin)
    _TWIN_CACHE[name] = Twin
    return Twin


def twin_of(layer):
    """A tf_keras twin layer with the config of the Keras 3 defense ``layer``."""
    cls = twin_class(type(layer))
    return cls(**{key: getattr(layer, key) for key in type(layer)._config_keys}, name=layer.name)


#: Keras-3-only keys of a layer config that tf_keras does not know.
_BASE_KEYS = {"name", "trainable", "dtype"}


def _convert_layer(layer):
    """A fresh tf_keras layer with ``layer``'s configuration (no weights yet)."""
    tf_keras = _tf_keras()
    defenses = _defense_classes()
    if type(layer).__name__ in defenses and type(layer) is defenses[type(layer).__name__]:
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


def to_tf_keras(model):
    """Rebuild a Keras 3 functional model in tf_keras, with the same weights.

    Handles the plain layers of the zoo (Conv2D, BatchNormalization, Dense,
    ReLU, Add, pooling, Rescaling, Softmax...) and the keras_dcp defenses
    (replaced by their twins). Shapes and names are kept.

    Raises:
        ValueError: for a layer with no tf_keras counterpart, or a model that
            is not functional.
    """
    import keras

    tf_keras = _tf_keras()
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
    tf_keras = _tf_keras()
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


def quantize_model(model):
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

    tf_keras = _tf_keras()
    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    quantize = tfmot.quantization.keras

    foldable = _foldable_batch_norms(model)

    def annotate(layer):
        if isinstance(layer, tf_keras.layers.InputLayer):
            return layer
        if isinstance(layer, tf_keras.layers.Softmax) or hasattr(layer, "_keras3_class"):
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
        **_TWIN_CACHE,
    }
    with quantize.quantize_scope(scope):
        return quantize.quantize_apply(annotated)


def train_qat(model, x, y, epochs=1, batch_size=128, learning_rate=1e-3, seed=0, verbose=1, align=True):
    """Fine-tune a QAT model (from :func:`quantize_model`) on ``(x, y)`` in place.

    Adam on the sparse cross-entropy of the model's probabilities (on our
    ResNet-20, ``1e-3`` gave a closer int8 model than ``1e-4``: see
    docs/results/tflite.md); ``x`` as
    the model takes it (float images in ``[0, 1]`` for the zoo), ``y`` int
    labels. With ``align=True`` (default) the trained model's biases are then
    moved onto the int32 grid of its int8 export
    (:func:`keras_dcp.qat_alignment.align_biases`), so the Keras model and
    the int8 model add the same biases. Returns the Keras
    ``History.history`` dict (with ``"aligned_layers"``: the layers moved).
    """
    import tensorflow as tf

    tf_keras = _tf_keras()
    tf_keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )
    data = tf.data.Dataset.from_tensor_slices((np.asarray(x, "float32"), np.asarray(y, "int64")))
    data = data.shuffle(len(x), seed=seed).batch(batch_size)
    history = model.fit(data, epochs=epochs, verbose=verbose).history
    if align:
        from keras_dcp.qat_alignment import align_biases

        history["aligned_layers"] = sorted(align_biases(model))
    return history


def protect_qat(model, defense=None):
    """Append the tf_keras twin of ``defense`` (default DCP) to a (QAT) tf_keras model.

    Args:
        model: a tf_keras model ending in probabilities (e.g. the output of
            :func:`quantize_model` on a zoo victim).
        defense: a Keras 3 defense layer (e.g. ``keras_dcp.DeceptionLayer()``),
            a twin, or None for ``DeceptionLayer()``.

    Returns:
        A tf_keras functional model: ``defense(model(x))``.
    """
    from keras_dcp.defenses.deception import DeceptionLayer

    tf_keras = _tf_keras()
    defense = DeceptionLayer() if defense is None else defense
    if not isinstance(defense, tf_keras.layers.Layer):
        defense = twin_of(defense)
    return tf_keras.Model(model.inputs, defense(model.outputs[0]), name=f"{model.name}_protected")


from keras_dcp.qat_alignment import align_biases  # noqa: E402  (re-exported)
from keras_dcp.qat_selection import mixup_images, most_faithful  # noqa: E402  (re-exported)

__all__ = [
    "align_biases", "mixup_images", "most_faithful", "protect_qat", "quantize_model", "to_tf_keras", "train_qat",
    "twin_class", "twin_of",
]
