"""Zeroth-order gradient estimation: a black box's gradient from forward differences.

MAZE and DFME need the gradient of a disagreement ``f(x)`` that goes through
the victim, which only answers queries; they estimate it from extra queries
along random unit directions (:func:`zeroth_order_gradient`).
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def unit_directions(rng: np.random.Generator, batch: int, num_directions: int, shape: tuple[int, ...]) -> np.ndarray:
    """``u`` of shape ``(batch, m, *shape)``, uniform on the unit sphere of ``R^d`` (``d = prod(shape)``).

    Gaussian samples divided by their norm (the references' method).

    >>> u = unit_directions(np.random.default_rng(0), 2, 3, (4,))
    >>> u.shape, np.allclose(np.linalg.norm(u, axis=-1), 1.0)
    ((2, 3, 4), True)
    """
    dim = int(np.prod(shape))
    u = rng.standard_normal((batch, num_directions, dim)).astype("float32")
    u /= np.linalg.norm(u, axis=2, keepdims=True)
    return u.reshape(batch, num_directions, *shape)


def zeroth_order_gradient(
    objective: Callable, x: np.ndarray, num_directions: int, smoothing: float, rng: np.random.Generator
):
    """Forward-difference estimate of each row's gradient ``grad_x f(x_i)``.

    .. math::

        \\hat g_i = \\frac{d}{m} \\sum_{j=1}^{m}
            \\frac{f(x_i + \\mu u_{ij}) - f(x_i)}{\\mu}\\, u_{ij},
        \\qquad u_{ij} \\sim \\mathcal U(S^{d-1})

    with ``d`` the size of one row. ``E[d (u . g) u] = g`` for unit ``u``, so
    ``g_hat`` is unbiased up to ``O(mu)``; its cosine with the true gradient
    is about ``sqrt(m / (m + d))``.

    Args:
        objective: ``points (n (m + 1), *shape) -> (n (m + 1),)`` per-point
            values; called once, with the ``n`` base points first and then each
            row's ``m`` perturbed points (row-major: point ``i`` then its ``m``).
            This is where the (metered) victim is queried. It may return
            ``(values, extra)``; ``extra`` is passed back.
        x: base points ``(n, *shape)``.
        num_directions: ``m``.
        smoothing: ``mu``.
        rng: a ``numpy.random.Generator``.

    Returns:
        ``(g_hat (n, *shape), f(x) (n,), extra)`` (``extra`` None when the
        objective returns values only).
    """
    x = np.asarray(x, dtype="float32")
    n, shape = x.shape[0], x.shape[1:]
    dim = int(np.prod(shape))
    u = unit_directions(rng, n, num_directions, shape)
    perturbed = (x[:, None] + smoothing * u).reshape(n * num_directions, *shape)
    result = objective(np.concatenate([x, perturbed], axis=0))
    values, extra = result if isinstance(result, tuple) else (result, None)
    values = np.asarray(values, dtype="float64")
    base = values[:n]
    moved = values[n:].reshape(n, num_directions)
    slopes = (moved - base[:, None]) / smoothing
    gradient = (dim / num_directions) * np.einsum("nm,nm...->n...", slopes, u.astype("float64"))
    return gradient.astype("float32"), base, extra


__all__ = ["unit_directions", "zeroth_order_gradient"]
