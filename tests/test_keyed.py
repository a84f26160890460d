"""Keyed DCP (issue 11): secret, deterministic per-input label moves on unfamiliar queries."""

import keras
import numpy as np
import pytest

import keras_dcp
from keras_dcp import ops
from keras_dcp.defenses.keyed import calibrate_energy_threshold, expected_benign_cost


def _logits(n=2000, seed=0, scale=3.0):
    return (scale * np.random.default_rng(seed).normal(size=(n, 10))).astype("float32")


def _images(n=2000, seed=1):
    return np.random.default_rng(seed).random((n, 4, 4, 3)).astype("float32")


def _energy(z):
    return keras.ops.convert_to_numpy(ops.energy(z))[:, 0]


def test_moves_happen_only_below_the_energy_threshold_at_the_rate_asked():
    z, x = _logits(), _images()
    threshold = float(np.median(_energy(z)))
    out = keras.ops.convert_to_numpy(keras_dcp.KeyedDeception(energy_threshold=threshold, flip_rate=0.5, key=11)([z, x]))
    dcp = keras.ops.convert_to_numpy(ops.deception(keras.ops.softmax(z)))
    moved = out.argmax(1) != dcp.argmax(1)
    low = _energy(z) < threshold
    assert not moved[~low].any()
    assert abs(moved[low].mean() - 0.5) < 0.05  # u is close to uniform over inputs
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    # a moved row is DCP's answer with two values swapped: the same multiset of values
    np.testing.assert_allclose(np.sort(out[moved], 1), np.sort(dcp[moved], 1), atol=1e-6)
    np.testing.assert_array_equal(out[~moved], dcp[~moved])


def test_the_same_query_gets_the_same_answer_and_the_key_decides():
    z, x = _logits(500), _images(500)
    layer = keras_dcp.KeyedDeception(energy_threshold=100.0, key=5)
    first = keras.ops.convert_to_numpy(layer([z, x]))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer([z, x])), first)  # repeats gain nothing
    other = keras.ops.convert_to_numpy(keras_dcp.KeyedDeception(energy_threshold=100.0, key=6)([z, x]))
    assert (first.argmax(1) != other.argmax(1)).mean() > 0.3
    layer.rotate_key(6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer([z, x])), other)


def test_protect_wires_it_on_the_logits_and_the_saved_model_answers_the_same(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10), keras.layers.Softmax()])
    layer = keras_dcp.KeyedDeception(energy_threshold=5.0, key=123456789)
    protected = keras_dcp.protect(model, layer)
    assert "key" not in layer.get_config() and "123456789" not in str(protected.get_config())
    x = _images(200)
    before = protected.predict(x, verbose=0)
    bare = model.predict(x, verbose=0)
    confident = bare.max(1) > 0.9
    np.testing.assert_allclose(before[confident], bare[confident], atol=1e-6)
    protected.save(tmp_path / "keyed.keras")
    reloaded = keras.saving.load_model(tmp_path / "keyed.keras", safe_mode=True)
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), before)
    assert keras_dcp.KeyedDeception(key=9, store_key=True).get_config()["key"] == 9


def test_calibrated_threshold_keeps_the_expected_benign_cost_within_budget():
    z = _logits(5000, seed=4)
    rng = np.random.default_rng(3)
    labels = np.where(rng.random(5000) < 0.8, z.argmax(1), rng.integers(0, 10, 5000))
    correct = z.argmax(1) == labels
    thresholds = []
    for budget in (0.0, 0.5, 1.0):
        threshold = calibrate_energy_threshold(z, labels, budget)
        assert expected_benign_cost(_energy(z) < threshold, correct, 10) <= budget / 100 + 1e-9
        thresholds.append(threshold)
    assert thresholds[0] <= thresholds[1] < thresholds[2]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="flip_rate"):
        keras_dcp.KeyedDeception(flip_rate=1.5)
    with pytest.raises(ValueError, match="key"):
        keras_dcp.KeyedDeception(key=-1)
    with pytest.raises(ValueError, match="energy_threshold"):
        keras_dcp.KeyedDeception(energy_threshold=float("inf"))
    assert keras_dcp.build_defense("dcp-keyed:energy_threshold=4.5,key=3").key == 3


def test_exports_to_savedmodel_and_tflite_with_the_same_answers(tmp_path):
    import tensorflow as tf

    from keras_dcp.tflite import export_tflite, predict

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10), keras.layers.Softmax()])
    protected = keras_dcp.protect(model, keras_dcp.KeyedDeception(energy_threshold=3.0, key=5))
    x = _images(64)
    expected = protected.predict(x, verbose=0)
    protected.export(str(tmp_path / "saved"), verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / "saved"))  # keep a reference: its variables live in it
    served = loaded.serve(tf.constant(x)).numpy()
    np.testing.assert_allclose(served, expected, atol=1e-6)
    np.testing.assert_allclose(predict(export_tflite(protected), x), expected, atol=1e-5)


def test_calibration_refuses_bad_inputs_with_a_clear_error():
    z = _logits(50, seed=5)
    labels = z.argmax(1)
    with pytest.raises(ValueError, match="finite"):
        calibrate_energy_threshold(np.where(np.arange(50)[:, None] == 3, np.nan, z), labels, 1.0)
    with pytest.raises(ValueError, match="one label per row"):
        calibrate_energy_threshold(z, labels[:-1], 1.0)
    with pytest.raises(ValueError, match="non-empty"):
        calibrate_energy_threshold(np.zeros((0, 10), "float32"), np.zeros(0, int), 1.0)
    with pytest.raises(ValueError, match="shape"):
        calibrate_energy_threshold(z[:, 0], labels, 1.0)
    with pytest.raises(ValueError, match="budget_points"):
        calibrate_energy_threshold(z, labels, -1.0)


def test_energy_calibration_is_the_shared_calibration_on_the_layers_energy():
    from keras_dcp.defenses import calibrate_threshold

    z = _logits(3000, seed=6)
    labels = np.random.default_rng(7).integers(0, 10, 3000)
    for budget in (0.5, 2.0):
        assert calibrate_energy_threshold(z, labels, budget) == calibrate_threshold(
            _energy(z), z.argmax(1) == labels, budget, 10)


@pytest.mark.parametrize("num_classes", [1, 0, 2.5, True, None])
def test_calibrate_threshold_refuses_a_class_count_below_two(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        keras_dcp.defenses.calibrate_threshold([0.1, 0.2], [True, False], 1.0, num_classes)
