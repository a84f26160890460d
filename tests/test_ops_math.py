"""The defense math in keras_dcp.ops against the equations, by hand and by property."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from keras import ops
from keras.backend import standardize_dtype

from keras_dcp import ops as dcp_ops
from tests import reference_math as ref
from tests.hypothesis_pool import import_every_package_module

# Hypothesis (>= 6.131) also draws numbers that appear as constants in the source of the
# local modules already imported when a test runs, so which examples a test sees depended
# on which tests ran before it. Importing every keras_dcp module first makes that pool the
# same in any order, alone or in the whole suite.
import_every_package_module()


def _np(x):
    return ops.convert_to_numpy(x)


# --- fixed vectors, computed by hand from the equations -------------------------------------

def test_reverse_sigmoid_noise_by_hand():
    # r(y) = beta * (sigmoid(gamma * logit(y)) - 1/2); logit(0.5) = 0, logit(0.8) = log 4.
    y = np.array([[0.5, 0.8, 0.2]], "float32")
    expected = 0.7 * (1 / (1 + np.exp(-0.2 * np.log([1.0, 4.0, 0.25]))) - 0.5)
    np.testing.assert_allclose(_np(dcp_ops.reverse_sigmoid_noise(y, 0.7, 0.2)), [expected], atol=1e-7)


def test_noise_clip_floor_and_ceiling():
    # y = 0 is clipped to 1e-12 (logit >= log 1e-12); y = 1 to 1 - 1e-7 (finite in float32).
    r = _np(dcp_ops.reverse_sigmoid_noise(np.array([[0.0, 1.0]], "float32"), 1.0, 1.0))
    assert np.all(np.isfinite(r))
    np.testing.assert_allclose(r[0, 0], 1 / (1 + 1e12) - 0.5, atol=1e-7)
    # float32(1 - 1e-7) = 1 - 2**-23, so logit = log((1 - 2**-23) / 2**-23).
    np.testing.assert_allclose(r[0, 1], 1 / (1 + 2.0**-23 / (1 - 2.0**-23)) - 0.5, atol=1e-6)


def test_deception_k10_perturbed_regime_by_hand():
    y = np.array([[0.4, 0.2, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01]], "float32")
    beta, gamma = 0.7, 0.2
    # max y = 0.4 < tau = 0.7: alpha = sigmoid(1000 * 0.3) = 1 in float arithmetic.
    noise = beta * (1 / (1 + np.exp(-gamma * np.log(y / (1 - y)))) - 0.5)
    v = np.maximum(y - noise, 0)
    expected = v / v.sum()
    out = _np(dcp_ops.deception(y, beta=beta, gamma=gamma))
    np.testing.assert_allclose(out, expected, atol=2e-6)
    assert out[0, 0] < y[0, 0]  # mass leaves the top class
    assert not np.allclose(out, y, atol=1e-3)


def test_deception_k10_confident_regime_is_identity():
    y = np.full((1, 10), 0.01, "float32")
    y[0, 3] = 0.91
    out = _np(dcp_ops.deception(y, beta=0.7, gamma=0.2))
    assert out.tobytes() == y.tobytes()


def test_deception_k100_both_regimes_by_hand():
    rng = np.random.default_rng(1)
    uncertain = rng.dirichlet(np.ones(100)).astype("float32")[None]
    confident = np.full((1, 100), 0.05 / 99, "float32")
    confident[0, 7] = 0.95
    y = np.concatenate([uncertain, confident])
    out = _np(dcp_ops.deception(y, beta=0.5, gamma=0.1))
    expected, alpha = ref.deception(y, 0.5, 0.1)
    assert alpha[0, 0] == pytest.approx(1.0) and alpha[1, 0] < 1e-30
    np.testing.assert_allclose(out[0], expected[0], atol=1e-6)
    assert out[1].tobytes() == y[1].tobytes()


def test_deception_tau_above_half_and_soft_detector_by_hand():
    # tau = 0.9 > 0.5 with beta = 0.3; max y = 0.895 sits inside the soft step:
    # alpha = sigmoid(1000 * 0.005) = sigmoid(5).
    y = np.array([[0.895, 0.06, 0.045]], "float32")
    out = _np(dcp_ops.deception(y, beta=0.3, gamma=0.2, tau=0.9))
    alpha = 1 / (1 + np.exp(-1000 * (0.9 - 0.895)))
    assert 0.99 < alpha < 1.0
    noise = 0.3 * (1 / (1 + np.exp(-0.2 * np.log(y / (1 - y)))) - 0.5)
    v = np.maximum(y - alpha * noise, 0)
    np.testing.assert_allclose(out, v / v.sum(), atol=5e-5)


def test_hard_detector_step():
    y = np.array([[0.69, 0.31], [0.71, 0.29]], "float32")
    alpha = _np(dcp_ops.detector(y, tau=0.7, nu=None))
    np.testing.assert_array_equal(alpha, [[1.0], [0.0]])
    out = _np(dcp_ops.deception(y, beta=0.7, gamma=0.2, nu=None))
    assert out[1].tobytes() == y[1].tobytes()
    assert not np.allclose(out[0], y[0])


def test_l1_budget_by_hand():
    y = np.array([[0.5, 0.3, 0.2]], "float32")
    y_prime = np.array([[0.3, 0.4, 0.3]], "float32")  # ||y' - y||_1 = 0.4
    out = _np(dcp_ops.limit_l1(y, y_prime, 0.1))
    np.testing.assert_allclose(out, y + 0.25 * (y_prime - y), atol=1e-7)
    np.testing.assert_allclose(_np(dcp_ops.limit_l1(y, y_prime, 1.0)), y_prime, atol=1e-7)


def test_keep_top1_by_hand():
    y = np.array([[0.5, 0.4, 0.1]], "float32")
    y_prime = np.array([[0.3, 0.5, 0.2]], "float32")
    # a_1 = -0.2, b_1 = 0.1: t* = (m + 0.2) / 0.3 with m = 1e-6.
    t = (1e-6 + 0.2) / 0.3
    out = _np(dcp_ops.keep_top1(y, y_prime))
    np.testing.assert_allclose(out, y_prime + t * (y - y_prime), atol=1e-6)
    assert out.argmax() == 0


def test_rounding_and_top_label_per_row():
    y = np.array([[0.123, 0.877], [0.6, 0.4], [0.2, 0.8]], "float32")
    np.testing.assert_allclose(_np(dcp_ops.rounding(y, 1)), [[0.1, 0.9], [0.6, 0.4], [0.2, 0.8]], atol=1e-7)
    # Every row gets its own winner (ART's batch ClassLabels bug would copy one row's).
    np.testing.assert_array_equal(_np(dcp_ops.top_label(y)), [[0, 1], [1, 0], [0, 1]])


# --- rows that are not distributions ------------------------------------------------------

@pytest.mark.parametrize("fn", [dcp_ops.deception, dcp_ops.reverse_sigmoid, dcp_ops.top_k])
def test_invalid_rows_are_finite_distributions_or_nan(fn):
    y = np.array(
        [[-1.0, 0.2, 0.1], [0.0, 0.0, 0.0], [np.nan, 0.5, 0.5], [np.inf, 0.0, 0.0], [0.3, 0.3, 0.3],
         [2.0, 0.0, 0.0], [0.95, 0.05, 0.5]],
        "float32",
    )
    out = _np(fn(y))
    assert np.isnan(out[2]).all()
    finite = np.delete(out, 2, axis=0)
    assert np.isfinite(finite).all() and (finite >= 0).all()
    np.testing.assert_allclose(finite.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(out[1], [1 / 3] * 3, atol=1e-6)  # all zeros -> uniform


def test_dtype_is_kept_and_float64_identity_is_exact():
    y = np.array([[0.999, 0.0005, 0.0005], [0.4, 0.35, 0.25]], "float64")
    out = dcp_ops.deception(y)
    assert standardize_dtype(out.dtype) == "float64"
    assert _np(out)[0].tobytes() == y[0].tobytes()
    out16 = dcp_ops.deception(y.astype("float16"))
    assert standardize_dtype(out16.dtype) == "float16"


# --- properties on random distributions -----------------------------------------------------

def distributions(max_rows=16, max_classes=12):
    @st.composite
    def build(draw):
        rows = draw(st.integers(1, max_rows))
        classes = draw(st.integers(2, max_classes))
        raw = draw(hnp.arrays("float64", (rows, classes), elements=st.floats(0.0, 1.0)))
        peaked = draw(st.booleans())
        raw = raw**8 if peaked else raw
        raw[:, 0] += 1e-3  # never an all-zero row
        return (raw / raw.sum(-1, keepdims=True)).astype("float32")

    return build()


params = st.fixed_dictionaries(
    {
        "beta": st.floats(0.05, 1.5),
        "gamma": st.floats(0.05, 2.0),
        "tau": st.one_of(st.none(), st.floats(0.05, 1.0)),
        "nu": st.one_of(st.none(), st.floats(1.0, 5000.0)),
    }
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(y=distributions(), p=params)
def test_output_is_a_distribution_and_confident_rows_untouched(y, p):
    out = _np(dcp_ops.deception(y, **p))
    assert np.isfinite(out).all() and (out >= 0).all()
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    alpha = _np(dcp_ops.detector(y, p["tau"] or p["beta"], p["nu"]))[:, 0]
    untouched = alpha == 0
    assert out[untouched].tobytes() == y[untouched].tobytes()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(y=distributions(), p=params, eps=st.floats(0.0, 0.5))
def test_l1_budget_is_respected(y, p, eps):
    out = _np(dcp_ops.deception(y, l1_budget=eps, **p))
    assert (np.abs(out - y).sum(-1) <= eps + 1e-5).all()
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(y=distributions(), p=params, eps=st.one_of(st.none(), st.floats(0.0, 0.5)))
def test_top1_is_kept_when_asked(y, p, eps):
    out = _np(dcp_ops.deception(y, l1_budget=eps, preserve_top1=True, **p))
    np.testing.assert_array_equal(out.argmax(-1), y.argmax(-1))
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5)
    if eps is not None:
        assert (np.abs(out - y).sum(-1) <= eps + 1e-5).all()


#: float32 against the float64 reference: the largest difference seen over 3,000 drawn examples
#: was 2.0e-6 (a one-hot row at gamma = 2); the tolerance leaves a factor of 5.
REFERENCE_ATOL = 1e-5


@settings(max_examples=40, deadline=None, derandomize=True)
@given(y=distributions(), p=params)
def test_matches_the_float64_reference(y, p):
    out = _np(dcp_ops.deception(y, **p))
    expected, _ = ref.deception(y, p["beta"], p["gamma"], p["tau"], p["nu"])
    np.testing.assert_allclose(out, expected, atol=REFERENCE_ATOL)


@pytest.mark.parametrize(
    "row, params",
    [
        # The example a fresh machine drew (issue 10): with beta = 1.5 the top class sits at the
        # ceiling, where float32(1 - 1e-7) = 1 - 2**-23 and 1 - 1e-7 give different log(1 - y_c).
        ([1.0, 0.0], dict(beta=1.5, gamma=0.25, tau=None, nu=None)),
        ([1.0, 0.0], dict(beta=0.99999, gamma=2.0, tau=None, nu=1190.0)),
        ([0.0, 1.0, 0.0], dict(beta=1.2, gamma=1.0, tau=None, nu=1000.0)),
    ],
)
def test_matches_the_float64_reference_at_the_clip_bounds(row, params):
    y = np.array([row], "float32")
    out = _np(dcp_ops.deception(y, **params))
    expected, _ = ref.deception(y, params["beta"], params["gamma"], params["tau"], params["nu"])
    np.testing.assert_allclose(out, expected, atol=REFERENCE_ATOL)


def test_top1_preservation_changes_the_label_when_off():
    # Without preserve_top1 a strong DCP flips near-ties; with it, never.
    rng = np.random.default_rng(0)
    y = rng.dirichlet(np.ones(10) * 0.3, size=2000).astype("float32")
    flipped = (_np(dcp_ops.deception(y, beta=1.5, gamma=0.5)).argmax(-1) != y.argmax(-1)).mean()
    kept = (_np(dcp_ops.deception(y, beta=1.5, gamma=0.5, preserve_top1=True)).argmax(-1) != y.argmax(-1)).mean()
    assert flipped > 0.01 and kept == 0.0
