"""The image generator of MAZE and DFME, and the map from its output to the victim's input range."""

from __future__ import annotations

import keras
import numpy as np


def make_generator(latent_dim: int, image_shape: tuple[int, int, int], width: int = 64,
                   final_affine: bool = True) -> keras.Model:
    """The MAZE / DFME generator, ``z (n, latent_dim) -> pre-tanh images (n, H, W, C)``.

    ``Linear(latent, 2w * H/4 * W/4) -> BN -> [up x2 -> conv3x3(2w) -> BN ->
    LeakyReLU(0.2)] -> [up x2 -> conv3x3(w) -> BN -> LeakyReLU(0.2)] ->
    conv3x3(C) -> BN``: MAZE's ``conv3_gen`` (``final_affine=True``) and DFME's
    ``GeneratorA`` (``final_affine=False``). The attacks apply ``tanh`` (and
    the map to the victim's input range, :func:`to_images`) themselves, because
    the gradient is estimated in this pre-tanh space.

    Args:
        latent_dim: size of ``z`` (100 in MAZE, 256 in DFME).
        image_shape: ``(H, W, C)``, with ``H`` and ``W`` divisible by 4.
        width: ``w``, channels of the last hidden block (64).
        final_affine: learn scale and shift in the last batch norm.

    Returns:
        An uncompiled ``keras.Model``.
    """
    height, width_px, channels = (int(d) for d in image_shape)
    if height % 4 or width_px % 4:
        raise ValueError(f"The generator needs H and W divisible by 4; got image shape {tuple(image_shape)}.")
    bn = dict(momentum=0.9, epsilon=1e-5)
    z = keras.Input(shape=(latent_dim,), name="z")
    h = keras.layers.Dense(2 * width * (height // 4) * (width_px // 4))(z)
    h = keras.layers.Reshape((height // 4, width_px // 4, 2 * width))(h)
    h = keras.layers.BatchNormalization(**bn)(h)
    for channels_out in (2 * width, width):
        h = keras.layers.UpSampling2D(2)(h)
        h = keras.layers.Conv2D(channels_out, 3, padding="same")(h)
        h = keras.layers.BatchNormalization(**bn)(h)
        h = keras.layers.LeakyReLU(negative_slope=0.2)(h)
    h = keras.layers.Conv2D(channels, 3, padding="same")(h)
    h = keras.layers.BatchNormalization(center=final_affine, scale=final_affine, **bn)(h)
    return keras.Model(z, h, name="generator")


def to_images(x_pre: np.ndarray, input_range: tuple[float, float]) -> np.ndarray:
    """``x = low + (high - low) (tanh(x_pre) + 1) / 2``: pre-tanh space to the victim's range.

    >>> to_images(np.array([0.0, 100.0]), (0.0, 1.0)).tolist()
    [0.5, 1.0]
    """
    low, high = input_range
    return (low + (high - low) * (np.tanh(x_pre) + 1.0) * 0.5).astype("float32")


__all__ = ["make_generator", "to_images"]
