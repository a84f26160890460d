"""The math of the baselines: MAD's closed form against autodiff and brute force, AM by hand."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_dcp import ops
from keras_dcp.ops.mad import GREEDY_CANDIDATES, TOP1_LIFT, greedy_steps, unit_rows

RNG = np.random.default_rng(13)


def _rows(n, k, rng=RNG, concentration=1.0):
    return rng.dirichlet(np.ones(k) * concentration, size=n).astype("float32")


def _np(tensor):
    return keras.ops.convert_to_numpy(tensor)


def _angular(v, y, p):
    """The closed-form objective in float64 numpy, one candidate per call."""
    def unit(a):
        norm = np.linalg.norm(a)
        return a / norm if norm > 1e-6 else np.zeros_like(a)

    return np.linalg.norm(unit(v - p) - unit(y - p))


def _head_jacobian(h, kernel, bias):
    """``d log softmax(h W + b)_k / dW`` per row with tf.GradientTape: ``(batch, K, D*K)``."""
    w = tf.Variable(kernel)
    with tf.GradientTape() as tape:
        log_p = tf.nn.log_softmax(tf.matmul(h, w) + bias)
    jacobian = tape.jacobian(log_p, w)
    return tf.reshape(jacobian, (h.shape[0], kernel.shape[1], -1)).numpy(), tf.exp(log_p).numpy()


@pytest.mark.parametrize("classes, features", [(3, 4), (10, 16)])
def test_last_layer_gradient_is_e_k_minus_p_times_h(classes, features):
    rng = np.random.default_rng(classes)
    h = rng.normal(size=(5, features)).astype("float32")
    kernel = rng.normal(size=(features, classes)).astype("float32")
    bias = rng.normal(size=(classes,)).astype("float32")
    jacobian, p = _head_jacobian(h, kernel, bias)
    # Keras' kernel is (D, K): d log p_k / dW[d, j] = h_d ([j = k] - p_j).
    expected = np.einsum("bd,bkj->bkdj", h, np.eye(classes)[None] - p[:, None, :]).reshape(jacobian.shape)
    np.testing.assert_allclose(jacobian, expected, atol=1e-5)


@pytest.mark.parametrize("classes", [3, 5, 10])
def test_closed_form_equals_the_autodiff_jacobian_objective(classes):
    rng = np.random.default_rng(100 + classes)
    h = rng.normal(size=(6, 8)).astype("float32")
    jacobian, p = _head_jacobian(h, rng.normal(size=(8, classes)).astype("float32"), np.zeros(classes, "float32"))
    y = _rows(6, classes, rng)
    vertices = np.eye(classes, dtype="float32")[None].repeat(6, axis=0)
    mixed = _rows(6 * 4, classes, rng).reshape(6, 4, classes)  # any distribution, not only vertices
    for candidates in (vertices, mixed):
        closed = _np(ops.mad_objective(candidates, y, p))
        autodiff = _np(ops.jacobian_objective(candidates, y, jacobian))
        np.testing.assert_allclose(closed, autodiff, atol=2e-5)
    # ...and so the whole defense answers the same.
    np.testing.assert_allclose(_np(ops.mad(y, p, eps=0.6)), _np(ops.mad_from_jacobian(y, jacobian, eps=0.6)),
                               atol=1e-6)
    np.testing.assert_allclose(_np(ops.mad(y, p, eps=0.6, preserve_top1=True)),
                               _np(ops.mad_from_jacobian(y, jacobian, eps=0.6, preserve_top1=True)), atol=1e-6)


@pytest.mark.parametrize("classes", [2, 3, 4, 6])
def test_the_chosen_vertex_maximises_the_objective(classes):
    y, p = _rows(40, classes), _rows(40, classes)
    target = _np(ops.mad_target(y, lambda v: ops.mad_objective(v, y, p)))
    for row in range(len(y)):
        scores = [_angular(np.eye(classes)[k], y[row].astype("float64"), p[row].astype("float64"))
                  for k in range(classes)]
        chosen = int(np.argmax(target[row]))
        assert target[row].tolist() == np.eye(classes)[chosen].tolist()
        assert scores[chosen] >= max(scores) - 1e-5


def _argmax_vertices(top, classes):
    """Every MAD-argmax vertex of a row whose top class is ``top`` (brute force)."""
    others = [k for k in range(classes) if k != top]
    for bits in itertools.product([0.0, 1.0], repeat=classes - 1):
        v = np.zeros(classes)
        v[top] = 1.0 + TOP1_LIFT
        v[others] = bits
        yield v / v.sum()


@pytest.mark.parametrize("classes", [3, 5, 8])
def test_mad_argmax_maximises_over_every_class_set_with_the_top_class(classes):
    y, p = _rows(25, classes), _rows(25, classes)
    target = _np(ops.mad_target(y, lambda v: ops.mad_objective(v, y, p), preserve_top1=True))
    for row in range(len(y)):
        top = int(np.argmax(y[row]))
        best = max(_angular(v, y[row].astype("float64"), p[row].astype("float64"))
                   for v in _argmax_vertices(top, classes))
        assert int(np.argmax(target[row])) == top
        assert _angular(target[row].astype("float64"), y[row], p[row]) >= best - 1e-4


def _greedy_reference(y, p, budget=GREEDY_CANDIDATES):
    """The reference's greedy MAD-argmax search for many classes, in numpy (one row)."""
    classes, top = len(y), int(np.argmax(y))
    fixed, best, best_value, scored = [top], None, -1.0, 0
    while scored < budget and len(fixed) < classes:
        candidates = []
        for k in (k for k in range(classes) if k not in fixed):
            v = np.zeros(classes)
            v[fixed + [k]] = 1.0
            v[top] += TOP1_LIFT
            candidates.append((k, v / v.sum()))
        values = [_angular(v, y, p) for _, v in candidates]
        i = int(np.argmax(values))
        if values[i] > best_value:
            best_value, best = values[i], candidates[i][1]
        fixed.append(candidates[i][0])
        scored += len(candidates)
    return best


