"""Loaders for data on disk: ``.npz`` files, image folders, IDX files, GTSRB, and digits."""

from __future__ import annotations

import csv
import gzip
import os
import struct

import numpy as np

from keras_dcp.data.images import as_labels, as_uint8_images, resize_images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".gif", ".tif", ".tiff", ".webp")

#: Split names accepted for local data and their file stems (``<stem>.npz``).
SPLIT_FILES = {
    "train": ("train",),
    "test": ("test", "t10k"),
    "query": ("queries", "query"),
    "queries": ("queries", "query"),
    "validation": ("validation", "val", "valid"),
}


# ----------------------------------------------------------------------------- npz


def load_npz(path):
    """``(x, y)`` from a ``.npz`` with arrays ``x`` (uint8 NHWC) and ``y`` (int labels).

    The format of ``../shared/data/*/*.npz``. A file without ``y`` (an
    unlabeled query set) gives ``y = -1`` everywhere.

    Raises:
        FileNotFoundError: if ``path`` does not exist.
        ValueError: if ``x`` is missing or malformed.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such .npz file: {path}")
    with np.load(path, allow_pickle=False) as data:
        if "x" not in data.files:
            raise ValueError(f"{path} must hold an array named 'x' (and 'y'); it has {data.files}.")
        x = as_uint8_images(data["x"], what=f"'x' in {path}")
        if "y" in data.files:
            y = as_labels(data["y"], len(x), what=f"'y' in {path}")
        else:
            y = np.full(len(x), -1, np.int64)
    return x, y


def find_split_npz(directory, split):
    """The ``.npz`` of ``split`` in ``directory`` (``train.npz``, ``test.npz``, ``queries.npz``), or None."""
    stems = SPLIT_FILES.get(split, (split,))
    for stem in stems:
        path = os.path.join(directory, f"{stem}.npz")
        if os.path.isfile(path):
            return path
    return None


# ------------------------------------------------------------------------ folders


def _read_image(path):
    from PIL import Image

    with Image.open(path) as image:
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        return np.asarray(image, dtype=np.uint8)


def _stack(images, image_size, source):
    """Stack decoded images into uint8 NHWC, resizing to ``image_size`` when given."""
    if not images:
        raise ValueError(f"No images found in {source}.")
    channels = 3 if any(image.ndim == 3 for image in images) else 1
    fixed = []
    for image in images:
        if image.ndim == 2:
            image = image[..., None]
        if image.shape[-1] != channels:
            image = np.repeat(image, channels, axis=-1)
        if image_size is not None:
            image = resize_images(image[None], image_size)[0]
        fixed.append(image)
    shapes = {image.shape for image in fixed}
    if len(shapes) > 1:
        raise ValueError(
            f"Images in {source} have different sizes ({sorted(shapes)[:3]}...); pass image_size=(H, W) to resize them."
        )
    return np.stack(fixed)


def load_image_folder(directory, image_size=None, class_names=None):
    """``(x, y)`` from ``directory/<class name>/<image>`` files.

    Classes are the sorted subfolder names (or ``class_names``), labels their
    index. Images are decoded with Pillow (RGB or grayscale).

    Args:
        directory: folder with one subfolder per class.
        image_size: ``(H, W)`` to resize every image to; required when the
            images differ in size.
        class_names: optional explicit class order.

    Raises:
        FileNotFoundError: if the folder does not exist.
        ValueError: if it holds no class folders or no images.
    """
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"No such image folder: {directory}")
    if class_names is None:
        class_names = sorted(
            entry for entry in os.listdir(directory) if os.path.isdir(os.path.join(directory, entry))
        )
    if not class_names:
        raise ValueError(f"{directory} has no class subfolders (expected {directory}/<class>/<image files>).")
    images, labels = [], []
    for label, class_name in enumerate(class_names):
        class_dir = os.path.join(directory, class_name)
        for filename in sorted(os.listdir(class_dir)):
            if filename.lower().endswith(IMAGE_SUFFIXES):
                images.append(_read_image(os.path.join(class_dir, filename)))
                labels.append(label)
    x = _stack(images, image_size, directory)
    return x, np.asarray(labels, np.int64)


# ---------------------------------------------------------------------------- IDX

#: IDX type byte -> numpy big-endian dtype.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path):
    """Read one IDX file (the MNIST format; gzip or not) as a numpy array.

    Header: two zero bytes, a type byte (0x08 = uint8), the number of
    dimensions ``d``, then ``d`` big-endian uint32 sizes, then the data.
    """
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as handle:
        header = handle.read(4)
        if len(header) != 4 or header[0] != 0 or header[1] != 0 or header[2] not in _IDX_DTYPES:
            raise ValueError(f"{path} is not an IDX file (bad magic number {header!r}).")
        ndim = header[3]
        shape = struct.unpack(f">{ndim}I", handle.read(4 * ndim))
        dtype = np.dtype(_IDX_DTYPES[header[2]])
        data = np.frombuffer(handle.read(), dtype=dtype)
    expected = int(np.prod(shape))
    if data.size != expected:
        raise ValueError(f"{path}: header says {shape} = {expected} values, file holds {data.size}.")
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(directory, split):
    """``(images_path, labels_path)`` of ``split`` in an MNIST-style folder, or None.

    Looks for ``train-images-idx3-ubyte[.gz]`` / ``train-labels-idx1-ubyte[.gz]``
    (and ``t10k-`` for ``test``), also with ``.`` instead of ``-`` before ``idx``.
    """
    if not os.path.isdir(directory):
        return None
    prefixes = {"train": ("train",), "test": ("t10k", "test")}.get(split, (split,))
    names = os.listdir(directory)

    def pick(prefix, kind, rank):
        for name in sorted(names):
            lowered = name.lower()
            if lowered.startswith(f"{prefix}-{kind}") and f"idx{rank}" in lowered:
                return os.path.join(directory, name)
        return None

    for prefix in prefixes:
        images, labels = pick(prefix, "images", 3), pick(prefix, "labels", 1)
        if images and labels:
            return images, labels
    return None


def load_idx(directory, split="train"):
    """``(x, y)`` from the IDX files of ``split`` (``train`` or ``test``) in ``directory``.

    Works for MNIST, Fashion-MNIST (Debian's ``dataset-fashion-mnist`` puts
    them in ``/usr/share/datasets/fashion-mnist``), KMNIST, EMNIST.
    Images come back as ``(n, 28, 28, 1)`` uint8.
    """
    found = find_idx_files(directory, split)
    if found is None:
        raise FileNotFoundError(
            f"No IDX files for split {split!r} in {directory} (expected e.g. "
            f"{'t10k' if split == 'test' else split}-images-idx3-ubyte.gz and the matching labels file)."
        )
    images, labels = found
    x = as_uint8_images(read_idx(images), what=images)
    y = as_labels(read_idx(labels), len(x), what=labels)
    return x, y


# -------------------------------------------------------------------------- GTSRB


def find_gtsrb_root(directory):
    """The folder that holds ``Final_Training`` (``directory`` or ``directory/GTSRB``), or None."""
    for candidate in (directory, os.path.join(directory, "GTSRB")):
        if os.path.isdir(os.path.join(candidate, "Final_Training")) or os.path.isdir(
            os.path.join(candidate, "Final_Test")
        ):
            return candidate
    return None


def _read_gt_csv(path):
    """Rows of a GTSRB ground-truth CSV (``;``-separated, with a header)."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def _gtsrb_image(path, row, crop_roi):
    image = _read_image(path)
    if crop_roi and row.get("Roi.X1") is not None:
        x1, y1, x2, y2 = (int(row[key]) for key in ("Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2"))
        image = image[y1:y2 + 1, x1:x2 + 1]
    return image


