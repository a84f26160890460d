"""Top-k truncation of the returned probabilities as a Keras layer."""

from __future__ import annotations

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.registry import register_defense
from keras_dcp.validation import check_int


@register_defense("topk")
@keras.saving.register_keras_serializable(package="keras_dcp")
class TopK(OutputDefense):
    """Return only the ``k`` largest probabilities, renormalised.

    .. math::

        y'_j = \\frac{y_j [j \\in \\mathrm{top}_k(y)]}{\\sum_{i \\in \\mathrm{top}_k(y)} y_i}

    A cheap, common API hardening (Tramer et al. 2016; Orekondy et al. 2019):
    it hides the tail that a soft-label thief learns from. Ties at the k-th
    value are all kept. The math is :func:`keras_dcp.ops.top_k`.

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> keras.ops.convert_to_numpy(keras_dcp.TopK(2)(np.array([[0.5, 0.3, 0.2]], "float32"))).round(3)
    array([[0.625, 0.375, 0.   ]], dtype=float32)

    Args:
        k: how many classes to keep, an int >= 1.

    Returns:
        The truncated distribution, shape ``(batch, K)``, dtype of the input.
    """

    params = ("k",)

    def __init__(self, k: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.k = check_int("k", k, minimum=1)

    def build(self, input_shape):
        super().build(input_shape)
        if self.k > input_shape[-1]:
            raise ValueError(f"`k`={self.k} exceeds the number of classes {input_shape[-1]}.")

    def defend(self, y):
        return defense_ops.top_k(y, self.k)
