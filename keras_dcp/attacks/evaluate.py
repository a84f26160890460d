"""``evaluate_clone``: how well a stolen clone does, and what it cost."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from keras_dcp.attacks.blackbox import BlackBox


def _top1(probabilities):
    return np.argmax(np.asarray(probabilities), axis=1)


def _labels(y):
    y = np.asarray(y)
    return np.argmax(y, axis=1) if y.ndim == 2 else y.reshape(-1).astype("int64")


def evaluate_clone(
    clone: keras.Model,
    victim: BlackBox,
    x_test: np.ndarray,
    y_test: np.ndarray,
    undefended: Any = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Accuracy and fidelity of a clone, and the queries it cost.

    With ``c(x) = argmax_k clone(x)_k``, ``v(x)`` the defended victim's top-1
    and ``u(x)`` the undefended one's, over the ``n`` test images:

    .. math::

        \\text{attacker\\_accuracy} = \\tfrac1n \\sum_i [c(x_i) = y_i], \\quad
        \\text{agreement} = \\tfrac1n \\sum_i [c(x_i) = v(x_i)], \\quad
        \\text{agreement\\_undefended} = \\tfrac1n \\sum_i [c(x_i) = u(x_i)]

    The victim is asked through :meth:`BlackBox.answer_unmetered`: these evaluation queries
    neither count against the attack's budget nor appear in its log.

    Args:
        clone: a ``keras.Model`` returning ``(n, K)`` scores.
        victim: the (defended) :class:`~keras_dcp.attacks.BlackBox` the clone
            was stolen from.
        x_test: float32 ``(n, H, W, C)`` in the victim's input range.
        y_test: ``(n,)`` int labels (or one-hot ``(n, K)``).
        undefended: optional undefended victim (a ``BlackBox``, ``keras.Model``,
            path or callable) for ``agreement_undefended``.
        batch_size: clone prediction batch.

    Returns:
        dict with ``attacker_accuracy``, ``agreement``, ``agreement_undefended``
        (None without ``undefended``), ``victim_accuracy`` (the defended
        victim's own top-1 accuracy) and ``queries_used`` (``victim.queries_used``).
    """
    if not isinstance(victim, BlackBox):
        raise ValueError(f"`victim` must be a BlackBox; got {type(victim).__name__}.")
    x_test = np.asarray(x_test, dtype="float32")
    labels = _labels(y_test)
    if len(labels) != len(x_test):
        raise ValueError(f"`y_test` has {len(labels)} labels for {len(x_test)} images.")
    clone_top1 = _top1(keras.ops.convert_to_numpy(clone.predict(x_test, batch_size=batch_size, verbose=0)))
    victim_top1 = _top1(victim.answer_unmetered(x_test))
    report = {
        "attacker_accuracy": float(np.mean(clone_top1 == labels)),
        "agreement": float(np.mean(clone_top1 == victim_top1)),
        "agreement_undefended": None,
        "victim_accuracy": float(np.mean(victim_top1 == labels)),
        "queries_used": int(victim.queries_used),
    }
    if undefended is not None:
        reference = undefended if isinstance(undefended, BlackBox) else BlackBox(undefended, record=False)
        report["agreement_undefended"] = float(np.mean(clone_top1 == _top1(reference.answer_unmetered(x_test))))
    return report
