"""Keyed DCP (issue 11): secret, deterministic per-input label moves on unsure rows."""

import keras
import numpy as np
import pytest

import keras_dcp
from keras_dcp import ops
from keras_dcp.defenses.keyed import calibrate_flip_threshold, expected_benign_cost


def _rows(n=2000, seed=0, concentration=0.3):
    return np.random.default_rng(seed).dirichlet(np.full(10, concentration), size=n).astype("float32")


def _images(n=2000, seed=1):
    return np.random.default_rng(seed).random((n, 4, 4, 3)).astype("float32")


def test_moves_happen_only_below_flip_tau_and_at_the_expected_rate():
    y, x = _rows(), _images()
    layer = keras_dcp.KeyedDeception(flip_tau=0.6, flip_rate=1.0, key=11)
    out = keras.ops.convert_to_numpy(layer([y, x]))
    dcp = keras.ops.convert_to_numpy(ops.deception(y))
    moved = out.argmax(1) != dcp.argmax(1)
    assert not moved[y.max(1) >= 0.6].any()
    expected = np.clip((0.6 - y.max(1)) / (0.6 - 0.1), 0, 1)
    assert abs(moved.mean() - expected.mean()) < 0.03  # u is close to uniform over inputs
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    # a moved row is DCP's answer with two values swapped: the same multiset of values
    np.testing.assert_allclose(np.sort(out[moved], 1), np.sort(dcp[moved], 1), atol=1e-6)


def test_the_same_query_gets_the_same_answer_and_the_key_decides():
    y, x = _rows(500), _images(500)
    layer = keras_dcp.KeyedDeception(flip_tau=0.8, key=5)
    first = keras.ops.convert_to_numpy(layer([y, x]))
    again = keras.ops.convert_to_numpy(layer([y, x]))
    np.testing.assert_array_equal(first, again)  # repeating a query gains nothing
    other = keras.ops.convert_to_numpy(keras_dcp.KeyedDeception(flip_tau=0.8, key=6)([y, x]))
    assert (first.argmax(1) != other.argmax(1)).mean() > 0.1
    layer.rotate_key(6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer([y, x])), other)


def test_key_is_not_in_the_config_but_the_saved_model_answers_the_same(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    layer = keras_dcp.KeyedDeception(flip_tau=0.9, key=123456789)
    protected = keras_dcp.protect(model, layer)
    assert "key" not in layer.get_config() and "123456789" not in str(protected.get_config())
    x = _images(200)
    before = protected.predict(x, verbose=0)
    protected.save(tmp_path / "keyed.keras")
    reloaded = keras.saving.load_model(tmp_path / "keyed.keras", safe_mode=True)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), before)
    stored = keras_dcp.KeyedDeception(key=9, store_key=True)
    assert stored.get_config()["key"] == 9


def test_calibrated_threshold_keeps_the_expected_benign_cost_within_budget():
    rng = np.random.default_rng(3)
    probabilities = _rows(5000, seed=4, concentration=0.15)
    labels = np.where(rng.random(5000) < 0.8, probabilities.argmax(1), rng.integers(0, 10, 5000))
    correct = probabilities.argmax(1) == labels
    for budget in (0.0, 0.5, 1.0):
        tau = calibrate_flip_threshold(probabilities, labels, budget)
        assert expected_benign_cost(probabilities.max(1), correct, tau) <= budget / 100 + 1e-9
    assert calibrate_flip_threshold(probabilities, labels, 0.0) < calibrate_flip_threshold(probabilities, labels, 1.0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="flip_tau"):
        keras_dcp.KeyedDeception(flip_tau=1.5)
    with pytest.raises(ValueError, match="key"):
        keras_dcp.KeyedDeception(key=-1)
    with pytest.raises(ValueError, match="1/K"):
        keras_dcp.KeyedDeception(flip_tau=0.05)([_rows(4), _images(4)])
    assert keras_dcp.build_defense("dcp-keyed:flip_tau=0.6").flip_tau == 0.6
