"""Inverting the Deception defense: which posteriors could have produced an answer.

A thief who knows DCP and its parameters (the package is public, its defaults
are in the README) sees ``y' = N(g(y))`` on the rows the detector flags, with
the per-entry map

.. math::

    g(y) = y - \\beta\\left(\\sigma(\\gamma\\,\\mathrm{logit}(y)) - \\tfrac12\\right)

(:func:`keras_dcp.ops.reverse_sigmoid_noise`), and ``y`` itself on the rows it
leaves alone. ``g`` is not monotone: for ``beta = 0.7, gamma = 0.2`` it falls
from 0.347 at ``y = 0`` to 0.147 at ``y = 0.032``, then rises to 0.677 at
``y = 1``, so small and medium probabilities fold onto the same values. With
``S = sum_k g(y_k)`` unknown, each entry satisfies ``g(y_k) = S y'_k``: for a
given ``S`` it has up to two preimages (one per branch), and ``sum_k y_k = 1``
picks ``S``. Many branch assignments are consistent with one answer; a prior
picks among them (:func:`invert_deception`).

Rows are told apart without knowing ``y``: the defense moves mass off the top
class, so a flagged row has ``max y' < max y < tau``, and an untouched one
``max y' = max y >= tau``.
"""

from __future__ import annotations

import numpy as np

from keras_dcp.ops.rows import PROB_CEIL, PROB_FLOOR
from keras_dcp.validation import check_int, check_positive


class ReverseSigmoidMap:
    """``g(y) = y - r(y)`` of DCP with known ``beta, gamma``, and its two inverse branches, in float64.

    ``g`` falls on ``[0, y*]`` and rises on ``[y*, y^]`` (``y*`` where it is
    smallest, ``y^`` just below 1 where it peaks; :attr:`at_one` is ``g(y^)``). Both inverses are tabulated on a dense grid (log-spaced below
    ``y*``) and interpolated.

    >>> g = ReverseSigmoidMap(beta=0.7, gamma=0.2)
    >>> round(g.minimum, 3), round(float(g(np.array([0.0]))[0]), 3)
    (0.147, 0.347)
    >>> y = np.array([0.01, 0.3])
    >>> bool(np.allclose(g.falling_inverse(g(y[:1])), y[:1], rtol=1e-3)), bool(np.allclose(g.rising_inverse(g(y[1:])), y[1:]))
    (True, True)
    """

    def __init__(self, beta: float, gamma: float, points: int = 20000):
        self.beta = check_positive("beta", beta)
        self.gamma = check_positive("gamma", gamma)
        grid = np.unique(np.concatenate([np.logspace(-12, -0.5, points), np.linspace(0.0, 1.0, points)]))
        values = self(grid)
        lowest = int(np.argmin(values))
        # g rises from its minimum until just below 1, where the logit's blow-up
        # bends it down again (g(0.9) > g(1)); the rising branch stops at that
        # peak (flagged rows have every entry below tau <= 1 anyway).
        peak = lowest + int(np.argmax(values[lowest:]))
        self.argmin, self.minimum = float(grid[lowest]), float(values[lowest])
        self.at_zero, self.at_one = float(values[0]), float(values[peak])
        # Increasing x-arrays for np.interp: the falling branch reversed.
        self._fall_g, self._fall_y = values[: lowest + 1][::-1], grid[: lowest + 1][::-1]
        self._rise_g, self._rise_y = values[lowest : peak + 1], grid[lowest : peak + 1]

    def __call__(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, "float64")
        clipped = np.clip(y, PROB_FLOOR, PROB_CEIL)
        logit = np.log(clipped) - np.log1p(-clipped)
        return y - 0.5 * self.beta * np.tanh(0.5 * self.gamma * logit)

    #: Relative slack at the ends of each branch: answers arrive in float32,
    #: so a value that is g's minimum (an entry at y*, where both branches
    #: meet) can round just below it.
    SLACK = 1e-4

    def falling_inverse(self, c: np.ndarray) -> np.ndarray:
        """The preimage in ``[0, y*]`` of each value (NaN outside ``[g(y*), g(0)]``, up to :attr:`SLACK`)."""
        c = np.asarray(c, "float64")
        out = np.interp(c, self._fall_g, self._fall_y)
        inside = (c >= self.minimum * (1 - self.SLACK)) & (c <= self.at_zero * (1 + self.SLACK))
        return np.where(inside, out, np.nan)

    def rising_inverse(self, c: np.ndarray) -> np.ndarray:
        """The preimage in ``[y*, y^]`` of each value (NaN outside ``[g(y*), g(y^)]``, up to :attr:`SLACK`)."""
        c = np.asarray(c, "float64")
        out = np.interp(c, self._rise_g, self._rise_y)
        inside = (c >= self.minimum * (1 - self.SLACK)) & (c <= self.at_one * (1 + self.SLACK))
        return np.where(inside, out, np.nan)


