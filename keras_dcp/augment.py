"""The one image augmenter: random crop after zero padding, and horizontal flips.

Used to train victims (:mod:`keras_dcp.training`) and clones
(:class:`keras_dcp.attacks.KnockoffNets` with ``augment=True``). Zero padding,
not reflection: it is torchvision's ``RandomCrop(32, padding=4)`` default
(``fill=0``), the transform of the KnockoffNets, DCP and MAZE reference code
and of the usual CIFAR ResNet recipe, so our victims and clones train on what
the papers' did.
"""

from __future__ import annotations

import math

import keras
import numpy as np


def random_crop_flip(x: np.ndarray, rng: np.random.Generator, pad: int = 4, flip: bool = True) -> np.ndarray:
    """Random crop after zero padding, and random horizontal flip, in NumPy.

    For each image ``x_i`` of shape ``(H, W, C)``: pad ``pad`` pixels of zeros
    on every side, cut a random ``H x W`` window (offsets uniform in
    ``[0, 2 pad]``), and mirror it left-right with probability 1/2 if
    ``flip``. Shapes: ``(n, H, W, C) -> (n, H, W, C)``, same dtype.

    >>> out = random_crop_flip(np.ones((2, 4, 4, 1), "float32"), np.random.default_rng(0), pad=1)
    >>> out.shape, set(np.unique(out)) <= {0.0, 1.0}
    ((2, 4, 4, 1), True)

    Args:
        x: a batch of images, NHWC.
        rng: a ``numpy.random.Generator`` (seeded by the caller).
        pad: padding in pixels, >= 0.
        flip: also flip horizontally (off for digits, text and signs).
    """
    n, height, width = x.shape[:3]
    out = x
    if pad > 0:
        padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        top = rng.integers(0, 2 * pad + 1, size=n)
        left = rng.integers(0, 2 * pad + 1, size=n)
        rows = top[:, None] + np.arange(height)[None, :]
        cols = left[:, None] + np.arange(width)[None, :]
        out = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    if flip:
        mirrored = rng.random(n) < 0.5
        out = out.copy() if out is x else out
        out[mirrored] = out[mirrored, :, ::-1]
    return out


class AugmentedBatches(keras.utils.PyDataset):
    """Shuffled ``(x, y)`` batches through :func:`random_crop_flip` (pad 4, flips), a new order each epoch.

    One generator seeded by ``seed`` draws the orders and the crops, so a run repeats.
    """

    def __init__(self, x, y, batch_size, seed, **kwargs):
        super().__init__(**kwargs)
        self.x, self.y, self.batch_size = x, y, batch_size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x))

    def __len__(self):
        return math.ceil(len(self.x) / self.batch_size)

    def __getitem__(self, index):
        ids = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        return random_crop_flip(self.x[ids], self._rng, pad=4, flip=True), self.y[ids]

    def on_epoch_end(self):
        self._order = self._rng.permutation(len(self.x))


def random_crop_flip_jax(key, x, pad: int = 4, flip: bool = True):
    """:func:`random_crop_flip` in JAX, for training on the device (:mod:`keras_dcp.attacks.vectorized`).

    The same transform and distribution (zero padding by ``pad``, window
    offsets uniform in ``[0, 2 pad]``, a mirror with probability 1/2), drawn
    from the JAX key ``key`` instead of a NumPy generator, so it runs inside
    ``jax.jit`` / ``jax.vmap``. ``(n, H, W, C) -> (n, H, W, C)``, same dtype.

    >>> import jax, jax.numpy as jnp
    >>> out = random_crop_flip_jax(jax.random.PRNGKey(0), jnp.ones((2, 4, 4, 1)), pad=1)
    >>> out.shape, set(np.unique(np.asarray(out)).tolist()) <= {0.0, 1.0}
    ((2, 4, 4, 1), True)
    """
    import jax
    import jax.numpy as jnp

    n, height, width, channels = x.shape
    crop_key, flip_key = jax.random.split(key)
    out = x
    if pad > 0:
        padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        offsets = jax.random.randint(crop_key, (n, 2), 0, 2 * pad + 1)

        def cut(image, offset):
            return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

        out = jax.vmap(cut)(padded, offsets)
    if flip:
        mirrored = jax.random.bernoulli(flip_key, 0.5, (n,))
        out = jnp.where(mirrored[:, None, None, None], out[:, :, ::-1], out)
    return out


__all__ = ["AugmentedBatches", "random_crop_flip", "random_crop_flip_jax"]
