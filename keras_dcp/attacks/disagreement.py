"""The disagreement losses of MAZE (KL) and DFME (l1 of logits), per sample, and the clone's logits.

Each takes ``xp``, the array namespace to compute with: ``numpy`` for the
generator's objective on the victim's answers (float64), ``keras.ops`` inside
the clone's training step (any backend). Probabilities are clamped to at least
``floor`` before any log: a defended answer can hold exact zeros (top-k,
rounding, DCP's ``max(., 0)``).

The victim is a black box that returns probabilities, but the clone is ours:
as in the reference code, the clone's side of both losses is computed from its
raw logits (:func:`logits_model`) where it has them, so no clone entry loses
its gradient to a floor.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Default clamp of probabilities before a log.
PROBABILITY_FLOOR = 1e-8

#: DFME's clamp of the victim's probabilities: float32-safe (its smallest normal is 1.2e-38) and far
#: below any answer a float32 softmax gives short of underflow, where 1e-8 clamped 8-15% of entries.
VICTIM_FLOOR = 1e-30


def logits_model(model):
    """The model's logits, when it is a functional model ending in a ``Softmax`` layer; else None.

    ``keras.Model(model.inputs, softmax_layer.input)`` shares every layer and
    variable with ``model``: training it trains ``model``. Every zoo model
    (:mod:`keras_dcp.models`) ends in such a layer (named ``probabilities``).
    """
    import keras

    layers = getattr(model, "layers", None)
    if not layers or not isinstance(layers[-1], keras.layers.Softmax):
        return None
    try:
        return keras.Model(model.inputs, layers[-1].input, name=f"{model.name}_logits")
    except (AttributeError, ValueError, TypeError):  # not a graph of layers (subclassed, several inputs...)
        return None


def log_softmax(logits: Any, xp: Any = np):
    """``log softmax(s) = s - max s - log sum_k exp(s_k - max s)``, row-wise. ``(n, K) -> (n, K)``.

    >>> np.allclose(np.exp(log_softmax(np.array([[1.0, 2.0, 3.0]]))).sum(), 1.0)
    True
    """
    shifted = logits - xp.max(logits, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


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
    """``mean_k |l(s)_k - l(t)_k|`` with ``l`` = :func:`centered_log`, per row. ``(n, K) -> (n,)``.

    Both sides probabilities (the fallback for a clone without logits).
    """
    diff = centered_log(student, floor, xp) - centered_log(teacher, floor, xp)
    return xp.mean(xp.abs(diff), axis=-1)


def l1_to_logits_per_sample(teacher: Any, student_logits: Any, floor: float = VICTIM_FLOOR, xp: Any = np):
    """DFME's loss: ``mean_k |s_k - l(t)_k|``, ``s`` the clone's raw logits, ``l`` = :func:`centered_log`. ``(n,)``.

    The reference (``no_logits=1, logit_correction='mean'``): the victim's
    log-probabilities centred per row against the student's logits as they are.

    >>> t = np.array([[0.7, 0.2, 0.1]])
    >>> np.allclose(l1_to_logits_per_sample(t, centered_log(t)), 0.0)
    True
    """
    return xp.mean(xp.abs(student_logits - centered_log(teacher, floor, xp)), axis=-1)


def kl_to_logits_per_sample(teacher: Any, student_logits: Any, floor: float = PROBABILITY_FLOOR, xp: Any = np):
    """MAZE's loss with the clone's logits: ``sum_k t_k (log t_k - log softmax(s)_k)``. ``(n,)``.

    The reference's ``kl_div_logits`` (log-softmax of the clone's logits, no
    clamp on the clone's side); :func:`kl_per_sample` of the same rows.
    """
    return xp.sum(teacher * (xp.log(xp.maximum(teacher, floor)) - log_softmax(student_logits, xp)), axis=-1)


__all__ = [
    "PROBABILITY_FLOOR",
    "VICTIM_FLOOR",
    "centered_log",
    "kl_per_sample",
    "kl_to_logits_per_sample",
    "l1_logits_per_sample",
    "l1_to_logits_per_sample",
    "log_softmax",
    "logits_model",
]
