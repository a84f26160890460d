"""One contract every defense layer passes (after KerasHub's layer test harness).

Adding a defense means adding one line to DEFENSES. Defenses that also look at the query
(``needs_inputs``: MAD, Adaptive Misinformation) are called on ``[probabilities, queries]`` and
exercised inside a tiny protected model like the others.
"""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from keras.backend import standardize_dtype

import keras_dcp

NUM_CLASSES = 10
#: Features of the tiny classifiers' queries.
FEATURES = 8


def _second_model(seed=1, logits=False):
    """A seeded tiny model on the queries (a MAD surrogate or a misinformation model)."""
    init = keras.initializers.GlorotUniform(seed=seed)
    return keras.Sequential([
        keras.Input((FEATURES,)),
        keras.layers.Dense(16, activation="relu", kernel_initializer=init),
        keras.layers.Dense(NUM_CLASSES, activation=None if logits else "softmax",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 1)),
    ])


# (factory, whether outputs sum to 1 exactly, whether confident rows stay untouched)
DEFENSES = {
    "dcp": (lambda: keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2), True, True),
    "dcp_budget_top1": (
        lambda: keras_dcp.DeceptionLayer(beta=0.9, gamma=0.4, tau=0.8, nu=None, l1_budget=0.3, preserve_top1=True),
        True,
        True,
    ),
    "reverse_sigmoid": (lambda: keras_dcp.ReverseSigmoid(beta=1.0, gamma=0.2), True, False),
    "rounding": (lambda: keras_dcp.Rounding(decimals=2), False, False),
    "top_label": (lambda: keras_dcp.TopLabel(), True, False),
    "top_k": (lambda: keras_dcp.TopK(k=3), True, False),
    "mad": (lambda: keras_dcp.MAD(_second_model(), eps=0.5), True, False),
    "mad_argmax_logits": (lambda: keras_dcp.MAD(_second_model(logits=True), eps=1.0, preserve_top1=True), True, False),
    "mad_jacobian": (lambda: keras_dcp.MAD(_second_model(), eps=0.5, objective="jacobian"), True, False),
    "am": (lambda: keras_dcp.AdaptiveMisinformation(_second_model(), tau=0.6), True, True),
}
IDS = list(DEFENSES)


