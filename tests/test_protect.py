"""keras_dcp.protect and `keras-dcp protect`."""

import keras
import numpy as np
import pytest

import keras_dcp
from keras_dcp.cli import main


def _model(final="softmax", seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    if final == "softmax":
        out = keras.layers.Dense(4, activation="softmax")(x)
    elif final == "logits":
        out = keras.layers.Dense(4)(x)
    elif final == "softmax_layer":
        out = keras.layers.Softmax()(keras.layers.Dense(4)(x))
    else:  # an activation we cannot interpret
        out = keras.layers.Dense(4, activation="sigmoid")(x)
    return keras.Model(inputs, out, name=f"m_{final}")


X = np.random.default_rng(0).normal(size=(32, 6)).astype("float32") * 2


@pytest.mark.parametrize("final", ["softmax", "softmax_layer"])
def test_protects_a_probability_model(final):
    model = _model(final)
    protected = keras_dcp.protect(model, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2))
    expected = keras.ops.convert_to_numpy(keras_dcp.ops.deception(model.predict(X, verbose=0), 0.7, 0.2))
    np.testing.assert_allclose(protected.predict(X, verbose=0), expected, atol=1e-6)
    assert isinstance(protected.layers[-1], keras_dcp.DeceptionLayer)


def test_inserts_softmax_for_logits():
    model = _model("logits")
    protected = keras_dcp.protect(model, keras_dcp.TopLabel())
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model.predict(X, verbose=0)))
    np.testing.assert_array_equal(protected.predict(X, verbose=0).argmax(-1), probabilities.argmax(-1))
    assert any(isinstance(layer, keras.layers.Softmax) for layer in protected.layers)


def test_undetectable_output_asks_for_from_logits():
    with pytest.raises(ValueError, match="from_logits"):
        keras_dcp.protect(_model("sigmoid"))
    protected = keras_dcp.protect(_model("sigmoid"), from_logits=False)
    assert protected.output.shape[-1] == 4


def test_does_not_modify_the_users_model():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    layers_before = list(model.layers)
    protected = keras_dcp.protect(model)
    protected.compile(optimizer=keras.optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    protected.fit(X, np.arange(32) % 4, epochs=1, verbose=0)
    assert model.layers == layers_before
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_subclassed_model_is_wrapped():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.dense(x)

    net = Net()
    net(X[:1])
    with pytest.raises(ValueError, match="input_shape"):
        keras_dcp.protect(net, from_logits=False)
    protected = keras_dcp.protect(net, from_logits=False, input_shape=(6,))
    np.testing.assert_allclose(protected.predict(X, verbose=0).sum(-1), 1.0, atol=1e-5)


def test_already_protected_and_bad_arguments():
    protected = keras_dcp.protect(_model())
    with pytest.raises(ValueError, match="already ends in a defense"):
        keras_dcp.protect(protected)
    with pytest.raises(ValueError, match="defense"):
        keras_dcp.protect(_model(), defense=keras.layers.Dense(3))
    with pytest.raises(ValueError, match="keras.Model"):
        keras_dcp.protect(lambda x: x)


def test_spec_parsing():
    layer = keras_dcp.build_defense("dcp:beta=0.5,gamma=0.1,tau=0.6,nu=none,preserve_top1=true")
    assert (layer.beta, layer.gamma, layer.tau, layer.nu, layer.preserve_top1) == (0.5, 0.1, 0.6, None, True)
    assert keras_dcp.build_defense("none") is None
    assert keras_dcp.build_defense("rounding:decimals=1").decimals == 1
    with pytest.raises(ValueError, match="Unknown defense"):
        keras_dcp.build_defense("magic")
    with pytest.raises(ValueError, match="valid"):
        keras_dcp.build_defense("dcp:betta=0.5")
    with pytest.raises(ValueError, match="beta"):
        keras_dcp.build_defense("dcp:beta=-1")


def test_cli_protect_round_trip(tmp_path, capsys):
    model = _model("logits")
    model.save(tmp_path / "victim.keras")
    out = tmp_path / "protected.keras"
    code = main(["protect", str(tmp_path / "victim.keras"), "-o", str(out), "--beta", "0.6", "--gamma", "0.3", "--tau", "0.5", "--from-logits"])
    assert code == 0 and out.exists()
    protected = keras.saving.load_model(out, safe_mode=True)
    layer = protected.layers[-1]
    assert isinstance(layer, keras_dcp.DeceptionLayer) and (layer.beta, layer.gamma, layer.tau) == (0.6, 0.3, 0.5)
    assert "DeceptionLayer" in capsys.readouterr().out


def test_cli_protect_reports_bad_input(tmp_path, capsys):
    _model("sigmoid").save(tmp_path / "v.keras")
    assert main(["protect", str(tmp_path / "v.keras"), "-o", str(tmp_path / "o.keras")]) == 2
    assert "from_logits" in capsys.readouterr().err
    assert main(["protect", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "o.keras")]) == 2
    assert main(["protect", str(tmp_path / "v.keras"), "-o", str(tmp_path / "o.keras"), "--beta", "-1", "--from-logits"]) == 2
    assert "beta" in capsys.readouterr().err


