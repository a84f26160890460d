"""Victim <- query-set pairs of the DCP paper, and offline ones for this machine.

A preset says what the victim is trained and tested on, and what natural
images the thief sends. The paper's pairs (Table 1 of arXiv 2309.01838):
CIFAR-10 <- CIFAR-100, CIFAR-100 <- CIFAR-10, SVHN <- CIFAR-10,
GTSRB <- CIFAR-10, CUB-200 <- a user-given set (the paper uses ImageNet-like
images; pass ``--queries``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from keras_dcp.data.images import match_shape
from keras_dcp.data.loaders import load_dataset


@dataclasses.dataclass(frozen=True)
class Preset:
    """One victim/query pairing.

    Attributes:
        name: preset name (``--dataset`` on the command line).
        victim: dataset name for :func:`load_dataset` (victim train and test).
        queries: dataset name of the thief's query images; None = the user
            must give one.
        input_shape: ``(H, W, C)`` every image is brought to.
        num_classes: victim classes K.
        train_split, test_split, query_split: split names.
        arch: default victim architecture (a :mod:`keras_dcp.models` name).
        flip: whether horizontal flips are a valid augmentation.
        description: one line for ``--help`` and the JSON.
    """

    name: str
    victim: str
    queries: str | None
    input_shape: tuple
    num_classes: int
    train_split: str = "train"
    test_split: str = "test"
    query_split: str = "train"
    arch: str = "resnet20"
    flip: bool = True
    description: str = ""


PRESETS = {
    preset.name: preset
    for preset in (
        Preset("cifar10", "cifar10", "cifar100", (32, 32, 3), 10,
               description="CIFAR-10 victim, CIFAR-100 train images as queries (paper)"),
        Preset("cifar100", "cifar100", "cifar10", (32, 32, 3), 100,
               description="CIFAR-100 victim, CIFAR-10 train images as queries (paper)"),
        Preset("svhn", "svhn_cropped", "cifar10", (32, 32, 3), 10, flip=False,
               description="SVHN victim, CIFAR-10 train images as queries (paper)"),
        Preset("gtsrb", "gtsrb", "cifar10", (32, 32, 3), 43, flip=False,
               description="GTSRB victim (official folder layout under --data-dir), CIFAR-10 queries (paper)"),
        Preset("cub200", "caltech_birds2011", None, (224, 224, 3), 200, arch="mobilenet_v2",
               description="CUB-200 victim, queries given by the user (--queries)"),
        Preset("cifar10-local", "shared:cifar10", "shared:tinyimagenet", (32, 32, 3), 10, query_split="queries",
               description="CIFAR-10 victim from ../shared/data/cifar10, Tiny-ImageNet queries "
                           "(../shared/data/tinyimagenet), as ImageNet in KnockoffNets"),
        Preset("digits", "digits", "sample-photos", (32, 32, 1), 10, arch="small_cnn", flip=False,
               description="scikit-learn digits victim; queries = natural-image crops of scikit-learn's "
                           "two sample photos in grayscale (the KnockoffNets setting); offline"),
        Preset("digits-indomain", "digits", "digits", (32, 32, 1), 10, query_split="query", arch="small_cnn",
               flip=False,
               description="scikit-learn digits victim; queries = the disjoint 'query' split of digits "
                           "(a thief with unlabeled in-domain images); offline"),
    )
}


def get_preset(name):
    """The :class:`Preset` called ``name`` (case-insensitive; ``_`` = ``-``)."""
    key = name.strip().lower().replace("_", "-")
    aliases = {"svhn-cropped": "svhn", "caltech-birds2011": "cub200", "cifar10-shared": "cifar10-local"}
    key = aliases.get(key, key)
    if key not in PRESETS:
        raise ValueError(f"Unknown preset {name!r}; choose from {', '.join(PRESETS)}.")
    return PRESETS[key]


def load_preset(name, data_dir=None, download=False, queries=None, query_split=None,
                max_train=None, max_test=None, max_queries=None, seed=0):
    """Load a preset's victim data and the thief's query images.

    Query images are brought to the victim's input shape
    (:func:`keras_dcp.data.match_shape`); their labels are dropped (a thief
    has none). ``max_*`` keep a seeded random subset, for quick runs.

    Args:
        name: a preset name (:data:`PRESETS`).
        data_dir: passed to :func:`load_dataset` for the victim and queries.
        download: allow tfds downloads.
        queries: override the query set (any :func:`load_dataset` name or path).
        query_split: override the query split.
        max_train, max_test, max_queries: optional caps.
        seed: seed of the subsets.

    Returns:
        dict with ``preset``, ``x_train``, ``y_train``, ``x_test``, ``y_test``
        (uint8 NHWC / int64) and ``x_queries`` (uint8 NHWC).
    """
    preset = get_preset(name)
    image_size = preset.input_shape[:2]
    resize = None if preset.victim.startswith(("digits", "shared:")) else image_size
    x_train, y_train = load_dataset(preset.victim, preset.train_split, data_dir=data_dir,
                                    download=download, image_size=resize)
    x_test, y_test = load_dataset(preset.victim, preset.test_split, data_dir=data_dir,
                                  download=download, image_size=resize)
    query_name = queries or preset.queries
    if query_name is None:
        raise ValueError(f"Preset {preset.name!r} has no default query set: pass queries=... (CLI: --queries).")
    split = query_split or (preset.query_split if queries is None else "train")
    x_queries, _ = load_dataset(query_name, split, data_dir=data_dir, download=download)
    rng = np.random.default_rng(seed)
    x_train, y_train = _subset(x_train, y_train, max_train, rng)
    x_test, y_test = _subset(x_test, y_test, max_test, rng)
    x_queries, _ = _subset(x_queries, None, max_queries, rng)
    return {
        "preset": preset,
        "x_train": match_shape(x_train, preset.input_shape),
        "y_train": y_train,
        "x_test": match_shape(x_test, preset.input_shape),
        "y_test": y_test,
        "x_queries": match_shape(x_queries, preset.input_shape),
    }


def _subset(x, y, limit, rng):
    if limit is None or limit >= len(x):
        return x, y
    rows = np.sort(rng.choice(len(x), size=int(limit), replace=False))
    return x[rows], (None if y is None else y[rows])
