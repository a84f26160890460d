"""Label-only answers (one-hot of the argmax) as a Keras layer."""

from __future__ import annotations

import keras

from keras_dcp import ops as defense_ops
from keras_dcp.defenses.base import OutputDefense
from keras_dcp.defenses.registry import register_defense


@register_defense("toplabel")
@keras.saving.register_keras_serializable(package="keras_dcp")
class TopLabel(OutputDefense):
    """Answer only the top-1 label, as a one-hot row.

    .. math::

        y'_k = [k = \\arg\\max_j y_j]

    computed per row (ART's batch ``ClassLabels`` writes every row's winner
    into all rows, see its PR #2824; this does not); a NaN row stays NaN. The math is
    :func:`keras_dcp.ops.top_label`.

    Example:

    >>> import numpy as np, keras, keras_dcp
    >>> keras.ops.convert_to_numpy(keras_dcp.TopLabel()(np.array([[0.2, 0.8], [0.6, 0.4]], "float32")))
    array([[0., 1.],
           [1., 0.]], dtype=float32)

    Returns:
        One-hot rows, shape ``(batch, K)``, dtype of the input.
    """

    def defend(self, y):
        return defense_ops.top_label(y)
