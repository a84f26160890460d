"""What the subcommands share: data flags, reading data, checking and writing outputs.

The command line's error contract: a bad input (a missing or corrupted file, an
output path that cannot be written, a bad number) raises ``ValueError`` with a
message that names what to fix; :func:`keras_dcp.cli.main` prints it on one
line and exits with 2. Outputs are checked before any work starts, never
overwrite an existing file or a non-empty folder unless ``--overwrite`` is
given, and are written to a temporary name first and moved into place, so a
failure half-way loses nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from typing import Iterator

import numpy as np

DISTRIBUTIONS = ("none", "mirrored", "data-parallel")
#: ``--precision`` values (:data:`keras_dcp.attacks.vectorized.PRECISIONS`).
PRECISIONS = ("float32", "mixed_bfloat16")


# --- arguments ----------------------------------------------------------------------------------

def add_common_data_arguments(parser) -> None:
    parser.add_argument("--data-dir", help="where datasets live (tfds folder, GTSRB root, shared .npz folder)")
    parser.add_argument("--download", action="store_true",
                        help="let tensorflow-datasets download missing data (off: a clear error instead)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    parser.add_argument("--distribute", default="none", choices=DISTRIBUTIONS,
                        help="train on every visible GPU: mirrored (tf.distribute, TensorFlow backend) or "
                        "data-parallel (keras.distribution, JAX backend); default none")


def add_clone_training_arguments(parser) -> None:
    """``--parallel-clones N`` and ``--precision``: how the thief's clones are trained (evaluate, demo)."""
    parser.add_argument("--parallel-clones", type=int, metavar="N",
                        help="train up to N KnockoffNets clones together in one compiled program (JAX backend; "
                        "results as one at a time, up to float rounding); default: one at a time")
    parser.add_argument("--precision", default="float32",
                        help="clone precision: float32 (default) or mixed_bfloat16 (bfloat16 compute)")


def check_clone_training_arguments(args) -> None:
    """A ValueError naming the flag for a bad ``--parallel-clones`` or ``--precision``."""
    check_flags_at_least(args, 1, "parallel-clones")
    if args.precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}; got {args.precision!r}.")


