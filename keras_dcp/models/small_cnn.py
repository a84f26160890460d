"""A small VGG-style CNN for fast runs (the demo, tests, CPU experiments)."""

from __future__ import annotations

import keras

from keras_dcp.models.common import check_shape, image_input, probability_head
from keras_dcp.validation import check_int


def small_cnn(input_shape=(32, 32, 3), num_classes=10, width=32, name="small_cnn"):
    """Two conv-conv-pool stages (``w``, ``2w`` filters), then ``4w`` and a global pool.

    ``[conv3x3(w), conv3x3(w), maxpool] -> [conv3x3(2w), conv3x3(2w), maxpool]
    -> conv3x3(4w) -> global average pool -> dense -> softmax``, each conv
    followed by BN and ReLU. About 0.15M parameters at ``width = 32``; a few
    seconds per epoch on 2k digit images on a laptop CPU. Shapes:
    ``(batch, H, W, C)`` in ``[0, 1]`` -> ``(batch, num_classes)`` probabilities.

    Args:
        input_shape: ``(H, W, C)`` with H, W >= 8.
        num_classes: number of classes K >= 2.
        width: filters of the first stage.
        name: model name.

    Returns:
        An uncompiled functional ``keras.Model``.
    """
    width = check_int("width", width, minimum=1)
    input_shape, num_classes = check_shape(input_shape, num_classes)
    inputs, x = image_input(input_shape)
    for stage, filters in enumerate((width, 2 * width)):
        for conv in range(2):
            prefix = f"stage{stage + 1}_conv{conv + 1}"
            x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=prefix)(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn")(x)
            x = keras.layers.ReLU(name=f"{prefix}_relu")(x)
        x = keras.layers.MaxPooling2D(2, name=f"stage{stage + 1}_pool")(x)
    x = keras.layers.Conv2D(4 * width, 3, padding="same", use_bias=False, name="top_conv")(x)
    x = keras.layers.BatchNormalization(momentum=0.9, name="top_bn")(x)
    x = keras.layers.ReLU(name="top_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = probability_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name)
