"""DCP for the Edge TPU: a layer over :func:`keras_dcp.ops.deception_edgetpu`.

The Edge TPU runs a fully int8 graph of a few op types only (no LOG, EXP,
DIV, CAST, comparisons or SELECT). :class:`EdgeTPUDeception` computes DCP
from the *logits* with SOFTMAX, LOGISTIC, ADD, SUB, MUL, MAXIMUM, MINIMUM,
REDUCE_MAX, SUM and FULLY_CONNECTED only, so a protected model exported with
``export_tflite(..., quantize="int8", tail="int8")`` maps to the TPU whole.
"""

from __future__ import annotations

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.base import OutputDefense, check_positive
from keras_dcp.defenses.deception import DEFAULT_BETA, DEFAULT_GAMMA, DeceptionLayer


@keras.saving.register_keras_serializable(package="keras_dcp")
class EdgeTPUDeception(OutputDefense):
    """DCP from logits with Edge TPU ops only; outputs defended probabilities.

    .. math::

        y = \\mathrm{softmax}(z), \\quad
        y' \\approx N(\\max(y - \\alpha(y) r(y), 0))

    the same defense as :class:`keras_dcp.DeceptionLayer` applied to
    ``softmax(z)``, up to tangent-line approximations of ``log``,
    ``-log(1 - y)`` and ``1/S`` (mean l1 error about 1e-3 in float32; see
    :func:`keras_dcp.ops.deception_edgetpu` and docs/tflite.md).

    Example:

    >>> import numpy as np, keras
    >>> layer = EdgeTPUDeception(beta=0.7, gamma=0.2)
    >>> out = keras.ops.convert_to_numpy(layer(np.array([[2.0, 1.0, 0.5]], "float32")))
    >>> bool(abs(out.sum() - 1) < 1e-2)
    True

    Args:
        beta, gamma, tau, nu: as in :class:`keras_dcp.DeceptionLayer`
            (``l1_budget`` and ``preserve_top1`` are not available here).

    Call arguments:
        inputs: logits, shape ``(batch, K)``.
        training: when True the layer is a plain softmax.

    Returns:
        Defended probabilities, shape ``(batch, K)``, float32.
    """

    _config_keys = ("beta", "gamma", "tau", "nu")

    def __init__(self, beta=DEFAULT_BETA, gamma=DEFAULT_GAMMA, tau=None, nu=1000.0, **kwargs):
        super().__init__(**kwargs)
        # Reuse DeceptionLayer's checks so both layers accept the same values.
        reference = DeceptionLayer(beta=beta, gamma=gamma, tau=tau, nu=nu)
        self.beta, self.gamma, self.tau, self.nu = reference.beta, reference.gamma, reference.tau, reference.nu

    def call(self, inputs, training=None):
        if training:
            return keras.ops.softmax(keras.ops.cast(inputs, "float32"), axis=-1)
        return self.defend(inputs)

    def defend(self, logits):
        return defense_ops.deception_edgetpu(
            logits, beta=self.beta, gamma=self.gamma, tau=self.tau, nu=self.nu
        )


def logits_tensor(model):
    """The symbolic logits of a functional classifier: ``(inputs, logits)``.

    Works for models ending in a ``Softmax`` layer (its input is the logits)
    or in a ``Dense(..., activation="softmax")`` (rebuilt with a linear
    activation and the same weights). Raises ValueError otherwise.
    """
    if not getattr(model, "inputs", None) or not getattr(model, "layers", None):
        raise ValueError(f"Model {model.name!r} is not a built functional model; cannot find its logits.")
    last = model.layers[-1]
    if isinstance(last, keras.layers.Softmax):
        return model.inputs, last.input
    if isinstance(last, keras.layers.Dense):
        activation = keras.activations.serialize(last.activation)
        if activation == "softmax" or (isinstance(activation, dict) and "softmax" in str(activation)):
            config = dict(last.get_config(), activation="linear", name=f"{last.name}_logits")
            head = keras.layers.Dense.from_config(config)
            logits = head(last.input)
            head.set_weights(last.get_weights())
            return model.inputs, logits
        if activation == "linear":
            return model.inputs, last.output
    raise ValueError(
        f"Cannot find the logits of model {model.name!r} (last layer {last.name!r} of type "
        f"{type(last).__name__}); end it in a Softmax layer or a Dense layer with softmax."
    )


def protect_for_edgetpu(model, defense=None, name=None):
    """``EdgeTPUDeception(logits(model))``: a protected model whose int8 graph fits the Edge TPU.

    Args:
        model: a functional Keras 3 classifier ending in a softmax (see
            :func:`logits_tensor`).
        defense: an :class:`EdgeTPUDeception`, or a
            :class:`keras_dcp.DeceptionLayer` whose ``beta``, ``gamma``,
            ``tau`` and ``nu`` are copied (default ``EdgeTPUDeception()``).
        name: name of the new model.

    Returns:
        A new functional model (the user's model is not modified; its layers
        are shared).
    """
    if defense is None:
        defense = EdgeTPUDeception()
    elif isinstance(defense, DeceptionLayer):
        if defense.l1_budget is not None or defense.preserve_top1:
            raise ValueError("The Edge TPU formulation supports neither l1_budget nor preserve_top1.")
        defense = EdgeTPUDeception(beta=defense.beta, gamma=defense.gamma, tau=defense.tau, nu=defense.nu)
    elif not isinstance(defense, EdgeTPUDeception):
        raise ValueError(f"`defense` must be an EdgeTPUDeception or DeceptionLayer; got {type(defense).__name__}.")
    check_positive("beta", defense.beta)
    inputs, logits = logits_tensor(model)
    outputs = defense(logits)
    return keras.Model(inputs, outputs, name=name or f"{model.name}_protected_edgetpu")
