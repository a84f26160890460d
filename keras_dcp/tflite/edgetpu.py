"""Protect a model for the Edge TPU: :class:`EdgeTPUDeception` wired on the model's logits.

The layer itself is a defense like the others (:mod:`keras_dcp.defenses.edgetpu`,
registered as ``"dcp-edgetpu"``) and :func:`keras_dcp.protect` wires it on a
classifier's logits; :func:`protect_for_edgetpu` also accepts a
:class:`~keras_dcp.DeceptionLayer` and copies its parameters. Exported with
``export_tflite(..., quantize="int8", tail="int8")`` the result is an
all-int8 graph that maps to the Edge TPU whole.
"""

from __future__ import annotations

import keras

from keras_dcp.defenses.deception import DeceptionLayer
from keras_dcp.defenses.edgetpu import EdgeTPUDeception
from keras_dcp.model_outputs import logits_tensor
from keras_dcp.protect import protect


def protect_for_edgetpu(
    model: keras.Model,
    defense: EdgeTPUDeception | DeceptionLayer | None = None,
    name: str | None = None,
) -> keras.Model:
    """``EdgeTPUDeception(logits(model))``: a protected model whose int8 graph fits the Edge TPU.

    Args:
        model: a functional Keras 3 classifier ending in a softmax (see
            :func:`keras_dcp.protect.logits_tensor`).
        defense: an :class:`EdgeTPUDeception`, or a
            :class:`keras_dcp.DeceptionLayer` whose ``beta``, ``gamma``,
            ``tau`` and ``nu`` are copied (default ``EdgeTPUDeception()``).
        name: name of the new model.

    Returns:
        A new functional model (the user's model is not modified).
    """
    if defense is None:
        defense = EdgeTPUDeception()
    elif isinstance(defense, DeceptionLayer):
        if defense.l1_budget is not None or defense.preserve_top1:
            raise ValueError("The Edge TPU formulation supports neither l1_budget nor preserve_top1.")
        defense = EdgeTPUDeception(beta=defense.beta, gamma=defense.gamma, tau=defense.tau, nu=defense.nu)
    elif not isinstance(defense, EdgeTPUDeception):
        raise ValueError(f"`defense` must be an EdgeTPUDeception or DeceptionLayer; got {type(defense).__name__}.")
    return protect(model, defense, from_logits=False, name=name or f"{model.name}_protected_edgetpu")


__all__ = ["EdgeTPUDeception", "logits_tensor", "protect_for_edgetpu"]