def load_gtsrb(directory, split="train", image_size=(32, 32), crop_roi=False):
    """GTSRB (Stallkamp et al. 2012) from the official release's folder layout.

    Training set: ``Final_Training/Images/<5-digit class>/GT-<class>.csv`` and
    the ``.ppm`` files it lists. Test set: ``Final_Test/Images/*.ppm`` with the
    separately released ``GT-final_test.csv`` (in ``Final_Test/Images``,
    ``Final_Test`` or the root). ``directory`` may also be the parent of the
    ``GTSRB`` folder the zips extract to.

    Args:
        directory: the GTSRB root.
        split: ``"train"`` or ``"test"``.
        image_size: ``(H, W)`` every sign is resized to (they are 15 to 250 px).
        crop_roi: crop to the annotated sign box (``Roi.*`` columns) first.

    Returns:
        ``(x, y)``: uint8 ``(n, H, W, 3)`` and int64 class ids in ``[0, 43)``.

    Raises:
        FileNotFoundError: naming the expected layout when it is missing.
    """
    root = find_gtsrb_root(directory)
    if root is None:
        raise FileNotFoundError(
            f"No GTSRB data in {directory}: expected {os.path.join(directory, 'Final_Training', 'Images')} "
            "(from GTSRB_Final_Training_Images.zip) and Final_Test/Images with GT-final_test.csv. "
            "Download them from https://benchmark.ini.rub.de/gtsrb_dataset.html."
        )
    images, labels = [], []
    if split == "train":
        image_root = os.path.join(root, "Final_Training", "Images")
        if not os.path.isdir(image_root):
            raise FileNotFoundError(f"GTSRB training images not found: expected {image_root}/<class>/GT-<class>.csv.")
        for class_dir in sorted(os.listdir(image_root)):
            folder = os.path.join(image_root, class_dir)
            if not os.path.isdir(folder):
                continue
            csvs = [name for name in os.listdir(folder) if name.startswith("GT-") and name.endswith(".csv")]
            if not csvs:
                raise FileNotFoundError(f"GTSRB class folder {folder} has no GT-{class_dir}.csv.")
            for row in _read_gt_csv(os.path.join(folder, csvs[0])):
                images.append(_gtsrb_image(os.path.join(folder, row["Filename"]), row, crop_roi))
                labels.append(int(row["ClassId"]))
    elif split == "test":
        image_root = os.path.join(root, "Final_Test", "Images")
        candidates = [
            os.path.join(image_root, "GT-final_test.csv"),
            os.path.join(root, "Final_Test", "GT-final_test.csv"),
            os.path.join(root, "GT-final_test.csv"),
        ]
        gt_path = next((path for path in candidates if os.path.isfile(path)), None)
        if gt_path is None:
            raise FileNotFoundError(
                "GTSRB test labels not found: expected GT-final_test.csv (from GTSRB_Final_Test_GT.zip) "
                f"in {image_root}."
            )
        for row in _read_gt_csv(gt_path):
            images.append(_gtsrb_image(os.path.join(image_root, row["Filename"]), row, crop_roi))
            labels.append(int(row["ClassId"]))
    else:
        raise ValueError(f"GTSRB has splits 'train' and 'test'; got {split!r}.")
    x = _stack(images, image_size, root)
    return x, np.asarray(labels, np.int64)