def test_cli_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "protect" in capsys.readouterr().out


# --- a protected model is a drop-in replacement (issue 10) ------------------------------------

def _single_input_model():
    return _model("softmax")


def _sequential_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [keras.Input((6,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(4, activation="softmax")],
        name="seq",
    )


def _dict_input_model():
    keras.utils.set_random_seed(0)
    inputs = {"a": keras.Input((6,), name="a"), "b": keras.Input((6,), name="b")}
    x = keras.layers.Concatenate()([inputs["a"], inputs["b"]])
    return keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(x), name="two")


def _ways_to_call(model, path, x):
    """Every way a user calls a served model, each as numpy (n, K)."""
    import tensorflow as tf

    model.export(str(path), verbose=False)
    loaded = tf.saved_model.load(str(path))
    signature = loaded.signatures["serving_default"]
    if isinstance(x, dict):
        by_name = {key: tf.constant(value) for key, value in x.items()}
    else:
        (input_name,) = signature.structured_input_signature[1]
        by_name = {input_name: tf.constant(x)}
    (output,) = signature(**by_name).values()
    tensor_x = {k: tf.constant(v) for k, v in x.items()} if isinstance(x, dict) else tf.constant(x)
    return {
        "predict": model.predict(x, verbose=0),
        "__call__": keras.ops.convert_to_numpy(model(x)),
        "serve": loaded.serve(tensor_x).numpy(),
        "serving_default": output.numpy(),
        "signature inputs": sorted(signature.structured_input_signature[1]),
    }


@pytest.mark.parametrize("make", [_single_input_model, _sequential_model, _dict_input_model])
def test_protected_model_is_called_like_the_original(make, tmp_path):
    model = make()
    dict_input = make is _dict_input_model
    x = {"a": X[:5], "b": X[5:10]} if dict_input else X[:5]
    # A defense that leaves these rows alone (tau tiny): the answers must be identical.
    protected = keras_dcp.protect(model, keras_dcp.DeceptionLayer(beta=0.7, tau=0.01))
    assert isinstance(protected.input, dict) == dict_input and not isinstance(protected.input, list)
    bare = _ways_to_call(model, tmp_path / "bare", x)
    guarded = _ways_to_call(protected, tmp_path / "protected", x)
    assert guarded["signature inputs"] == bare["signature inputs"]
    for way in ("predict", "__call__", "serve", "serving_default"):
        np.testing.assert_allclose(guarded[way], bare[way], atol=1e-6, err_msg=way)


def test_protected_model_runs_in_tflite_like_the_original():
    model = _single_input_model()
    protected = keras_dcp.protect(model, keras_dcp.DeceptionLayer(beta=0.7, tau=0.01))
    from keras_dcp.tflite import export_tflite, predict

    bare = predict(export_tflite(model), X)
    guarded = predict(export_tflite(protected), X)
    np.testing.assert_allclose(guarded, bare, atol=1e-6)