def add_overwrite_argument(parser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing output files or non-empty output folders (default: refuse)")


def check_flags_at_least(args, minimum: int = 1, *names: str) -> None:
    """A ValueError naming the flag unless each ``--name`` given is an int >= ``minimum``."""
    for name in names:
        value = getattr(args, name.replace("-", "_"), None)
        if value is not None and value < minimum:
            raise ValueError(f"--{name} must be >= {minimum}; got {value}.")


# --- outputs --------------------------------------------------------------------------------------

def _check_parent(path: str, flag: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.exists(parent):
        raise ValueError(f"{flag} {path!r}: the folder {parent!r} does not exist; create it first.")
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path!r}: {parent!r} is a file, not a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{flag} {path!r}: cannot write into {parent!r} (permission denied).")


def check_output_file(path: str, overwrite: bool = False, flag: str = "--output",
                      suffix: str | None = None) -> str:
    """Check that ``path`` can be written as a file; return it.

    Refuses (ValueError): an existing directory, a missing or unwritable
    parent folder, a parent that is a file, a wrong ``suffix``, and an
    existing file unless ``overwrite``.
    """
    if not path:
        raise ValueError(f"{flag} is empty.")
    if suffix and not path.endswith(suffix):
        raise ValueError(f"{flag} {path!r} must end in {suffix}.")
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a directory; give a file name.")
    _check_parent(path, flag)
    if os.path.exists(path) and not overwrite:
        raise ValueError(f"{flag} {path!r} exists; pass --overwrite to replace it.")
    return path


def check_output_dir(path: str, overwrite: bool = False, flag: str = "--output") -> str:
    """Check that ``path`` can be written as a new folder (a SavedModel); return it.

    Refuses (ValueError): an existing file, a missing or unwritable parent
    folder, and an existing non-empty folder unless ``overwrite``.
    """
    if not path:
        raise ValueError(f"{flag} is empty.")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a file; a SavedModel is written into a new folder.")
    _check_parent(os.path.abspath(path).rstrip(os.sep), flag)
    if os.path.isdir(path) and os.listdir(path) and not overwrite:
        raise ValueError(f"{flag} {path!r} is a folder that is not empty; pass --overwrite to replace it.")
    return path


@contextlib.contextmanager
def atomic_output(path: str, directory: bool = False) -> Iterator[str]:
    """Yield a temporary path next to ``path``; on success move it into place (replacing ``path``).

    On failure the temporary file or folder is removed and ``path`` is left
    as it was. The temporary name keeps ``path``'s suffix (Keras checks it).
    """
    parent = os.path.dirname(os.path.abspath(path))
    suffix = "" if directory else os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(prefix=".keras-dcp-", suffix=suffix, dir=parent)
    os.close(handle)
    os.remove(temporary)  # writers create it themselves
    try:
        yield temporary
        if directory:
            if os.path.isdir(path):
                shutil.rmtree(path)
            os.replace(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        if os.path.isdir(temporary):
            shutil.rmtree(temporary, ignore_errors=True)
        elif os.path.exists(temporary):
            os.remove(temporary)


# --- inputs ---------------------------------------------------------------------------------------

def is_preset(name: str) -> bool:
    """Whether ``name`` names a :data:`keras_dcp.data.PRESETS` entry."""
    from keras_dcp.data.presets import get_preset

    try:
        get_preset(name)
    except ValueError:
        return False
    return True


def load_labeled(dataset: str, split: str, data_dir=None, download=False, limit=None, seed=0):
    """``(x, y, preset)``: a split of a preset (through :func:`keras_dcp.data.load_preset`) or of any dataset.

    ``split`` ``"train"``/``"test"`` of a preset means the preset's own split
    names; other names are passed on. ``preset`` is None for a plain dataset.
    """
    from keras_dcp.data import load_dataset, load_preset, subset

    if is_preset(dataset):
        part = "test" if split == "test" else "train"
        override = None if split in ("train", "test") else split
        loaded = load_preset(
            dataset, data_dir, download, parts=(part,), seed=seed,
            max_train=limit, max_test=limit,
            train_split=override if part == "train" else None, test_split=override if part == "test" else None,
        )
        return loaded[f"x_{part}"], loaded[f"y_{part}"], loaded["preset"]
    x, y = load_dataset(dataset, split, data_dir=data_dir, download=download)
    x, y = subset(x, y, limit, seed)
    return x, y, None


def load_queries(queries, preset=None, split=None, data_dir=None, download=False, limit=None, seed=0):
    """The thief's images: ``queries`` (a dataset name or path), else the preset's default. Labels are dropped."""
    from keras_dcp.data import default_query_split, load_dataset, load_preset, subset

    if preset is not None:
        loaded = load_preset(preset.name, data_dir, download, queries=queries, query_split=split,
                             max_queries=limit, seed=seed, parts=("queries",))
        return loaded["x_queries"]
    if queries is None:
        raise ValueError("Give --queries (the dataset is not a preset, so it has no default query set).")
    x, _ = load_dataset(queries, split or default_query_split(queries), data_dir=data_dir, download=download)
    x, _ = subset(x, None, limit, seed)
    return x


def check_labels(y: np.ndarray, num_classes: int, what: str) -> None:
    """A ValueError unless every label is in ``[0, num_classes)``."""
    if y.min() < 0:
        raise ValueError(f"{what} has no labels.")
    if y.max() >= num_classes:
        raise ValueError(
            f"{what} has labels up to {int(y.max())} but the model has {num_classes} classes: is this its dataset?"
        )


def apply_distribution(name: str | None):
    """Set up training on several accelerators; return the strategy to pass on (or None).

    * ``none``: one device.
    * ``mirrored``: ``tf.distribute.MirroredStrategy()`` over every visible
      GPU (TensorFlow backend); returned, to be passed as ``strategy=`` /
      ``distribute_strategy=``.
    * ``data-parallel``: ``keras.distribution.DataParallel()`` over every
      device, set globally with ``keras.distribution.set_distribution`` (JAX
      backend); every model built afterwards is replicated and every batch
      split, so None is returned.

    Batch sizes stay global: each of ``R`` replicas sees ``batch_size / R``.
    """
    import keras

    if name in (None, "none"):
        return None
    backend = keras.backend.backend()
    if name == "mirrored":
        if backend != "tensorflow":
            raise ValueError(f"--distribute mirrored needs KERAS_BACKEND=tensorflow; the backend is {backend}.")
        import tensorflow as tf

        return tf.distribute.MirroredStrategy()
    if name == "data-parallel":
        if backend != "jax":
            raise ValueError(f"--distribute data-parallel needs KERAS_BACKEND=jax; the backend is {backend}.")
        keras.distribution.set_distribution(keras.distribution.DataParallel())
        return None
    raise ValueError(f"--distribute must be one of {', '.join(DISTRIBUTIONS)}; got {name!r}.")


__all__ = [
    "DISTRIBUTIONS",
    "PRECISIONS",
    "add_clone_training_arguments",
    "add_common_data_arguments",
    "add_overwrite_argument",
    "apply_distribution",
    "atomic_output",
    "check_clone_training_arguments",
    "check_flags_at_least",
    "check_labels",
    "check_output_dir",
    "check_output_file",
    "is_preset",
    "load_labeled",
    "load_queries",
]