def invert_deception(
    answers: np.ndarray,
    beta: float = 0.7,
    gamma: float = 0.2,
    tau: float | None = None,
    prior: np.ndarray | None = None,
    grid: int = 128,
) -> tuple[np.ndarray, np.ndarray]:
    """The posteriors closest to ``prior`` that DCP (``beta, gamma, tau``) maps to ``answers``.

    Rows with ``max y' >= tau`` were left alone and come back as they are. For
    a flagged row, each candidate branch assignment (the prior's: the falling
    branch where the prior is below ``y*``; and each one-entry switch of it)
    fixes ``y_k(S) = g_b^{-1}(S y'_k)``; ``S`` runs over a grid (quadratic
    spacing, dense at the low end) of its feasible range ``[g(y*) / min_k y'_k, g(1) / max_k y'_k]`` and the first
    sign change of ``sum_k y_k(S) - 1`` is refined by bisection. Among the
    roots with ``max y < tau``, the one with the smallest ``KL(prior || y)`` is
    kept. Given the true posterior as prior, the true posterior is recovered
    (to the tabulation's precision). A row with no root (an answer that is not
    an exact DCP image, e.g. from another defense, or a prior too far off)
    comes back unchanged and is marked unresolved.

    Args:
        answers: ``(n, K)`` defended probabilities.
        beta, gamma: DCP's noise parameters (known or estimated).
        tau: detector threshold (None: ``tau = beta``, DCP's default).
        prior: ``(n, K)`` the thief's belief about each posterior (a clone's
            prediction); None: the uniform distribution.
        grid: points of the ``S`` grid per row.

    Returns:
        ``(posteriors (n, K), resolved (n,) bool)``: the recovered rows (sum 1)
        and whether each flagged row had an exact preimage (untouched rows
        count as resolved).
    """
    answers = np.asarray(answers, "float64")
    if answers.ndim != 2 or answers.shape[1] < 2:
        raise ValueError(f"`answers` must be (n, K) probabilities with K >= 2; got shape {answers.shape}.")
    grid = check_int("grid", grid, minimum=8)
    tau = beta if tau is None else check_positive("tau", tau, maximum=1.0)
    n, num_classes = answers.shape
    prior = np.full_like(answers, 1.0 / num_classes) if prior is None else np.asarray(prior, "float64")
    if prior.shape != answers.shape:
        raise ValueError(f"`prior` must have the answers' shape {answers.shape}; got {prior.shape}.")
    g = ReverseSigmoidMap(beta, gamma)
    out = answers.copy()
    resolved = np.ones(n, bool)
    flagged = np.flatnonzero(answers.max(axis=1) < tau)
    for start in range(0, len(flagged), 512):
        rows = flagged[start : start + 512]
        recovered, ok = _invert_rows(answers[rows], prior[rows], g, tau, grid)
        out[rows] = np.where(ok[:, None], recovered, answers[rows])
        resolved[rows] = ok
    return out, resolved


