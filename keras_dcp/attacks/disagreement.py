"""The disagreement losses of MAZE (KL) and DFME (l1 of recovered logits), per sample.

Each takes ``xp``, the array namespace to compute with: ``numpy`` for the
generator's objective on the victim's answers (float64), ``keras.ops`` inside
the clone's training step (any backend). Probabilities are clamped to at least
``floor`` before any log: a defended answer can hold exact zeros (top-k,
rounding, DCP's ``max(., 0)``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Default clamp of probabilities before a log.
PROBABILITY_FLOOR = 1e-8


def centered_log(p: Any, floor: float = PROBABILITY_FLOOR, xp: Any = np):
    """Logits recovered from probabilities: ``l = log(max(p, floor)) - mean_k log(max(p, floor))``.

    Softmax forgets a per-row constant, so these are the logits up to that
    constant (exactly, where no entry was clamped). ``(n, K) -> (n, K)``.

    >>> logits = np.array([[2.0, -1.0, 0.5]])
    >>> p = np.exp(logits) / np.exp(logits).sum()
    >>> np.allclose(centered_log(p), logits - logits.mean())
    True
    """
    log_p = xp.log(xp.maximum(p, floor))
    return log_p - xp.mean(log_p, axis=-1, keepdims=True)


def kl_per_sample(teacher: Any, student: Any, floor: float = PROBABILITY_FLOOR, xp: Any = np):
    """``KL(t || s) = sum_k t_k (log t_k - log s_k)`` per row, logs of clamped values. ``(n, K) -> (n,)``.

    >>> kl_per_sample(np.array([[1.0, 0.0]]), np.array([[0.8, 0.2]])).round(4).tolist()
    [0.2231]
    """
    return xp.sum(teacher * (xp.log(xp.maximum(teacher, floor)) - xp.log(xp.maximum(student, floor))), axis=-1)


def l1_logits_per_sample(teacher: Any, student: Any, floor: float = PROBABILITY_FLOOR, xp: Any = np):
    """``mean_k |l(s)_k - l(t)_k|`` with ``l`` = :func:`centered_log`, per row. ``(n, K) -> (n,)``."""
    diff = centered_log(student, floor, xp) - centered_log(teacher, floor, xp)
    return xp.mean(xp.abs(diff), axis=-1)


__all__ = ["PROBABILITY_FLOOR", "centered_log", "kl_per_sample", "l1_logits_per_sample"]
