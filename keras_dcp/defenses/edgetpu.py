"""DCP for the Edge TPU as a defense layer over :func:`keras_dcp.ops.deception_edgetpu`.

The Edge TPU runs a fully int8 graph of a few op types only (no LOG, EXP,
DIV, CAST, comparisons or SELECT). :class:`EdgeTPUDeception` computes DCP
from the *logits* with SOFTMAX, LOGISTIC, ADD, SUB, MUL, MAXIMUM, MINIMUM,
REDUCE_MAX, SUM and FULLY_CONNECTED only, so a protected model exported with
``export_tflite(..., quantize="int8", tail="int8")`` maps to the TPU whole.
It takes logits (``input_kind = "logits"``): :func:`keras_dcp.protect` and
:func:`keras_dcp.tflite.protect_for_edgetpu` wire it before the softmax.
"""

from __future__ import annotations

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.deception import DEFAULT_BETA, DEFAULT_GAMMA, check_noise_params
from keras_dcp.defenses.registry import register_defense


@register_defense("dcp-edgetpu")
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
    >>> from keras_dcp.defenses import EdgeTPUDeception
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

    params = ("beta", "gamma", "tau", "nu")
    input_kind = "logits"

    def __init__(
        self,
        beta: float = DEFAULT_BETA,
        gamma: float = DEFAULT_GAMMA,
        tau: float | None = None,
        nu: float | None = 1000.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # DeceptionLayer's checks, so both layers accept the same values.
        self.beta, self.gamma, self.tau, self.nu = check_noise_params(beta, gamma, tau, nu)

    def call(self, inputs, training=None):
        if training:
            return keras.ops.softmax(keras.ops.cast(inputs, "float32"), axis=-1)
        return super().call(inputs)

    def defend(self, logits):
        return defense_ops.deception_edgetpu(
            logits, beta=self.beta, gamma=self.gamma, tau=self.tau, nu=self.nu
        )