def _batch(rows=64, seed=0):
    rng = np.random.default_rng(seed)
    uncertain = rng.dirichlet(np.ones(NUM_CLASSES), size=rows // 2)
    confident = rng.dirichlet(np.ones(NUM_CLASSES) * 0.02, size=rows - rows // 2)
    return np.concatenate([uncertain, confident]).astype("float32")


def _queries(rows=64, seed=5):
    return np.random.default_rng(seed).normal(size=(rows, FEATURES)).astype("float32")


def _apply(layer, y, x=None, **kwargs):
    """``layer(y)``, or ``layer([y, x])`` for a defense that looks at the query."""
    if layer.needs_inputs:
        return layer([y, _queries(len(y)) if x is None else x], **kwargs)
    return layer(y, **kwargs)


def _classifier(defense, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((FEATURES,))
    x = keras.layers.Dense(16, activation="relu")(inputs)
    probabilities = keras.layers.Dense(NUM_CLASSES, activation="softmax")(x)
    return keras.Model(inputs, defense([probabilities, inputs]) if defense.needs_inputs else defense(probabilities))


@pytest.fixture(params=IDS)
def case(request):
    factory, sums_to_one, keeps_confident = DEFENSES[request.param]
    return request.param, factory, sums_to_one, keeps_confident


def test_outputs_are_valid(case):
    _, factory, sums_to_one, keeps_confident = case
    y = _batch()
    out = keras.ops.convert_to_numpy(_apply(factory(), y))
    assert out.shape == y.shape and np.isfinite(out).all() and (out >= 0).all()
    np.testing.assert_allclose(out.sum(-1), 1.0, atol=1e-5 if sums_to_one else NUM_CLASSES * 0.005)
    if keeps_confident:
        confident = y.max(-1) > 0.99
        assert confident.any() and out[confident].tobytes() == y[confident].tobytes()


def test_rows_are_independent(case):
    # A row's answer must not depend on the other rows of the batch (ART's ClassLabels bug).
    _, factory, _, _ = case
    layer, y, x = factory(), _batch(), _queries()
    together = keras.ops.convert_to_numpy(_apply(layer, y, x))
    alone = np.concatenate([keras.ops.convert_to_numpy(_apply(layer, y[i : i + 1], x[i : i + 1]))
                            for i in range(len(y))])
    np.testing.assert_allclose(together, alone, atol=1e-6)


def test_config_round_trip(case):
    _, factory, _, _ = case
    layer = factory()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    y = _batch()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(_apply(clone, y)), keras.ops.convert_to_numpy(_apply(layer, y)))


def test_symbolic_call_and_output_shape(case):
    _, factory, _, _ = case
    layer = factory()
    out = _apply(layer, keras.Input((NUM_CLASSES,)), keras.Input((FEATURES,)))
    assert tuple(out.shape) == (None, NUM_CLASSES)
    shape = [(None, NUM_CLASSES), (None, FEATURES)] if layer.needs_inputs else (None, NUM_CLASSES)
    assert layer.compute_output_shape(shape) == (None, NUM_CLASSES)


def test_identity_when_training(case):
    _, factory, _, _ = case
    y = _batch()
    out = keras.ops.convert_to_numpy(_apply(factory(), y, training=True))
    assert out.tobytes() == y.tobytes()


def test_training_step_is_not_poisoned(case):
    # fit() runs the layer with training=True: the loss it trains on is the undefended model's.
    _, factory, _, _ = case
    model = _classifier(factory())
    x = np.random.default_rng(1).normal(size=(32, FEATURES)).astype("float32")
    y = np.arange(32) % NUM_CLASSES
    undefended = keras.Model(model.inputs, model.layers[-2].output)
    undefended.compile(loss="sparse_categorical_crossentropy")
    clean_loss = undefended.evaluate(x, y, batch_size=32, verbose=0)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    history = model.fit(x, y, epochs=1, batch_size=32, verbose=0, shuffle=False)
    np.testing.assert_allclose(history.history["loss"][0], clean_loss, rtol=1e-5)


def test_mixed_precision_input_keeps_dtype(case):
    _, factory, _, _ = case
    y16 = _batch().astype("float16")
    out = _apply(factory(), y16)
    assert standardize_dtype(out.dtype) == "float16"
    assert np.isfinite(keras.ops.convert_to_numpy(out)).all()


def test_under_mixed_precision_policy(case):
    _, factory, _, _ = case
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        layer = factory()
        out = _apply(layer, _batch())
        assert standardize_dtype(out.dtype) == "float32"  # input dtype, no autocast to float16
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_non_2d_input_raises_at_build(case):
    _, factory, _, _ = case
    with pytest.raises(ValueError, match="batch, num_classes"):
        _apply(factory(), keras.Input((4, NUM_CLASSES)), keras.Input((FEATURES,)))


def test_keras_file_round_trip_safe_mode(case, tmp_path):
    _, factory, _, _ = case
    model = _classifier(factory())
    x = np.random.default_rng(2).normal(size=(16, FEATURES)).astype("float32")
    path = str(tmp_path / "m.keras")
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert type(reloaded.layers[-1]) is type(model.layers[-1])
    np.testing.assert_array_equal(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_savedmodel_export_and_reload(case, tmp_path):
    import tensorflow as tf

    _, factory, _, _ = case
    model = _classifier(factory())
    x = np.random.default_rng(3).normal(size=(16, FEATURES)).astype("float32")
    model.export(str(tmp_path / "serving"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "serving"))
    np.testing.assert_allclose(served.serve(x).numpy(), model.predict(x, verbose=0), atol=1e-6)


def test_tflite_float_matches_keras(case, tmp_path):
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    _, factory, _, _ = case
    model = _classifier(factory())
    if not model.layers[-1].tflite_exportable:
        with pytest.raises(ValueError, match="TFLite"):
            keras_dcp.export_tflite(model)
        return
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    interpreter = Interpreter(model_content=converter.convert())
    interpreter.allocate_tensors()
    x = np.random.default_rng(4).normal(size=(1, FEATURES)).astype("float32") * 3
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for row in range(4):
        sample = np.roll(x, row, axis=1)
        interpreter.set_tensor(inp["index"], sample)
        interpreter.invoke()
        np.testing.assert_allclose(
            interpreter.get_tensor(out["index"]), model.predict(sample, verbose=0), atol=1e-5
        )


# --- argument validation ------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"beta": 0}, "beta"),
        ({"beta": -1.0}, "beta"),
        ({"gamma": 0.0}, "gamma"),
        ({"tau": 0.0}, "tau"),
        ({"tau": 1.2}, "tau"),
        ({"nu": 0.0}, "nu"),
        ({"l1_budget": -0.1}, "l1_budget"),
        ({"preserve_top1": "yes"}, "preserve_top1"),
        ({"beta": float("nan")}, "beta"),
    ],
)
def test_deception_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        keras_dcp.DeceptionLayer(**kwargs)


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: keras_dcp.ReverseSigmoid(beta=0), "beta"),
        (lambda: keras_dcp.ReverseSigmoid(gamma=-2), "gamma"),
        (lambda: keras_dcp.Rounding(decimals=-1), "decimals"),
        (lambda: keras_dcp.Rounding(decimals=1.5), "decimals"),
        (lambda: keras_dcp.TopK(k=0), "k"),
    ],
)
def test_other_defenses_reject_bad_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make()


