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
from keras_dcp.data.loaders import default_query_split, load_dataset
from keras_dcp.validation import check_int


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


#: What :func:`load_preset` can load.
PRESET_PARTS = ("train", "test", "queries")


def subset(x, y, limit, seed):
    """A seeded random subset of at most ``limit`` rows, in their original order (all rows if ``limit`` is None).

    ``y`` may be None. The same ``(limit, seed)`` picks the same rows of the same array.
    """
    if limit is None or limit >= len(x):
        return x, y
    limit = check_int("limit", limit, minimum=1)
    rows = np.sort(np.random.default_rng(seed).choice(len(x), size=limit, replace=False))
    return x[rows], (None if y is None else y[rows])


def load_preset(
    name: str,
    data_dir: str | None = None,
    download: bool = False,
    queries: str | None = None,
    query_split: str | None = None,
    max_train: int | None = None,
    max_test: int | None = None,
    max_queries: int | None = None,
    seed: int = 0,
    parts: tuple[str, ...] = PRESET_PARTS,
    train_split: str | None = None,
    test_split: str | None = None,
) -> dict:
    """Load a preset's victim data and the thief's query images (the CLI's one way to read a preset).

    Images are brought to the preset's input shape
    (:func:`keras_dcp.data.match_shape`); query labels are dropped (a thief
    has none). ``max_*`` keep a seeded random subset (:func:`subset`, each
    part with ``seed``), for quick runs. Only the ``parts`` asked for are
    read, so evaluating on a test split never loads the training set.

    Args:
        name: a preset name (:data:`PRESETS`).
        data_dir: passed to :func:`load_dataset` for the victim and queries.
        download: allow tfds downloads.
        queries: override the query set (any :func:`load_dataset` name or path).
        query_split: override the query split.
        max_train, max_test, max_queries: optional caps.
        seed: seed of the subsets.
        parts: which of ``"train"``, ``"test"``, ``"queries"`` to load.
        train_split, test_split: override the preset's split names.

    Returns:
        dict with ``preset`` and, per part asked for, ``x_train``, ``y_train``,
        ``x_test``, ``y_test`` (uint8 NHWC / int64) or ``x_queries`` (uint8 NHWC).
    """
    preset = get_preset(name)
    unknown = sorted(set(parts) - set(PRESET_PARTS))
    if unknown:
        raise ValueError(f"`parts` must be among {', '.join(PRESET_PARTS)}; got {', '.join(unknown)}.")
    image_size = preset.input_shape[:2]
    resize = None if preset.victim.startswith(("digits", "shared:")) else image_size
    out = {"preset": preset}
    for part, split, limit in (
        ("train", train_split or preset.train_split, max_train),
        ("test", test_split or preset.test_split, max_test),
    ):
        if part in parts:
            x, y = load_dataset(preset.victim, split, data_dir=data_dir, download=download, image_size=resize)
            x, y = subset(x, y, limit, seed)
            out[f"x_{part}"], out[f"y_{part}"] = match_shape(x, preset.input_shape), y
    if "queries" in parts:
        query_name = queries or preset.queries
        if query_name is None:
            raise ValueError(f"Preset {preset.name!r} has no default query set: pass queries=... (CLI: --queries).")
        if query_split is None:
            query_split = preset.query_split if queries is None else default_query_split(queries)
        x_queries, _ = load_dataset(query_name, query_split, data_dir=data_dir, download=download)
        x_queries, _ = subset(x_queries, None, max_queries, seed)
        out["x_queries"] = match_shape(x_queries, preset.input_shape)
    return out