# ------------------------------------------------------------------------- digits

#: Digits splits: a fixed, stratified partition of scikit-learn's 1,797 images.
DIGITS_SPLITS = ("train", "test", "query", "all")
#: Share of each class in the train / test / query splits.
DIGITS_FRACTIONS = (0.5, 0.25, 0.25)
#: Image size of the upscaled digits: 32x32 grayscale, so every zoo model
#: (MobileNetV2 needs >= 32 px) takes them.
DIGITS_SHAPE = (32, 32, 1)


def load_digits(split="train"):
    """scikit-learn's bundled handwritten digits, upscaled to 32x32x1 uint8.

    The 8x8 images (values 0..16) are scaled to ``0..255`` and resized
    bilinearly to 32x32 (exactly 4x). The 1,797 images are split once,
    stratified by class with a fixed seed, into disjoint ``train`` (50%),
    ``test`` (25%) and ``query`` (25%) parts; ``all`` is the whole set.
    Works offline on every machine.

    Returns:
        ``(x, y)``: uint8 ``(n, 32, 32, 1)`` and int64 labels in ``[0, 10)``.
    """
    if split not in DIGITS_SPLITS:
        raise ValueError(f"digits has splits {', '.join(DIGITS_SPLITS)}; got {split!r}.")
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x8 = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    x = resize_images(x8, DIGITS_SHAPE[:2])
    if split == "all":
        return x, y
    rng = np.random.default_rng(0)
    parts = {"train": [], "test": [], "query": []}
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        n_train = int(round(DIGITS_FRACTIONS[0] * len(rows)))
        n_test = int(round(DIGITS_FRACTIONS[1] * len(rows)))
        parts["train"].append(rows[:n_train])
        parts["test"].append(rows[n_train:n_train + n_test])
        parts["query"].append(rows[n_train + n_test:])
    rows = np.sort(np.concatenate(parts[split]))
    return x[rows], y[rows]


# ------------------------------------------------------------------ sample photos

#: Crop sides (pixels) of the natural-photo queries, drawn uniformly.
PHOTO_CROP_SIDES = (12, 120)


def load_sample_photos(split="train", num_images=4000, image_size=(32, 32), seed=0):
    """Natural-image queries that work offline: random crops of scikit-learn's two sample photos.

    scikit-learn bundles two 427x640 RGB photographs (``china.jpg``,
    ``flower.jpg``; :func:`sklearn.datasets.load_sample_images`). Image ``i``
    is a random square crop of photo ``i mod 2`` with a side drawn uniformly
    in ``[12, 120)`` pixels, resized bilinearly to ``image_size``. This is
    the KnockoffNets setting (the thief queries natural images from another
    distribution than the victim's) on a machine without any download.
    ``split="train"`` and ``"test"`` use different seeds, so they are
    (almost surely) different crops.

    Returns:
        ``(x, y)``: uint8 ``(num_images, H, W, 3)`` and ``y = -1`` (unlabeled).
    """
    from sklearn.datasets import load_sample_images

    offsets = {"train": 0, "query": 0, "queries": 0, "test": 1, "validation": 2}
    if split not in offsets:
        raise ValueError(f"sample-photos has splits {', '.join(offsets)}; got {split!r}.")
    photos = load_sample_images().images
    rng = np.random.default_rng([seed, offsets[split]])
    out = np.empty((num_images, int(image_size[0]), int(image_size[1]), 3), np.uint8)
    for i in range(num_images):
        photo = photos[i % len(photos)]
        side = int(rng.integers(*PHOTO_CROP_SIDES))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        out[i] = resize_images(photo[None, top:top + side, left:left + side], image_size)[0]
    return out, np.full(num_images, -1, np.int64)