def test_mad_argmax_follows_the_reference_greedy_search_above_ten_classes():
    assert greedy_steps(100) == 11 and greedy_steps(12) == 11
    y, p = _rows(6, 12, concentration=0.5), _rows(6, 12)
    target = _np(ops.mad_target(y, lambda v: ops.mad_objective(v, y, p), preserve_top1=True))
    for row in range(len(y)):
        np.testing.assert_allclose(target[row], _greedy_reference(y[row].astype("float64"), p[row]), atol=1e-6)


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 1.0, 2.0, float("inf")])
@pytest.mark.parametrize("preserve_top1", [False, True])
def test_budget_simplex_and_top1(eps, preserve_top1):
    y = np.concatenate([_rows(60, 10), _rows(60, 10, concentration=0.05)])
    p = _rows(120, 10)
    out = _np(ops.mad(y, p, eps=eps, preserve_top1=preserve_top1)).astype("float64")
    assert np.all(np.abs(out - y).sum(-1) <= eps + 1e-6)
    assert np.all(out >= 0) and np.allclose(out.sum(-1), 1, atol=1e-6)
    if preserve_top1:
        assert np.array_equal(out.argmax(-1), y.argmax(-1))
    if eps == 0.0:
        assert out.astype("float32").tobytes() == y.tobytes()
    elif eps >= 2.0:  # the budget lets the answer reach its vertex
        assert np.allclose(out.max(-1), 1.0, atol=1e-6) or preserve_top1


def test_preserve_top1_in_float16():
    y = _rows(200, 10).astype("float16")
    out = _np(ops.mad(y, _rows(200, 10), eps=1.0, preserve_top1=True))
    assert out.dtype == np.float16 and np.array_equal(out.astype("float32").argmax(-1), y.astype("float32").argmax(-1))


