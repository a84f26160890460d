"""Small, seeded victims and data for the attack tests and examples (seconds on a CPU).

scikit-learn's bundled digits (1,797 8x8 images) upscaled to ``size x size``
and repeated to 3 channels, split into the victim's training set, the
attacker's query set and a test set.
"""

from __future__ import annotations

import functools

import keras
import numpy as np


@functools.lru_cache(maxsize=4)
def digits(size=16, seed=0):
    """``{"train": (x, y), "query": (x, y), "test": (x, y)}``: float32 NHWC in [0, 1], int64 labels.

    Splits 700 / 700 / 397 of the 1,797 digits (seeded shuffle). The query
    labels are only for adaptive-strategy arms; attacks never train on them.
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    scale = size // 8
    x = np.kron(data.images, np.ones((scale, scale))) / 16.0
    x = np.repeat(x[..., None], 3, axis=-1).astype("float32")
    y = data.target.astype("int64")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    return {
        "train": (x[:700], y[:700]),
        "query": (x[700:1400], y[700:1400]),
        "test": (x[1400:], y[1400:]),
    }


def make_mlp(input_shape=(16, 16, 3), num_classes=10, hidden=64):
    """An uncompiled MLP ``(n, H, W, C) -> (n, K)`` softmax: a fast victim or clone."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


def make_small_cnn(input_shape=(16, 16, 3), num_classes=10, width=8):
    """An uncompiled small CNN with batch norm, softmax output."""
    return keras.Sequential(
        [
            keras.Input(shape=input_shape),
            keras.layers.Conv2D(width, 3, padding="same", use_bias=False),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(2 * width, 3, padding="same", activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(num_classes, activation="softmax"),
        ]
    )


@functools.lru_cache(maxsize=4)
def digits_victim(size=16, epochs=30, seed=0):
    """An MLP trained on the digits training split (about 95% test accuracy)."""
    keras.utils.set_random_seed(seed)
    x, y = digits(size, seed)["train"]
    model = make_mlp(x.shape[1:], 10)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model
