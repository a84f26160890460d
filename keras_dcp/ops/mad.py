"""MAD, Prediction Poisoning (Orekondy et al., ICLR 2020): the angular-deviation defense.

For a query ``x`` with answer ``y``, the defender imagines the thief training a
model ``F`` on ``(x, y)``: one SGD step moves its parameters along
``-G^T y``, where ``G`` (``K x D``) holds the gradients
``G_k = d log F(x)_k / d theta`` of a *surrogate* of the thief's model. MAD
answers instead ``y~``, as close to ``y`` as a budget allows and pointing that
step as far away as possible:

.. math::

    A(v) = \\left\\lVert \\frac{G^T v}{\\lVert G^T v \\rVert}
                      - \\frac{G^T y}{\\lVert G^T y \\rVert} \\right\\rVert, \\qquad
    y^* = \\arg\\max_{v \\in \\text{vertices}} A(v), \\qquad
    \\tilde y = (1 - a)\\,y + a\\,y^*, \\quad
    a = \\min\\left(1, \\frac{\\epsilon}{\\lVert y^* - y \\rVert_1}\\right)

(the reference's ``oracle=extreme``/``argmax`` with ``objmax=True`` and the
closed-form line search, l1 budget ``epsilon``). The reference code takes
``theta`` = the surrogate's last-layer weights ``W`` (logits ``z = W h + b``).
There ``d log p_k / dW = (e_k - p) h^T`` with ``p = softmax(z)``, so for every
distribution ``v``, ``G^T v = (v - p) h^T`` and ``lVert G^T v rVert =
lVert v - p rVert lVert h rVert``: the objective needs only the surrogate's
probabilities,

.. math::

    A(v) = \\left\\lVert \\frac{v - p}{\\lVert v - p \\rVert}
                      - \\frac{y - p}{\\lVert y - p \\rVert} \\right\\rVert,

batched, in-graph, with no gradient at all (:func:`mad`). :func:`mad_from_jacobian`
evaluates the same search on any ``G`` (what ``keras_dcp.MAD(objective="jacobian")``
computes per query with autodiff, for comparison).

Vertices: the one-hot vectors ``e_k`` (MAD); with ``preserve_top1``
(MAD-argmax) the uniform distributions over class sets ``S`` that hold the
top class ``c`` of ``y``, with ``c`` raised by ``1e-5`` before normalising so
it stays the strict winner; every ``S`` when ``K <= 10``
(``2^(K-1)`` candidates), else the reference's greedy growth of ``S`` (add
the class that scores best, keep the best set seen) over its budget of 1024
evaluated candidates. The mix of ``y`` and such a ``y*`` keeps ``argmax y``.

Divisions are guarded: a direction of norm below ``NORM_FLOOR`` (``y = p``,
as when the victim is its own surrogate, or ``e_k = p``) counts as the zero
vector, and a vertex equal to ``y`` gets ``a = 0``. Rows that are not
distributions, NaN rows and empty batches follow the :mod:`keras_dcp.ops`
conventions (a NaN in the surrogate's row also gives a NaN row).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
from keras import ops

from keras_dcp.ops.deception import limit_l1
from keras_dcp.ops.rows import as_probabilities, first_argmax, is_empty, reference_rows, restore_nan

#: A direction shorter than this (in l2) is taken as zero: float32 noise, not a direction.
NORM_FLOOR = 1e-6
#: Up to this many classes MAD-argmax tries every class set (the reference's exhaustive search).
EXHAUSTIVE_MAX_CLASSES = 10
#: Candidates the greedy MAD-argmax search evaluates (the reference's ``max_iters``).
GREEDY_CANDIDATES = 1024
#: How much the top class is raised in MAD-argmax vertices so it stays the strict winner.
TOP1_LIFT = 1e-5


def unit_rows(v: Any, floor: float = NORM_FLOOR):
    """``v / ||v||_2`` along the last axis; ``0`` where ``||v|| <= floor``. Any shape ``(..., n)``."""
    norm = ops.sqrt(ops.sum(v * v, axis=-1, keepdims=True))
    long_enough = norm > floor
    return ops.where(long_enough, v / ops.where(long_enough, norm, ops.ones_like(norm)), 0.0)


def _row_norm(v):
    return ops.sqrt(ops.sum(v * v, axis=-1))


def mad_objective(targets: Any, y: Any, surrogate_probs: Any):
    """The closed-form angular deviation ``A(v)`` of each candidate ``v``.

    .. math::

        A(v) = \\left\\lVert \\frac{v - p}{\\lVert v - p \\rVert}
                          - \\frac{y - p}{\\lVert y - p \\rVert} \\right\\rVert \\in [0, 2]

    Shapes: ``targets (batch, M, K)`` (or ``(1, M, K)``), ``y (batch, K)``,
    ``surrogate_probs (batch, K)`` -> ``(batch, M)``, float32.

    >>> import numpy as np
    >>> y = np.array([[0.7, 0.2, 0.1]], "float32")
    >>> p = np.array([[0.4, 0.3, 0.3]], "float32")
    >>> np.asarray(mad_objective(np.eye(3, dtype="float32")[None], y, p)).astype(float).round(3).tolist()
    [[0.19, 1.676, 1.852]]
    """
    y = ops.cast(y, "float32")
    p = ops.cast(surrogate_probs, "float32")
    anchor = unit_rows(y - p)[:, None, :]
    return _row_norm(unit_rows(ops.cast(targets, "float32") - p[:, None, :]) - anchor)


def jacobian_objective(targets: Any, y: Any, jacobian: Any, floor: float = 1e-12):
    """The angular deviation from a Jacobian: ``|| G^T v/||G^T v|| - G^T y/||G^T y|| ||``.

    ``jacobian`` holds ``G`` per row, shape ``(batch, K, D)``: ``G[b, k]`` is
    the gradient of ``log p_k`` (or of ``-log p_k``: the sign cancels) at
    query ``b`` with respect to ``D`` parameters. With last-layer gradients it
    equals :func:`mad_objective`. Shapes: ``targets (batch, M, K)``,
    ``y (batch, K)`` -> ``(batch, M)``, float32.
    """
    g = ops.cast(jacobian, "float32")
    y = ops.cast(y, "float32")
    anchor = unit_rows(ops.einsum("bk,bkd->bd", y, g), floor)[:, None, :]
    targets = ops.cast(targets, "float32") + ops.zeros_like(y)[:, None, :]  # broadcast to the batch
    return _row_norm(unit_rows(ops.einsum("bmk,bkd->bmd", targets, g), floor) - anchor)


def _pick(scores, candidates):
    """The candidate with the first highest score per row: ``(batch, M), (batch, M, K) -> (batch, K)``."""
    chosen = ops.one_hot(first_argmax(scores), scores.shape[-1], dtype="float32")
    return ops.sum(chosen[:, :, None] * candidates, axis=1)


def _lifted(masks, top):
    """Class-set masks ``(batch, M, K)`` -> uniform distributions with the top class raised by ``TOP1_LIFT``."""
    v = masks + TOP1_LIFT * top[:, None, :]
    return v / ops.sum(v, axis=-1, keepdims=True)


def _subset_table(num_classes):
    """``T[c, m] =`` the ``m``-th class set containing ``c`` (numpy, ``(K, 2^(K-1), K)``)."""
    others = np.array(list(itertools.product([0.0, 1.0], repeat=num_classes - 1)), "float32")
    table = np.zeros((num_classes, len(others), num_classes), "float32")
    for c in range(num_classes):
        rest = [k for k in range(num_classes) if k != c]
        table[c, :, c] = 1.0
        table[c][:, rest] = others
    return table


def greedy_steps(num_classes: int, budget: int = GREEDY_CANDIDATES) -> int:
    """How many classes the greedy MAD-argmax search adds: until ``budget`` candidates were scored."""
    steps, scored = 0, 0
    while scored < budget and steps < num_classes - 1:
        scored += num_classes - 1 - steps
        steps += 1
    return steps


def mad_target(y: Any, score: Callable[[Any], Any], preserve_top1: bool = False):
    """The vertex ``y*`` of highest ``score`` per row (MAD's oracle), float32 ``(batch, K)``.

    ``score`` maps candidates ``(batch, M, K)`` to ``(batch, M)`` (e.g.
    ``lambda v: mad_objective(v, y, p)``); ties go to the first candidate.
    With ``preserve_top1``, candidates keep ``argmax y`` (see the module docstring).
    """
    y = ops.cast(y, "float32")
    num_classes = y.shape[-1]
    eye = ops.convert_to_tensor(np.eye(num_classes, dtype="float32"))
    if not preserve_top1:
        vertices = eye[None] + ops.zeros_like(y)[:, None, :]
        return _pick(score(vertices), vertices)
    top = ops.one_hot(first_argmax(y), num_classes, dtype="float32")
    if num_classes <= EXHAUSTIVE_MAX_CLASSES:
        table = _subset_table(num_classes)
        flat = ops.convert_to_tensor(table.reshape(num_classes, -1))
        masks = ops.reshape(ops.matmul(top, flat), (-1, table.shape[1], num_classes))
        vertices = _lifted(masks, top)
        return _pick(score(vertices), vertices)
    fixed, best, best_score = top, _lifted(top[:, None, :], top)[:, 0, :], None
    for _ in range(greedy_steps(num_classes)):
        vertices = _lifted(fixed[:, None, :] + eye[None] * (1.0 - fixed)[:, :, None], top)
        scores = ops.where(fixed > 0.0, float("-inf"), score(vertices))
        value = ops.max(scores, axis=-1, keepdims=True)
        chosen = _pick(scores, vertices)
        if best_score is None:
            best, best_score = chosen, value
        else:
            improved = value > best_score
            best, best_score = ops.where(improved, chosen, best), ops.where(improved, value, best_score)
        fixed = fixed + ops.one_hot(first_argmax(scores), num_classes, dtype="float32")
    return best


def _defend(y, eps, preserve_top1, make_score, other_total):
    """Shared body: conventions, target search, l1 line search, top-1 guard in the output dtype."""
    y = as_probabilities(y)
    if is_empty(y):
        return y
    dtype = ops.dtype(y)
    y32 = ops.cast(y, "float32")
    total, valid, reference = reference_rows(y32)
    target = mad_target(reference, make_score(reference), preserve_top1)
    moved = limit_l1(reference, target, eps)
    out = ops.cast(moved, dtype)
    # Rows that do not move (eps = 0, or y already the vertex) are the caller's own, bit for bit.
    still = ops.max(ops.abs(moved - reference), axis=-1, keepdims=True) <= 0.0
    out = ops.where(still & valid, y, out)
    if preserve_top1:
        # The mix keeps the winner in float32; a narrow dtype (float16) could tie it.
        fallback = ops.where(valid, y, ops.cast(reference, dtype))
        kept = ops.expand_dims(first_argmax(out) == first_argmax(fallback), -1)
        out = ops.where(kept, out, fallback)
    return restore_nan(total + other_total, out)


def _check_classes(y, other, what):
    if y.shape[-1] is not None and other.shape[1] is not None and other.shape[1] != y.shape[-1]:
        raise ValueError(f"MAD: y has {y.shape[-1]} classes but the {what} has {other.shape[1]}.")


def mad(y: Any, surrogate_probs: Any, eps: float = 0.5, preserve_top1: bool = False):
    """MAD in closed form: ``y~ = (1 - a) y + a y*`` with the vertex ``y*`` of largest deviation.

    .. math::

        y^* = \\arg\\max_v \\left\\lVert \\frac{v - p}{\\lVert v - p \\rVert}
              - \\frac{y - p}{\\lVert y - p \\rVert} \\right\\rVert, \\qquad
        a = \\min\\left(1, \\frac{\\epsilon}{\\lVert y^* - y \\rVert_1}\\right)

    with ``p`` the surrogate's probabilities at the same query (module
    docstring). ``lVert y~ - y rVert_1 <= eps``; every answer is a
    distribution.

    >>> import numpy as np
    >>> y = np.array([[0.7, 0.2, 0.1]], "float32")
    >>> p = np.array([[0.4, 0.3, 0.3]], "float32")
    >>> np.asarray(mad(y, p, eps=0.4)).astype(float).round(3).tolist()
    [[0.544, 0.156, 0.3]]
    >>> np.asarray(mad(y, p, eps=0.4, preserve_top1=True)).astype(float).round(3).tolist()
    [[0.5, 0.273, 0.227]]

    Args:
        y: the victim's probabilities, shape ``(batch, K)``, any float dtype.
        surrogate_probs: the surrogate's probabilities ``p``, shape ``(batch, K)``.
        eps: the l1 budget, ``>= 0`` (``0``: ``y`` unchanged; ``2``: the vertex itself).
        preserve_top1: MAD-argmax (the answer keeps ``argmax y``).

    Returns:
        Tensor of shape ``(batch, K)`` and the dtype of ``y``.
    """
    y = as_probabilities(y)
    p = ops.cast(as_probabilities(surrogate_probs), "float32")
    _check_classes(y, p, "surrogate's output")
    return _defend(y, eps, preserve_top1, lambda ref: (lambda v: mad_objective(v, ref, p)),
                   ops.sum(p, axis=-1, keepdims=True))


def mad_from_jacobian(y: Any, jacobian: Any, eps: float = 0.5, preserve_top1: bool = False):
    """MAD with the objective evaluated on a Jacobian ``G`` (batch, K, D) (:func:`jacobian_objective`).

    The faithful form of the paper for any choice of parameters; with the
    last layer's weights it answers as :func:`mad`. Shapes and conventions as
    :func:`mad`.
    """
    y = as_probabilities(y)
    g = ops.cast(jacobian, "float32")
    _check_classes(y, g, "Jacobian")
    nan_if_any = ops.sum(ops.sum(g, axis=-1), axis=-1, keepdims=True) * 0.0  # a NaN in G: a NaN row
    return _defend(y, eps, preserve_top1, lambda ref: (lambda v: jacobian_objective(v, ref, g)), nan_if_any)


__all__ = [
    "EXHAUSTIVE_MAX_CLASSES",
    "GREEDY_CANDIDATES",
    "NORM_FLOOR",
    "greedy_steps",
    "jacobian_objective",
    "mad",
    "mad_from_jacobian",
    "mad_objective",
    "mad_target",
    "unit_rows",
]