def test_divisions_are_guarded():
    y = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], "float32")
    # y == p (the victim as its own surrogate) and one-hot p (e_k == p): finite, valid, within budget.
    for p in (y, np.array([[1.0, 0.0, 0.0]] * 3, "float32")):
        for preserve_top1 in (False, True):
            out = _np(ops.mad(y, p, eps=0.5, preserve_top1=preserve_top1))
            assert np.isfinite(out).all() and np.allclose(out.sum(-1), 1, atol=1e-6)
            assert np.all(np.abs(out - y).sum(-1) <= 0.5 + 1e-6)
    assert _np(unit_rows(np.zeros((1, 3), "float32"))).tolist() == [[0.0, 0.0, 0.0]]
    zero_jacobian = np.zeros((3, 3, 4), "float32")
    assert np.isfinite(_np(ops.mad_from_jacobian(y, zero_jacobian, eps=0.5))).all()


def test_mad_follows_the_row_conventions():
    p = _rows(4, 3)
    y = np.array([[np.nan, 0.5, 0.5], [0.2, -0.3, 0.9], [0.6, 0.3, 0.1], [0.0, 0.0, 0.0]], "float32")
    out = _np(ops.mad(y, p, eps=0.4))
    assert np.isnan(out[0]).all()
    assert np.isfinite(out[1:]).all() and np.allclose(out[1:].sum(-1), 1, atol=1e-6)  # sanitised rows
    p_nan = p.copy()
    p_nan[2, 0] = np.nan
    assert np.isnan(_np(ops.mad(y, p_nan, eps=0.4))[2]).all()
    assert _np(ops.mad(np.zeros((0, 3), "float32"), np.zeros((0, 3), "float32"))).shape == (0, 3)
    with pytest.raises(ValueError, match="floating"):
        ops.mad(np.array([[1, 0]], "int32"), np.array([[0.5, 0.5]], "float32"))
    with pytest.raises(ValueError, match="classes"):
        ops.mad(_rows(2, 3), _rows(2, 4))


def test_adaptive_misinformation_by_hand():
    y = np.concatenate([_rows(30, 10), _rows(30, 10, concentration=0.05)])
    y_hat = _rows(60, 10)
    for tau, nu in ((0.5, 1000.0), (0.9, 20.0), (0.7, None)):
        out = _np(ops.adaptive_misinformation(y, y_hat, tau=tau, nu=nu)).astype("float64")
        top = y.max(-1, keepdims=True).astype("float64")
        alpha = (top < tau).astype("float64") if nu is None else 1.0 / (1.0 + np.exp(-nu * (tau - top)))
        np.testing.assert_allclose(out, (1 - alpha) * y + alpha * y_hat, atol=1e-6)
        untouched = alpha[:, 0] < 1e-45  # zero in float32
        assert untouched.any() == (nu != 20.0)
        assert out[untouched].astype("float32").tobytes() == y[untouched].tobytes()


def test_adaptive_misinformation_follows_the_row_conventions():
    y = np.array([[np.nan, 0.5, 0.5], [0.2, 0.3, 0.4], [0.99, 0.005, 0.005]], "float16")
    y_hat = np.array([[0.1, 0.8, 0.1]] * 3, "float32")
    out = _np(ops.adaptive_misinformation(y, y_hat, tau=0.5))
    assert out.dtype == np.float16 and np.isnan(out[0]).all()
    assert np.allclose(out[1].astype("float32"), [0.1, 0.8, 0.1], atol=1e-3)  # an invalid row, flagged
    assert out[2].tobytes() == y[2].tobytes()
    assert _np(ops.adaptive_misinformation(np.zeros((0, 3), "float32"), np.zeros((0, 3), "float32"))).shape == (0, 3)
    with pytest.raises(ValueError, match="floating"):
        ops.adaptive_misinformation(np.array([[1, 0]]), np.array([[0.5, 0.5]], "float32"))
    with pytest.raises(ValueError, match="classes"):
        ops.adaptive_misinformation(_rows(2, 3), _rows(2, 4))