def _roots_for_branches(answers, branch, g, s_grid, tau, max_roots=4):
    """Per row, the ``y`` with ``g(y_k) = S y'_k`` on the given branches and ``sum y = 1``: ``(roots, n, K)``.

    ``branch`` ``(n, K)`` bool: True takes the falling branch. ``T(S) = sum_k y_k``
    is scanned on ``s_grid`` ``(n, G)``; each of the first ``max_roots`` sign
    changes of ``T(S) - 1`` (it need not be monotone when both branches are
    used) is refined by bisection. NaN rows: no such root.
    """
    c = s_grid[..., None] * answers[:, None, :]
    y = np.where(branch[:, None, :], g.falling_inverse(c), g.rising_inverse(c))
    residual = np.sum(y, axis=-1) - 1.0
    finite = np.isfinite(residual)
    crossing = finite[:, :-1] & finite[:, 1:] & (np.sign(residual[:, :-1]) != np.sign(residual[:, 1:]))
    order = np.argsort(~crossing, axis=1, kind="stable")[:, :max_roots]  # crossing columns first, in S order
    rows = np.arange(len(answers))
    results = []
    for column in order.T:  # noqa: B007
        has_root = crossing[rows, column]
        lo, hi = s_grid[rows, column], s_grid[rows, column + 1]
        f_lo = residual[rows, column]
        for _ in range(30):
            mid = 0.5 * (lo + hi)
            c = mid[:, None] * answers
            f_mid = np.sum(np.where(branch, g.falling_inverse(c), g.rising_inverse(c)), axis=-1) - 1.0
            go_left = np.sign(f_mid) != np.sign(f_lo)
            hi, lo = np.where(go_left, mid, hi), np.where(go_left, lo, mid)
            f_lo = np.where(go_left, f_lo, f_mid)
        c = (0.5 * (lo + hi))[:, None] * answers
        found = np.where(branch, g.falling_inverse(c), g.rising_inverse(c))
        valid = has_root & np.all(np.isfinite(found), axis=1)
        valid &= np.where(valid, np.nanmax(np.where(np.isfinite(found), found, 0.0), axis=1), 1.0) < tau + 1e-3
        found = found / np.sum(found, axis=1, keepdims=True)
        results.append(np.where(valid[:, None], found, np.nan))
    return np.stack(results)


def _invert_rows(answers, prior, g, tau, grid):
    """:func:`invert_deception` for a block of flagged rows.

    Candidate branch assignments: the prior's own (falling where the prior is
    below ``y*``, where ``g`` turns), and each of those with one entry
    switched; every candidate that has a root is scored by ``KL(prior || y)``.
    """
    smallest = np.maximum(answers.min(axis=1), 1e-300)
    low = g.minimum * (1 - g.SLACK) / smallest
    high = np.maximum(g.at_one * (1 + g.SLACK) / answers.max(axis=1), low * (1 + 1e-9))
    # Quadratic spacing: near the low end an entry's value approaches g's
    # minimum, where both preimages move like sqrt(S - S_low); in t = sqrt(.)
    # they move linearly, so a uniform t grid resolves them.
    fractions = np.linspace(0.0, 1.0, grid) ** 2
    s_grid = low[:, None] + fractions[None, :] * (high - low)[:, None]
    base = prior < g.argmin
    candidates = [base] + [base ^ (np.arange(answers.shape[1]) == k)[None, :] for k in range(answers.shape[1])]
    log_prior = np.log(np.maximum(prior, 1e-12))
    best = np.full(answers.shape, np.nan)
    best_score = np.full(len(answers), np.inf)
    for branch in candidates:
        for y in _roots_for_branches(answers, branch, g, s_grid, tau):
            score = np.sum(prior * (log_prior - np.log(np.maximum(y, 1e-12))), axis=1)
            better = np.isfinite(score) & (score < best_score)
            best[better], best_score[better] = y[better], score[better]
    ok = np.isfinite(best_score)
    return np.where(ok[:, None], best, answers), ok


__all__ = ["ReverseSigmoidMap", "invert_deception"]
