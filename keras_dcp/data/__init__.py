"""Datasets for victims and thieves, as NumPy arrays.

Every loader returns ``(x, y)`` with ``x`` uint8 of shape ``(n, H, W, C)``
(NHWC, values 0..255) and ``y`` int64 of shape ``(n,)``; :func:`to_float`
turns images into the float32 ``[0, 1]`` the models take.

>>> from keras_dcp import data
>>> x, y = data.load_dataset("digits", "train")  # offline, 32x32x1
>>> x.dtype, x.shape[1:], y.dtype
(dtype('uint8'), (32, 32, 1), dtype('int64'))
"""

from keras_dcp.data.images import as_uint8_images, match_shape, resize_images, to_float
from keras_dcp.data.loaders import default_query_split, load_dataset, shared_data_dir
from keras_dcp.data.local import (
    load_digits,
    load_gtsrb,
    load_idx,
    load_image_folder,
    load_npz,
    load_sample_photos,
    read_idx,
)
from keras_dcp.data.presets import PRESET_PARTS, PRESETS, Preset, get_preset, load_preset, subset
from keras_dcp.data.tfds import load_tfds

__all__ = [
    "PRESET_PARTS",
    "PRESETS",
    "Preset",
    "as_uint8_images",
    "default_query_split",
    "get_preset",
    "load_dataset",
    "load_digits",
    "load_gtsrb",
    "load_idx",
    "load_image_folder",
    "load_npz",
    "load_preset",
    "load_sample_photos",
    "load_tfds",
    "match_shape",
    "read_idx",
    "resize_images",
    "shared_data_dir",
    "subset",
    "to_float",
]
