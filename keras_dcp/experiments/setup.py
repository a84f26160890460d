"""What the ``evaluate``/``demo``/``train-victim`` commands share: reading data and specs."""

from __future__ import annotations

import numpy as np

from keras_dcp.data.images import match_shape
from keras_dcp.data.loaders import default_query_split, load_dataset
from keras_dcp.data.presets import PRESETS, get_preset
from keras_dcp.experiments.sweep import expand_sweep


def is_preset(name):
    """Whether ``name`` names a :data:`keras_dcp.data.PRESETS` entry."""
    try:
        get_preset(name)
    except ValueError:
        return False
    return True


def subset(x, y, limit, seed):
    """A seeded random subset of at most ``limit`` rows (all rows if ``limit`` is None)."""
    if limit is None or limit >= len(x):
        return x, y
    if limit < 1:
        raise ValueError(f"Subset size must be >= 1; got {limit}.")
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=int(limit), replace=False))
    return x[rows], (None if y is None else y[rows])


def load_victim_split(dataset, split, data_dir=None, download=False):
    """``(x, y, preset)``: a preset's victim split, or ``load_dataset(dataset, split)`` (preset None)."""
    if is_preset(dataset):
        preset = get_preset(dataset)
        resize = None if preset.victim.startswith(("digits", "shared:")) else preset.input_shape[:2]
        split_name = {"train": preset.train_split, "test": preset.test_split}.get(split, split)
        x, y = load_dataset(preset.victim, split_name, data_dir=data_dir, download=download, image_size=resize)
        return match_shape(x, preset.input_shape), y, preset
    x, y = load_dataset(dataset, split, data_dir=data_dir, download=download)
    return x, y, None


def load_query_images(queries, preset=None, split=None, data_dir=None, download=False):
    """The thief's images: ``queries`` (a dataset name or path), else the preset's default.

    Labels are dropped. Raises ValueError when neither is given.
    """
    if queries is None:
        if preset is None or preset.queries is None:
            where = f"preset {preset.name!r} has no default query set" if preset else "no preset"
            raise ValueError(f"Give --queries ({where}).")
        x, _ = load_dataset(preset.queries, split or preset.query_split, data_dir=data_dir, download=download)
        return x
    x, _ = load_dataset(queries, split or default_query_split(queries), data_dir=data_dir, download=download)
    return x


def defense_specs(defenses=None, sweeps=None, default=("none", "dcp")):
    """The defense settings to run: ``defenses`` plus every sweep's grid, ``none`` first, no repeats."""
    specs = list(defenses or [])
    for sweep in sweeps or []:
        specs.extend(expand_sweep(sweep))
    if not specs:
        specs = list(default)
    normalized = []
    for spec in ["none"] + specs:
        key = spec.strip()
        if key.lower() == "none":
            key = "none"
        if key not in normalized:
            normalized.append(key)
    return normalized


DISTRIBUTIONS = ("none", "mirrored", "data-parallel")


def apply_distribution(name):
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
    "PRESETS",
    "apply_distribution",
    "defense_specs",
    "is_preset",
    "load_query_images",
    "load_victim_split",
    "subset",
]
