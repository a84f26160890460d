"""CIFAR-style ResNets (He et al. 2016, section 4.2): ResNet-20 and ResNet-32.

The reference DCP code calls these "resnet18/34"; they are the 6n+2-layer
CIFAR networks, not the ImageNet ResNet-18/34.
"""

from __future__ import annotations

import keras

from keras_dcp.models.common import check_shape, image_input, probability_head
from keras_dcp.validation import check_int

#: He et al.'s weight decay lives in the optimizer (keras_dcp.training), not in
#: kernel regularizers, so the same model trains the same way on any backend.
_CONV_INIT = "he_normal"


def _conv_bn(x, filters, strides, name, relu=True):
    x = keras.layers.Conv2D(
        filters, 3, strides=strides, padding="same", use_bias=False,
        kernel_initializer=_CONV_INIT, name=f"{name}_conv",
    )(x)
    x = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_bn")(x)
    if relu:
        x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


def _basic_block(x, filters, strides, name):
    """``relu(F(x) + shortcut(x))`` with ``F`` = conv3x3-BN-ReLU-conv3x3-BN.

    The shortcut is the identity, or a strided 1x1 conv + BN where the shape
    changes (He et al.'s option B).
    """
    shortcut = x
    y = _conv_bn(x, filters, strides, f"{name}_1")
    y = _conv_bn(y, filters, 1, f"{name}_2", relu=False)
    if strides != 1 or x.shape[-1] != filters:
        shortcut = keras.layers.Conv2D(
            filters, 1, strides=strides, use_bias=False,
            kernel_initializer=_CONV_INIT, name=f"{name}_proj_conv",
        )(x)
        shortcut = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_proj_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def cifar_resnet(depth, input_shape=(32, 32, 3), num_classes=10, width=16, name=None):
    """A CIFAR ResNet of ``depth = 6n + 2`` layers.

    conv3x3(w) -> 3 stages of ``n`` basic blocks with ``w, 2w, 4w`` filters
    (stride 2 at the start of stages 2 and 3) -> global average pool ->
    dense -> softmax. For 32x32 inputs the feature maps are 32, 16 and 8
    pixels wide. Shapes: ``(batch, H, W, C)`` in ``[0, 1]`` ->
    ``(batch, num_classes)`` probabilities.

    Args:
        depth: total depth, ``6n + 2`` (20, 32, 44, 56, 110).
        input_shape: ``(H, W, C)``; any size >= 8 pixels and any channel count.
        num_classes: number of classes K >= 2.
        width: filters of the first stage (16 in He et al.).
        name: model name (default ``resnet<depth>``).

    Returns:
        An uncompiled functional ``keras.Model``.
    """
    depth = check_int("depth", depth, minimum=8)
    if (depth - 2) % 6:
        raise ValueError(f"`depth` must be 6n + 2 (20, 32, 44, ...). Received: depth={depth!r}")
    width = check_int("width", width, minimum=1)
    input_shape, num_classes = check_shape(input_shape, num_classes)
    blocks_per_stage = (depth - 2) // 6
    inputs, x = image_input(input_shape)
    x = _conv_bn(x, width, 1, "stem")
    for stage, filters in enumerate((width, 2 * width, 4 * width)):
        for block in range(blocks_per_stage):
            strides = 2 if stage > 0 and block == 0 else 1
            x = _basic_block(x, filters, strides, f"stage{stage + 1}_block{block + 1}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = probability_head(x, num_classes)
    return keras.Model(inputs, outputs, name=name or f"resnet{depth}")


def resnet20(input_shape=(32, 32, 3), num_classes=10, width=16):
    """ResNet-20 (n = 3, about 0.27M parameters at width 16). See :func:`cifar_resnet`."""
    return cifar_resnet(20, input_shape, num_classes, width=width)


def resnet32(input_shape=(32, 32, 3), num_classes=10, width=16):
    """ResNet-32 (n = 5, about 0.46M parameters at width 16). See :func:`cifar_resnet`."""
    return cifar_resnet(32, input_shape, num_classes, width=width)
