"""``load_dataset(name, split)``: one entry point for every data source keras-dcp knows."""

from __future__ import annotations

import os

from keras_dcp.data import local
from keras_dcp.data.images import match_shape
from keras_dcp.data.tfds import TFDS_NAMES, load_tfds

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: Environment variable that points at the shared benchmark data (``cifar10/``,
#: ``tinyimagenet/``, ``mnist/`` of ``*.npz``).
SHARED_DATA_ENV = "KERAS_DCP_SHARED_DATA"


def shared_data_dir(data_dir=None):
    """The folder of shared ``.npz`` benchmark data (``../shared/data`` in this project).

    In order: ``data_dir``, ``$KERAS_DCP_SHARED_DATA``, ``../shared/data``
    relative to the working directory, then relative to the source checkout.
    Returns the first that exists, else the ``../shared/data`` candidate (for
    error messages).
    """
    candidates = [data_dir, os.environ.get(SHARED_DATA_ENV)]
    candidates.append(os.path.join(os.getcwd(), "..", "shared", "data"))
    repo_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    candidates.append(os.path.join(repo_root, "..", "shared", "data"))
    for candidate in candidates:
        if candidate and os.path.isdir(candidate):
            return os.path.normpath(candidate)
    return os.path.normpath(candidates[2])


def _load_path(path, split, image_size):
    """Dispatch a filesystem path on what it holds."""
    if os.path.isfile(path):
        if path.endswith(".npz"):
            return local.load_npz(path)
        raise ValueError(f"Cannot read {path}: expected a .npz file or a folder.")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"No such dataset file or folder: {path}")
    npz = local.find_split_npz(path, split or "train")
    if npz:
        return local.load_npz(npz)
    if local.find_idx_files(path, split or "train"):
        return local.load_idx(path, split or "train")
    if local.find_gtsrb_root(path):
        return local.load_gtsrb(path, split or "train", image_size=image_size or (32, 32))
    if split and os.path.isdir(os.path.join(path, split)):
        return local.load_image_folder(os.path.join(path, split), image_size=image_size)
    subfolders = [entry for entry in os.listdir(path) if os.path.isdir(os.path.join(path, entry))]
    if subfolders:
        return local.load_image_folder(path, image_size=image_size)
    raise ValueError(
        f"Do not know how to read {path}: expected {split or 'train'}.npz, IDX files, the GTSRB layout "
        "or one subfolder of images per class."
    )


def load_dataset(name, split="train", data_dir=None, download=False, image_size=None):
    """Load a labelled image set as ``(x, y)``: uint8 ``(n, H, W, C)``, int64 ``(n,)``.

    ``name`` can be:

    * ``digits``: scikit-learn's bundled digits at 32x32x1 (splits ``train``,
      ``test``, ``query``, ``all``; see :func:`keras_dcp.data.local.load_digits`).
      Offline, on every machine.
    * ``sample-photos``: 4,000 random crops of scikit-learn's two bundled
      photographs (natural images for a thief, offline; see
      :func:`keras_dcp.data.local.load_sample_photos`).
    * a tensorflow-datasets name: ``cifar10``, ``cifar100``, ``svhn_cropped``
      (``svhn``), ``caltech_birds2011`` (``cub200``), ``mnist``,
      ``fashion_mnist``. ``data_dir`` is the tfds folder; nothing is
      downloaded unless ``download=True``.
    * ``gtsrb``: the official GTSRB folder layout under ``data_dir``.
    * ``fashion-mnist-idx``: the IDX files under ``data_dir`` or Debian's
      ``/usr/share/datasets/fashion-mnist``.
    * ``shared:<folder>``: ``<shared data>/<folder>/<split>.npz`` (see
      :func:`shared_data_dir`), e.g. ``shared:cifar10``.
    * a path: a ``.npz`` file (arrays ``x``, ``y``); a folder with
      ``<split>.npz``; a folder of IDX files; a GTSRB root; or an image
      folder (``<class>/<image>``, optionally under ``<split>/``).

    Args:
        name: see above.
        split: ``train``, ``test``, ``query``... (ignored for a single ``.npz``).
        data_dir: where the named datasets live (see above).
        download: allow tfds to download (only tfds names download).
        image_size: optional ``(H, W)`` to resize to.

    Returns:
        ``(x, y)``; unlabeled query sets have ``y = -1``.

    Raises:
        FileNotFoundError: data missing; the message names the expected path.
        ValueError: malformed data or an unknown name.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"Dataset name must be a non-empty string; got {name!r}.")
    key = name.strip().lower()
    if key == "digits":
        x, y = local.load_digits(split or "train")
    elif key in ("sample-photos", "sample_photos"):
        x, y = local.load_sample_photos(split or "train", image_size=image_size or (32, 32))
    elif key.replace("-", "_") in TFDS_NAMES and not os.path.exists(name):
        return load_tfds(key, split or "train", data_dir=data_dir, download=download, image_size=image_size)
    elif key == "gtsrb":
        if not data_dir:
            raise FileNotFoundError(
                "GTSRB has no tfds builder: download the official release and pass data_dir "
                "(CLI: --data-dir) pointing at the folder that holds Final_Training/Images."
            )
        return local.load_gtsrb(data_dir, split or "train", image_size=image_size or (32, 32))
    elif key in ("fashion-mnist-idx", "fashion_mnist_idx"):
        directory = data_dir or FASHION_MNIST_DIR
        if not os.path.isdir(directory):
            raise FileNotFoundError(
                f"Fashion-MNIST IDX files not found in {directory}: install them with "
                "`apt-get install dataset-fashion-mnist` or pass data_dir."
            )
        x, y = local.load_idx(directory, split or "train")
    elif key.startswith("shared:"):
        folder = os.path.join(shared_data_dir(data_dir), name.strip()[len("shared:"):])
        npz = local.find_split_npz(folder, split or "train") if os.path.isdir(folder) else None
        if npz is None:
            raise FileNotFoundError(
                f"No {split}.npz in {folder}. Point --data-dir (or ${SHARED_DATA_ENV}) at the shared data folder."
            )
        x, y = local.load_npz(npz)
    else:
        x, y = _load_path(os.path.expanduser(name), split, image_size)
    if image_size is not None:
        x = match_shape(x, (image_size[0], image_size[1], x.shape[-1]))
    return x, y


def default_query_split(name):
    """The split a query set is read from when none is given.

    ``query`` for ``digits`` and for folders holding ``queries.npz``
    (``../shared/data/tinyimagenet``), else ``train`` (a thief uses the
    largest split of someone else's dataset).
    """
    key = name.strip().lower()
    if key == "digits":
        return "query"
    if key.startswith("shared:"):
        return "query"
    path = os.path.expanduser(name)
    if os.path.isdir(path) and local.find_split_npz(path, "query") and not local.find_split_npz(path, "train"):
        return "query"
    return "train"
