"""MobileNetV2 (Sandler et al. 2018) for edge targets, trained from scratch."""

from __future__ import annotations

import keras

from keras_dcp.models.common import check_shape, image_input, probability_head


def mobilenet_v2(input_shape=(32, 32, 3), num_classes=10, alpha=1.0, name="mobilenet_v2"):
    """``keras.applications.MobileNetV2`` (``weights=None``) with the zoo's input and head.

    ``[0, 1]`` input -> rescale to ``[-1, 1]`` (MobileNetV2's own convention)
    -> MobileNetV2 features (``include_top=False``, global average pool) ->
    dense -> softmax named ``"probabilities"``. The layers are inlined, not
    nested, so :func:`keras_dcp.protect` and TFLite export see one flat graph.
    Inputs must be at least 32x32 (five stride-2 stages). Shapes:
    ``(batch, H, W, C)`` -> ``(batch, num_classes)``.

    Args:
        input_shape: ``(H, W, C)``, H, W >= 32, any channel count.
        num_classes: number of classes K >= 2.
        alpha: width multiplier (0.35, 0.5, 0.75, 1.0, 1.3, 1.4).
        name: model name.

    Returns:
        An uncompiled functional ``keras.Model`` (no pretrained weights: the
        ImageNet ones need 3-channel inputs and a download).
    """
    input_shape, num_classes = check_shape(input_shape, num_classes, min_side=32)
    inputs, x = image_input(input_shape)
    features = keras.applications.MobileNetV2(
        input_tensor=x,
        include_top=False,
        weights=None,
        alpha=alpha,
        pooling="avg",
    )
    # The application is built on our rescaled tensor, so its output is a
    # symbolic tensor of our graph and the model stays flat.
    outputs = probability_head(features.output, num_classes)
    return keras.Model(inputs, outputs, name=name)
