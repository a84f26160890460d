"""Reverse sigmoid (Lee et al. 2019) as a Keras layer."""

from __future__ import annotations

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.deception import check_l1_budget, check_noise_params
from keras_dcp.defenses.registry import register_defense
from keras_dcp.validation import check_bool


@register_defense("rs")
@keras.saving.register_keras_serializable(package="keras_dcp")
class ReverseSigmoid(OutputDefense):
    """Reverse sigmoid: the same reverse-sigmoid noise on every row.

    .. math::

        r(y) = \\beta(\\sigma(\\gamma\\,\\mathrm{logit}(y)) - \\tfrac12), \\qquad
        y' = N(\\max(y - r(y), 0))

    (Lee et al., "Defending against NN model stealing attacks using deceptive
    perturbations", 2019). Unlike :class:`DeceptionLayer` it perturbs confident
    rows too. The math is :func:`keras_dcp.ops.reverse_sigmoid`.

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> out = keras_dcp.ReverseSigmoid(beta=1.0, gamma=0.2)(np.array([[0.9, 0.1]], "float32"))
    >>> round(float(keras.ops.sum(out)), 5)
    1.0

    Args:
        beta: noise amplitude, in (0, 1e6].
        gamma: noise sharpness, in (0, 1e6].
        l1_budget: optional cap ``eps >= 0`` on the l1 move.
        preserve_top1: keep every row's argmax.

    Call arguments:
        inputs: probabilities, shape ``(batch, K)``.
        training: when True the layer is the identity.

    Returns:
        The defended probabilities, shape ``(batch, K)``, dtype of the input.
    """

    params = ("beta", "gamma", "l1_budget", "preserve_top1")

    def __init__(
        self,
        beta: float = 1.0,
        gamma: float = 0.2,
        l1_budget: float | None = None,
        preserve_top1: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.beta, self.gamma, _, _ = check_noise_params(beta, gamma)
        self.l1_budget = check_l1_budget(l1_budget)
        self.preserve_top1 = check_bool("preserve_top1", preserve_top1)

    def defend(self, y):
        return defense_ops.reverse_sigmoid(
            y,
            beta=self.beta,
            gamma=self.gamma,
            l1_budget=self.l1_budget,
            preserve_top1=self.preserve_top1,
        )
