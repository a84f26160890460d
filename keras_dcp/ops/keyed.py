r"""Keyed DCP: Deception plus secret, per-input label moves on the queries a thief sends most.

DCP keeps the top-1 label, so a thief who trains on labels only is not slowed
at all. This variant moves the label of some unsure queries, deterministically
per input and unpredictably without a secret key. From the logits ``z``:

.. math::

    y = \mathrm{softmax}(z), \qquad E(z) = \log \textstyle\sum_k e^{z_k}, \qquad
    u(x) = \mathrm{frac}(10^3\, W^\top \mathrm{vec}(x)) \in [0, 1)^2,

    y' = \begin{cases} \mathrm{swap}_{c, t}(D(y)) & u_1(x) < \rho\,[E(z) < E_0] \\
                        D(y) & \text{otherwise} \end{cases}

with ``D`` DCP, ``W`` a secret random projection (the key), ``c`` the top
class of ``D(y)`` and ``t`` drawn by ``u_2(x)`` uniformly among the other
``K - 1`` classes. The energy ``E`` (low on inputs unlike the training data)
separates a thief's natural-image queries from benign test images better than
the top probability (on our CIFAR-10 ResNet-20, at one point of benign
accuracy it moves about twice the share of Tiny-ImageNet queries: see
docs/results/adaptive.md). A moved row is DCP's answer with the values of its
top class and the target swapped, so it is still an exact DCP image (of the
swapped posterior) and inversion cannot tell it from an honest one. Repeating
a query returns the same answer (``u`` is a function of the input), so
averaging repeats gains nothing. ``E_0`` sets the benign cost
(:func:`keras_dcp.defenses.calibrate_energy_threshold`).
"""

from __future__ import annotations

from typing import Any

from keras import ops

from keras_dcp.ops.deception import deception
from keras_dcp.ops.rows import as_probabilities, first_argmax, is_empty

#: Scale of the projection before its fractional part is taken: neighbouring
#: images land on unrelated values of ``u``.
KEY_SCALE = 1000.0


def keyed_uniforms(x: Any, projection: Any):
    """``u = frac(1000 W^T vec(x))`` per row: ``(batch, ...) x (D, 2) -> (batch, 2)`` in ``[0, 1)``."""
    flat = ops.reshape(ops.cast(x, "float32"), (ops.shape(x)[0], -1))
    scaled = KEY_SCALE * ops.matmul(flat, ops.cast(projection, "float32"))
    return scaled - ops.floor(scaled)


def energy(logits: Any):
    """``E(z) = logsumexp_k z_k`` per row, ``(batch, K) -> (batch, 1)``."""
    return ops.logsumexp(ops.cast(logits, "float32"), axis=-1, keepdims=True)


def keyed_deception(
    logits: Any,
    uniforms: Any,
    beta: float = 0.7,
    gamma: float = 0.2,
    tau: float | None = None,
    nu: float | None = 1000.0,
    energy_threshold: float = float("-inf"),
    flip_rate: float = 1.0,
):
    """DCP of ``softmax(logits)``, then a keyed label move on the rows with ``E(z) < E_0`` that draw one.

    Args:
        logits: ``(batch, K)``.
        uniforms: ``(batch, 2)`` in ``[0, 1)``, per input (:func:`keyed_uniforms`).
        beta, gamma, tau, nu: DCP's.
        energy_threshold: ``E_0``; rows with a lower energy may move
            (``-inf``: none, plain DCP).
        flip_rate: ``rho``, the chance that such a row moves.

    Returns:
        ``(batch, K)`` float32 probabilities; rows DCP leaves alone and that do
        not move are ``softmax(z)`` bit for bit.

    >>> import numpy as np
    >>> z = np.array([[6.0, 0.0, -1.0], [0.4, 0.3, 0.1]], "float32")
    >>> out = np.asarray(keyed_deception(z, np.array([[0.1, 0.2], [0.1, 0.9]], "float32"), energy_threshold=2.0))
    >>> bool(np.allclose(out[0], np.exp(z[0]) / np.exp(z[0]).sum())), int(out[1].argmax())
    (True, 2)
    """
    z = ops.cast(as_probabilities(logits), "float32")
    if is_empty(z):
        return z
    num_classes = z.shape[-1]
    base = deception(ops.softmax(z, axis=-1), beta=beta, gamma=gamma, tau=tau, nu=nu)
    uniforms = ops.cast(uniforms, "float32")
    move = (uniforms[:, :1] < flip_rate) & (energy(z) < energy_threshold)
    top = first_argmax(base)
    order = ops.top_k(base, num_classes)[1][:, 1:]  # the other classes, most likely first
    pick = ops.cast(ops.minimum(ops.floor(uniforms[:, 1] * (num_classes - 1)), num_classes - 2), "int32")
    target = ops.take_along_axis(order, ops.expand_dims(pick, -1), axis=-1)[:, 0]
    top_mask = ops.one_hot(top, num_classes, dtype="float32")
    target_mask = ops.one_hot(target, num_classes, dtype="float32")
    top_value = ops.sum(base * top_mask, axis=-1, keepdims=True)
    target_value = ops.sum(base * target_mask, axis=-1, keepdims=True)
    swapped = base + (target_mask - top_mask) * (top_value - target_value)
    return ops.where(move, swapped, base)


__all__ = ["KEY_SCALE", "energy", "keyed_deception", "keyed_uniforms"]
