"""Pieces every zoo model shares: the input convention and the probability head."""

from __future__ import annotations

import keras

from keras_dcp.validation import check_int


def check_shape(input_shape, num_classes, min_side=8):
    """Validate ``(H, W, C)`` and ``num_classes``; return them as ints.

    Raises:
        ValueError: naming the bad argument.
    """
    try:
        input_shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError):
        raise ValueError(f"`input_shape` must be (height, width, channels); got {input_shape!r}.") from None
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise ValueError(f"`input_shape` must be (height, width, channels); got {input_shape!r}.")
    if min(input_shape[:2]) < min_side:
        raise ValueError(f"`input_shape` must be at least {min_side}x{min_side} pixels; got {input_shape!r}.")
    num_classes = check_int("num_classes", num_classes, minimum=2)
    return input_shape, num_classes


def image_input(input_shape):
    """``(inputs, x)``: the ``[0, 1]`` float input and its ``[-1, 1]`` rescaling ``x = 2 u - 1``."""
    inputs = keras.Input(shape=input_shape, dtype="float32", name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    return inputs, x


def probability_head(features, num_classes):
    """Dense logits then ``Softmax`` named ``"probabilities"``: ``(batch, F) -> (batch, K)``.

    The softmax runs in float32 even under mixed precision, so probabilities
    sum to 1 to float32 accuracy.
    """
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.layers.Softmax(name="probabilities", dtype="float32")(logits)
