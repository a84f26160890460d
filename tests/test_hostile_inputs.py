"""Defects a hostile review found (issue 9): each test failed on the code before the fix."""

import threading
import time

import keras
import numpy as np
import pytest

import keras_dcp
from keras_dcp import attacks, ops
from keras_dcp.attacks import _testing
from keras_dcp.experiments import expand_sweep

DEFENSE_LAYERS = [
    keras_dcp.DeceptionLayer,
    keras_dcp.ReverseSigmoid,
    keras_dcp.Rounding,
    keras_dcp.TopK,
    keras_dcp.TopLabel,
]


# --- 1. the query budget under concurrency ---------------------------------------------------

def _slow_victim(seconds=0.002):
    def answer(x):
        time.sleep(seconds)
        return np.full((len(x), 2), 0.5, "float32")

    return answer


def test_threads_never_get_more_answers_than_the_budget():
    victim = attacks.BlackBox(_slow_victim(), budget=100, input_shape=(2, 2, 1))
    answered, refused = [], []
    lock = threading.Lock()

    def thief():
        for _ in range(5):
            try:
                y = victim.query(np.zeros((7, 2, 2, 1), "float32"))
                with lock:
                    answered.append(len(y))
            except attacks.BudgetExceededError:
                with lock:
                    refused.append(1)

    threads = [threading.Thread(target=thief) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(answered) <= 100
    assert victim.queries_used == sum(answered) == victim.log.total
    assert sum(answered) == 98  # 14 calls of 7 fit in 100; the rest were refused
    assert len(answered) + len(refused) == 40


def test_a_failing_victim_releases_its_reserved_rows():
    calls = [0]

    def flaky(x):
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("victim down")
        return np.full((len(x), 2), 0.5, "float32")

    victim = attacks.BlackBox(flaky, budget=10, input_shape=(2, 2, 1))
    with pytest.raises(RuntimeError):
        victim.query(np.zeros((10, 2, 2, 1), "float32"))
    assert victim.queries_used == 0 and victim.remaining == 10
    assert victim.query(np.zeros((10, 2, 2, 1), "float32")).shape == (10, 2)


def test_blackbox_on_a_corrupt_keras_file_raises_value_error(tmp_path):
    path = tmp_path / "victim.keras"
    _testing.make_mlp((4, 4, 1), 3).save(path)
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
    with pytest.raises(ValueError, match="victim.keras"):
        attacks.BlackBox(str(path))
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match="not a valid .keras archive"):
        attacks.BlackBox(str(truncated))


# --- 4. full-int8 with the defense tail in int8, on a model that is never confident ------------

def _untrained_protected(defense):
    keras.utils.set_random_seed(0)
    model = keras_dcp.models.get_model("small_cnn", (16, 16, 3), 10, width=4)
    x = np.random.default_rng(0).random((32, 16, 16, 3)).astype("float32")
    assert model.predict(x, verbose=0).max() < 0.5  # every calibration probability well below 1
    return keras_dcp.protect(model, defense), x


@pytest.mark.parametrize("defense", [keras_dcp.DeceptionLayer(), keras_dcp.ReverseSigmoid(beta=0.5)])
def test_all_int8_tail_converts_for_a_low_confidence_model(defense):
    from keras_dcp.tflite import export_tflite, predict

    protected, x = _untrained_protected(defense)
    content = export_tflite(protected, None, quantize="int8", representative=x, tail="int8")
    out = predict(content, x)
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=0.05)


def test_stock_converter_takes_the_protected_model_in_full_int8(tmp_path):
    import tensorflow as tf

    protected, x = _untrained_protected(keras_dcp.DeceptionLayer())
    protected.export(str(tmp_path / "saved"), verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "saved"))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[i : i + 1]] for i in range(len(x)))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    assert converter.convert()[4:8] == b"TFL3"


# --- 5. preserve_top1 in every dtype ----------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("beta", [0.7, 0.9, 1.5])
def test_preserve_top1_keeps_the_argmax_in_every_dtype(dtype, beta):
    rows = np.random.default_rng(1).dirichlet(np.ones(10) * 0.3, size=4000).astype("float32")
    y = keras.ops.cast(rows, dtype)
    out = keras.ops.convert_to_numpy(keras.ops.cast(ops.deception(y, beta=beta, preserve_top1=True), "float32"))
    reference = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
    assert (out.argmax(-1) == reference.argmax(-1)).all()