@pytest.mark.parametrize(
    "make, name",
    [
        (lambda: keras_dcp.MAD(eps=-0.1), "eps"),
        (lambda: keras_dcp.MAD(eps=float("nan")), "eps"),
        (lambda: keras_dcp.MAD(objective="hessian"), "objective"),
        (lambda: keras_dcp.MAD(preserve_top1=1), "preserve_top1"),
        (lambda: keras_dcp.MAD(surrogate="not a model"), "surrogate"),
        (lambda: keras_dcp.AdaptiveMisinformation(tau=0.0), "tau"),
        (lambda: keras_dcp.AdaptiveMisinformation(tau=1.5), "tau"),
        (lambda: keras_dcp.AdaptiveMisinformation(nu=-1.0), "nu"),
        (lambda: keras_dcp.AdaptiveMisinformation(misinformation_model=3), "misinformation_model"),
    ],
)
def test_second_model_defenses_reject_bad_arguments(make, name):
    with pytest.raises(ValueError, match=name):
        make()


def test_second_model_must_match_the_protected_model():
    wrong_classes = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(ValueError, match="must output"):
        keras_dcp.MAD(wrong_classes)([keras.Input((NUM_CLASSES,)), keras.Input((FEATURES,))])
    with pytest.raises(ValueError, match="takes inputs of shape"):
        keras_dcp.MAD(_second_model())([keras.Input((NUM_CLASSES,)), keras.Input((FEATURES + 1,))])
    with pytest.raises(ValueError, match="no MAD surrogate"):
        keras_dcp.MAD()([keras.Input((NUM_CLASSES,)), keras.Input((FEATURES,))])
    with pytest.raises(ValueError, match="probabilities, inputs"):
        keras_dcp.MAD(_second_model())(keras.Input((NUM_CLASSES,)))


def test_top_k_larger_than_classes_raises():
    with pytest.raises(ValueError, match="k"):
        keras_dcp.TopK(k=11)(keras.Input((NUM_CLASSES,)))


def test_tau_none_ties_to_beta():
    y = np.array([[0.75, 0.25]], "float32")
    tied = keras.ops.convert_to_numpy(keras_dcp.DeceptionLayer(beta=0.8)(y))
    explicit = keras.ops.convert_to_numpy(keras_dcp.DeceptionLayer(beta=0.8, tau=0.8)(y))
    np.testing.assert_array_equal(tied, explicit)
    assert not np.array_equal(tied, y)


# --- other backends -----------------------------------------------------------------------

@pytest.mark.parametrize("backend, module", [("jax", "jax"), ("torch", "torch")])
def test_layer_runs_under_other_backends(backend, module):
    import importlib.util

    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    script = textwrap.dedent(
        """
        import numpy as np, keras, keras_dcp
        assert keras.backend.backend() == "%s"
        y = np.array([[0.5, 0.3, 0.2], [0.98, 0.01, 0.01]], "float32")
        out = keras.ops.convert_to_numpy(keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2)(y))
        assert abs(out[0].sum() - 1) < 1e-6 and out[0, 0] < 0.5
        assert out[1].tobytes() == y[1].tobytes()
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras_dcp.DeceptionLayer()(keras.layers.Softmax()(inputs)))
        # The baselines that run a second model: the closed forms work on every backend.
        victim = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
        x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
        for defense in (keras_dcp.MAD(eps=0.5), keras_dcp.AdaptiveMisinformation(victim, tau=0.9)):
            out = keras_dcp.protect(victim, defense).predict(x, verbose=0)
            assert np.allclose(out.sum(-1), 1, atol=1e-5) and (np.abs(out - victim.predict(x, verbose=0)).sum(-1) <= 0.5 + 1e-5).all()
        try:
            keras_dcp.MAD(objective="jacobian")
        except ValueError as error:
            assert "TensorFlow backend" in str(error)
        else:
            raise AssertionError("MAD(objective='jacobian') must refuse another backend")
        print("OK", model.predict(np.zeros((2, 3), "float32"), verbose=0).sum())
        """
        % backend
    )
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK" in result.stdout
