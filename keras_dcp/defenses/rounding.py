"""Rounding of the returned probabilities as a Keras layer."""

from __future__ import annotations

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.registry import register_defense
from keras_dcp.validation import check_int

#: 10**38 is the largest power of ten below float32's maximum: more decimals overflow.
MAX_DECIMALS = 38


@register_defense("rounding")
@keras.saving.register_keras_serializable(package="keras_dcp")
class Rounding(OutputDefense):
    """Round every probability to ``decimals`` places.

    .. math::

        y'_k = \\mathrm{round}(10^d\\, y_k) / 10^d

    Not renormalised, as an API that rounds would answer: rows sum to 1 within
    ``K 10^{-d} / 2``. The math is :func:`keras_dcp.ops.rounding`.

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> keras.ops.convert_to_numpy(keras_dcp.Rounding(1)(np.array([[0.84, 0.16]], "float32")))
    array([[0.8, 0.2]], dtype=float32)

    Args:
        decimals: number of decimal places, an int in [0, 38] (float32 overflows beyond).

    Returns:
        The rounded probabilities, shape ``(batch, K)``, dtype of the input.
    """

    params = ("decimals",)

    def __init__(self, decimals: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.decimals = check_int("decimals", decimals, minimum=0, maximum=MAX_DECIMALS)

    def defend(self, y):
        return defense_ops.rounding(y, self.decimals)
