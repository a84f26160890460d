"""Array conventions shared by every loader: uint8 NHWC in, float32 [0, 1] out."""

from __future__ import annotations

import numpy as np


def to_float(x):
    """uint8 images ``[0, 255]`` -> float32 ``[0, 1]``: ``u = x / 255``.

    Float input is taken to be in ``[0, 1]`` already and only cast to float32.
    Shapes: ``(n, H, W, C) -> (n, H, W, C)``.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype("float32") / 255.0
    return x.astype("float32", copy=False)


def as_uint8_images(x, what="images"):
    """Check and normalise an image array to uint8 NHWC.

    ``(n, H, W)`` gains a channel axis; float arrays in ``[0, 1]`` are scaled
    by 255 and rounded; integer arrays in ``[0, 255]`` are cast.

    Raises:
        ValueError: for other ranks or value ranges, naming ``what``.
    """
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"{what} must be an array of shape (n, height, width, channels); got shape {x.shape}.")
    if x.dtype == np.uint8:
        return x
    if x.size == 0:
        return x.astype(np.uint8)
    low, high = float(np.min(x)), float(np.max(x))
    if np.issubdtype(x.dtype, np.floating) and low >= 0.0 and high <= 1.0:
        return np.round(x * 255.0).astype(np.uint8)
    if low >= 0 and high <= 255:
        return np.round(x).astype(np.uint8)
    raise ValueError(f"{what} must hold values in [0, 255] (uint8) or [0, 1] (float); got range [{low}, {high}].")


def as_labels(y, n, what="labels"):
    """Check ``y`` is ``n`` integer labels >= 0; return them as int64 ``(n,)``."""
    y = np.asarray(y).reshape(-1)
    if len(y) != n:
        raise ValueError(f"{what}: {len(y)} labels for {n} images.")
    if y.size and (not np.issubdtype(y.dtype, np.integer) and not np.all(np.mod(y, 1) == 0)):
        raise ValueError(f"{what} must be integers; got dtype {y.dtype}.")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise ValueError(f"{what} must be >= 0; got a minimum of {y.min()}.")
    return y


def resize_images(x, size):
    """Bilinear resize of uint8 NHWC images to ``size = (H, W)`` (Pillow).

    Returns the input unchanged when it already has that size.
    """
    from PIL import Image

    height, width = int(size[0]), int(size[1])
    if x.shape[1:3] == (height, width):
        return x
    out = np.empty((len(x), height, width, x.shape[-1]), np.uint8)
    for i, image in enumerate(x):
        for c in range(x.shape[-1]):
            channel = Image.fromarray(image[..., c])
            out[i, ..., c] = np.asarray(channel.resize((width, height), Image.BILINEAR))
    return out


def convert_channels(x, channels):
    """Gray <-> RGB: repeat a single channel, or take the luminance ``0.299 R + 0.587 G + 0.114 B``."""
    have = x.shape[-1]
    if have == channels:
        return x
    if have == 1:
        return np.repeat(x, channels, axis=-1)
    if have >= 3 and channels == 1:
        gray = x[..., :3].astype("float32") @ np.array([0.299, 0.587, 0.114], "float32")
        return np.round(gray).clip(0, 255).astype(np.uint8)[..., None]
    if have == 4 and channels == 3:
        return x[..., :3]
    raise ValueError(f"Cannot convert images with {have} channels to {channels}.")


def match_shape(x, shape):
    """Resize and convert channels so uint8 images ``x`` have ``shape = (H, W, C)``.

    This is how a query set of another size (Tiny-ImageNet, MNIST) is fed to a
    victim: the attacker must send what the API accepts.
    """
    x = as_uint8_images(x)
    x = convert_channels(x, int(shape[-1]))
    return resize_images(x, shape[:2])