def test_preserve_top1_float16_one_hot_row_is_not_flattened():
    out = keras.ops.convert_to_numpy(
        keras_dcp.DeceptionLayer(beta=1.5, preserve_top1=True)(np.array([[0, 0, 1, 0]], "float16"))
    ).astype("float32")
    assert out.argmax() == 2 and out[0, 2] > out[0, [0, 1, 3]].max()


# --- 6. a batch of zero rows -------------------------------------------------------------------

@pytest.mark.parametrize("layer_class", DEFENSE_LAYERS)
def test_layers_return_an_empty_batch(layer_class):
    out = layer_class()(np.zeros((0, 4), "float32"))
    assert tuple(out.shape) == (0, 4)


def test_an_eager_protected_model_answers_an_empty_batch():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="softmax")])
    protected = keras_dcp.protect(model)
    assert tuple(protected(np.zeros((0, 3), "float32")).shape) == (0, 4)


# --- 7. infinite and overflowing parameters; numpy scalars -------------------------------------

@pytest.mark.parametrize(
    "layer_class, kwargs",
    [
        (keras_dcp.DeceptionLayer, {"beta": float("inf")}),
        (keras_dcp.DeceptionLayer, {"gamma": float("inf")}),
        (keras_dcp.DeceptionLayer, {"nu": float("inf")}),
        (keras_dcp.DeceptionLayer, {"beta": 1e39}),
        (keras_dcp.DeceptionLayer, {"tau": float("nan")}),
        (keras_dcp.DeceptionLayer, {"l1_budget": float("nan")}),
        (keras_dcp.ReverseSigmoid, {"beta": float("inf")}),
        (keras_dcp.Rounding, {"decimals": 39}),
        (keras_dcp.Rounding, {"decimals": 400}),
        (keras_dcp.TopK, {"k": 2.0}),
    ],
)
def test_non_finite_or_overflowing_parameters_are_refused(layer_class, kwargs):
    (name,) = kwargs
    with pytest.raises(ValueError, match=f"`{name}`.*Received"):
        layer_class(**kwargs)


def test_largest_allowed_parameters_still_give_distributions():
    y = np.random.default_rng(0).dirichlet(np.ones(10), size=64).astype("float32")
    for layer in (keras_dcp.DeceptionLayer(beta=1e6, gamma=1e6, nu=1e9), keras_dcp.Rounding(38)):
        out = keras.ops.convert_to_numpy(layer(y))
        assert np.isfinite(out).all()


def test_numpy_scalars_are_accepted_and_stored_as_python_numbers():
    layer = keras_dcp.DeceptionLayer(beta=np.float32(0.5), gamma=np.float64(0.2), preserve_top1=np.bool_(True))
    assert type(layer.beta) is float and layer.beta == 0.5 and layer.preserve_top1 is True
    assert keras_dcp.TopK(np.int64(2)).k == 2 and type(keras_dcp.TopK(np.int64(2)).k) is int
    assert keras_dcp.DeceptionLayer(l1_budget=float("inf")).l1_budget == float("inf")  # inf: no cap


# --- 8. integer and bool "probabilities" --------------------------------------------------------

@pytest.mark.parametrize("fn", [ops.deception, ops.reverse_sigmoid, ops.rounding, ops.top_k, ops.top_label])
@pytest.mark.parametrize("row", [np.zeros((1, 3), "int32"), np.array([[False, False, True]])])
def test_integer_and_bool_inputs_are_refused(fn, row):
    with pytest.raises(ValueError, match="floating-point"):
        fn(row)


# --- 9. smaller ---------------------------------------------------------------------------------

def test_top_label_keeps_a_nan_row_nan():
    out = keras.ops.convert_to_numpy(keras_dcp.TopLabel()(np.array([[np.nan, 0.5, 0.5], [0.2, 0.5, 0.3]], "float32")))
    assert np.isnan(out[0]).all()
    np.testing.assert_array_equal(out[1], [0, 1, 0])


def test_sweep_refuses_an_empty_value():
    with pytest.raises(ValueError, match="empty value"):
        expand_sweep("dcp:beta=0.3//0.5")
    assert expand_sweep("dcp:beta=0.3/0.5") == ["dcp:beta=0.3", "dcp:beta=0.5"]


def test_run_experiment_refuses_a_test_set_with_more_classes_than_the_victim():
    from keras_dcp import experiments

    victim = _testing.make_mlp((4, 4, 1), 4)
    x = np.zeros((10, 4, 4, 1), "float32")
    with pytest.raises(ValueError, match="4 classes"):
        experiments.run_experiment(victim, x, np.arange(10), x, budget=5, epochs=1, verbose=0)
