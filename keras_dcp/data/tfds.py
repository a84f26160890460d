"""tensorflow-datasets loaders for the paper's victims and query sets.

``tensorflow_datasets`` (and through it TensorFlow) is imported only when one
of these datasets is asked for, so the rest of keras-dcp runs without it.
"""

from __future__ import annotations

import os

import numpy as np

from keras_dcp.data.images import as_labels, resize_images

#: Names accepted -> tfds builder name.
TFDS_NAMES = {
    "cifar10": "cifar10",
    "cifar100": "cifar100",
    "svhn_cropped": "svhn_cropped",
    "svhn": "svhn_cropped",
    "caltech_birds2011": "caltech_birds2011",
    "cub200": "caltech_birds2011",
    "mnist": "mnist",
    "fashion_mnist": "fashion_mnist",
}
#: Datasets whose images differ in size: resized to this unless told otherwise.
DEFAULT_IMAGE_SIZE = {"caltech_birds2011": (224, 224)}


def default_data_dir():
    """Where tfds keeps prepared data: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``."""
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def load_tfds(name, split="train", data_dir=None, download=False, image_size=None, batch_size=1024):
    """``(x, y)`` of a tfds image-classification dataset as NumPy arrays.

    Args:
        name: a key of :data:`TFDS_NAMES` (e.g. ``cifar10``, ``svhn``, ``cub200``).
        split: a tfds split string (``train``, ``test``, ``train[:10%]``...).
        data_dir: tfds data folder (default :func:`default_data_dir`).
        download: let tfds download and prepare the data when missing. When
            False and the data is not there, a FileNotFoundError names the
            folder where it was expected.
        image_size: ``(H, W)`` to resize to; needed for sets of mixed sizes
            (CUB-200 defaults to 224x224).
        batch_size: examples per batch read from tfds.

    Returns:
        ``(x, y)``: uint8 ``(n, H, W, C)`` and int64 labels.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in TFDS_NAMES:
        raise ValueError(f"Unknown tfds dataset {name!r}; choose from {', '.join(sorted(TFDS_NAMES))}.")
    builder_name = TFDS_NAMES[key]
    import tensorflow_datasets as tfds

    data_dir = data_dir or default_data_dir()
    builder = tfds.builder(builder_name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    try:
        dataset = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
    except AssertionError as error:  # tfds' "could not find data in ..." when not prepared
        raise FileNotFoundError(
            f"Dataset {builder_name!r} (split {split!r}) is not prepared: expected it in {builder.data_dir}. "
            f"Pass download=True (CLI: --download) to fetch it, or --data-dir to point at a folder that has "
            f"{builder_name}/ prepared by tfds ({error})."
        ) from None
    image_size = image_size or DEFAULT_IMAGE_SIZE.get(builder_name)
    try:
        stored_shape = tuple(builder.info.features["image"].shape)
    except (KeyError, AttributeError, TypeError):
        stored_shape = (None, None)
    if image_size is not None and tuple(stored_shape[:2]) == tuple(image_size):
        image_size = None  # already that size: read in batches, no per-image resize
    images, labels = [], []
    if image_size is None:
        for batch_x, batch_y in tfds.as_numpy(dataset.batch(batch_size)):
            images.append(batch_x)
            labels.append(batch_y)
    else:
        for image, label in tfds.as_numpy(dataset):
            images.append(resize_images(np.asarray(image)[None], image_size))
            labels.append(np.asarray(label).reshape(1))
    if not images:
        raise ValueError(f"Split {split!r} of {builder_name!r} is empty.")
    x = np.concatenate(images).astype(np.uint8)
    if x.ndim == 3:
        x = x[..., None]
    y = as_labels(np.concatenate(labels), len(x), what=f"{builder_name} labels")
    return x, y
