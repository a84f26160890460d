"""QAT: tf_keras twins of the defenses, Keras 3 -> tf_keras, QAT -> protected -> int8 TFLite."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_dcp  # noqa: E402

tf_keras = pytest.importorskip("tf_keras")
pytest.importorskip("tensorflow_model_optimization")

from keras_dcp import qat  # noqa: E402
from keras_dcp.tflite import audit_tflite, export_tflite, predict  # noqa: E402
from tests.test_tflite_export import tiny_classifier  # noqa: E402

DEFENSES = [
    keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2),
    keras_dcp.DeceptionLayer(beta=1.2, gamma=0.3, tau=0.9, l1_budget=0.5, preserve_top1=True),
    keras_dcp.ReverseSigmoid(beta=1.0, gamma=0.2),
    keras_dcp.Rounding(2),
    keras_dcp.TopK(2),
    keras_dcp.TopLabel(),
]


@pytest.mark.parametrize("defense", DEFENSES, ids=lambda d: type(d).__name__)
def test_twin_runs_the_same_math(defense, rng):
    y = rng.dirichlet(np.full(10, 0.5), size=64).astype("float32")
    twin = qat.twin_of(defense)
    assert isinstance(twin, tf_keras.layers.Layer)
    np.testing.assert_array_equal(twin(y).numpy(), keras.ops.convert_to_numpy(defense(y)))
    np.testing.assert_array_equal(twin(y, training=True).numpy(), y)


def test_twin_config_round_trip_and_registration():
    twin = qat.twin_of(keras_dcp.DeceptionLayer(beta=0.5, tau=0.6))
    inputs = tf_keras.Input((4,))
    model = tf_keras.Model(inputs, twin(inputs))
    restored = tf_keras.models.model_from_json(model.to_json())
    assert type(restored.layers[-1]).__name__ == "DeceptionLayer"
    assert restored.layers[-1].get_config()["beta"] == 0.5 and restored.layers[-1].tau == 0.6
    assert tf_keras.utils.get_registered_name(type(twin)) == "keras_dcp>DeceptionLayer"
    with pytest.raises(ValueError, match="beta"):
        qat.twin_class(keras_dcp.DeceptionLayer)(beta=-1.0)


def test_to_tf_keras_keeps_predictions():
    model = tiny_classifier(seed=3)
    converted = qat.to_tf_keras(model)
    x = np.random.default_rng(0).random((16, 8, 8, 3)).astype("float32")
    np.testing.assert_allclose(converted.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)
    assert [layer.name for layer in converted.layers] == [layer.name for layer in model.layers]


def test_qat_victim_to_protected_int8_tflite():
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, size=96)
    qat_model = qat.quantize_model(qat.to_tf_keras(tiny_classifier(seed=1)))
    history = qat.train_qat(qat_model, x, y, epochs=1, batch_size=32, verbose=0)
    assert np.isfinite(history["loss"]).all()
    protected = qat.protect_qat(qat_model, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2))
    # A QAT backbone keeps its trained ranges: no representative data needed.
    content = export_tflite(protected, None, quantize="int8")
    report = audit_tflite(content)
    assert report["inputs"][0]["dtype"] == "int8" and report["outputs"][0]["dtype"] == "int8"
    types = {op["op"]: set(op["output_types"]) for op in report["ops"]}
    assert types["CONV_2D"] == {"int8"} and types["LOG"] == {"float32"}
    out = predict(content, x)
    reference = protected.predict(x, verbose=0)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=10 / 255)
    # int8 backbone with the trained ranges + float tail: about 0.01 here
    # (ResNet-20 numbers in docs/results/tflite.md).
    assert np.abs(out - reference).sum(1).mean() < 0.05



def conv_bn_classifier(seed=0):
    """8x8x3 -> conv -> BN -> ReLU -> conv -> BN -> add -> ReLU -> pool -> dense -> softmax (as the zoo ResNets)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = keras.layers.ReLU(name="r1")(keras.layers.BatchNormalization(name="b1")(x))
    y = keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="c2")(x)
    y = keras.layers.BatchNormalization(name="b2")(y)
    x = keras.layers.ReLU(name="r2")(keras.layers.Add(name="add")([x, y]))
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    logits = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))


@pytest.fixture(scope="module")
def trained_qat_conv_bn():
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 10, size=96)
    model = qat.quantize_model(qat.to_tf_keras(conv_bn_classifier(seed=2)))
    qat.train_qat(model, x, y, epochs=2, batch_size=32, verbose=0, align=False)
    return model, x


def test_quantize_model_lets_the_converter_fold_batch_norm(trained_qat_conv_bn):
    """Conv + BN (+ ReLU) pairs become one int8 CONV_2D, with no float op between convs."""
    model, _ = trained_qat_conv_bn
    import tensorflow as tf

    backbone = tf_keras.Model(model.inputs, model.get_layer("quant_probabilities").input)
    converter = tf.lite.TFLiteConverter.from_keras_model(backbone)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]  # a QAT model: ranges from its fake quant
    content = converter.convert()
    ops = [(op["op"], tuple(op["output_types"])) for op in audit_tflite(content)["ops"]]
    assert ops.count(("CONV_2D", ("int8",))) == 2
    assert not [op for op in ops if op[0] in ("MUL", "ADD") and op[1] != ("int8",)], ops


def test_align_biases_puts_the_keras_biases_on_the_int8_grid(trained_qat_conv_bn):
    model, x = trained_qat_conv_bn
    import tensorflow as tf

    from keras_dcp.qat.alignment import folded_bias, tflite_biases

    changes = qat.align_biases(model)
    assert set(changes) == {"quant_b1", "quant_b2", "quant_logits"}
    assert 0 < max(changes.values()) < 1e-2
    # Converted again, every int32 bias is exactly the Keras model's folded bias.
    backbone = tf_keras.Model(model.inputs, model.get_layer("quant_probabilities").input)
    converter = tf.lite.TFLiteConverter.from_keras_model(backbone)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    real = tflite_biases(converter.convert())
    folded = {
        "quant_b1": folded_bias(model.get_layer("quant_b1").layer, None),
        "quant_b2": folded_bias(model.get_layer("quant_b2").layer, None),
        "quant_logits": model.get_layer("quant_logits").layer.bias.numpy(),
    }
    for name, bias in folded.items():
        (match,) = [value for tensor, value in real.items() if name in tensor.replace(";", "/").split("/")]
        np.testing.assert_allclose(match, bias, rtol=0, atol=1e-6)
    assert max(qat.align_biases(model).values()) < 1e-6  # a second call moves nothing


def test_align_biases_needs_a_qat_model():
    with pytest.raises(ValueError, match="QAT model"):
        qat.align_biases(qat.to_tf_keras(conv_bn_classifier()))


def test_mixup_images_blends_pairs_and_checks_arguments():
    from keras_dcp.qat.selection import mixup_images

    x = np.stack([np.full((2, 2, 1), v, "float32") for v in (0.0, 1.0, 2.0)])
    blends = mixup_images(x, 50, seed=0)
    assert blends.shape == (50, 2, 2, 1) and blends.dtype == np.float32
    # Each blend is lambda a + (1 - lambda) b of two different images, lambda in [0.3, 0.7]:
    # never one of the images itself.
    assert not np.isin(blends[:, 0, 0, 0], x[:, 0, 0, 0]).any()
    assert blends.min() >= 0.3 - 1e-6 and blends.max() <= 2.0 - 0.3 + 1e-6
    np.testing.assert_array_equal(mixup_images(x, 5, seed=1), mixup_images(x, 5, seed=1))
    with pytest.raises(ValueError, match="two images"):
        mixup_images(x[:1], 5)
    with pytest.raises(ValueError, match="must be an int >= 1"):
        mixup_images(x, 0)
    with pytest.raises(ValueError, match="low"):
        mixup_images(x, 5, low=0.8, high=0.2)


def test_most_faithful_scores_each_candidate_and_picks_the_smallest_l1(trained_qat_conv_bn):
    from keras_dcp.qat.selection import most_faithful

    model, x = trained_qat_conv_bn
    with pytest.raises(ValueError, match="at least one"):
        most_faithful([], x)
    other = qat.quantize_model(qat.to_tf_keras(conv_bn_classifier(seed=5)))
    rng = np.random.default_rng(1)
    qat.train_qat(other, x, rng.integers(0, 10, size=len(x)), epochs=1, batch_size=32, verbose=0)
    best, scores = most_faithful([model, other], x, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2))
    assert len(scores) == 2 and all(s["rows"] == len(x) and 0 <= s["agreement"] <= 1 for s in scores)
    assert best == int(np.argmin([s["mean_l1"] for s in scores]))


def test_export_warns_when_a_qat_model_is_not_aligned():
    import warnings

    rng = np.random.default_rng(3)
    x = rng.random((64, 8, 8, 3)).astype("float32")
    model = qat.quantize_model(qat.to_tf_keras(conv_bn_classifier(seed=4)))
    qat.train_qat(model, x, rng.integers(0, 10, size=64), epochs=1, batch_size=32, verbose=0, align=False)
    protected = qat.protect_qat(model, keras_dcp.DeceptionLayer())
    with pytest.warns(UserWarning, match="align_biases"):
        export_tflite(protected, None, quantize="int8")
    qat.align_biases(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*align_biases.*")
        export_tflite(protected, None, quantize="int8")


# --- faithful int8: QAT as distillation from the float protected model (issue 12) ------------

def _small_protected(seed=0):
    import keras

    import keras_dcp
    from keras_dcp.attacks import _testing

    keras.utils.set_random_seed(seed)
    data = _testing.digits(16)
    model = keras_dcp.models.get_model("small_cnn", (16, 16, 3), 10, width=4)  # the zoo's Rescaling input
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(*data["train"], epochs=5, batch_size=64, verbose=0)
    return keras_dcp.protect(model, keras_dcp.DeceptionLayer()), data


def test_calibrate_ranges_starts_qat_at_the_post_training_model():
    from keras_dcp import qat
    from keras_dcp.qat.distill import split_protected_keras
    from keras_dcp.tflite import compare_outputs

    protected, data = _small_protected()
    classifier, _ = split_protected_keras(protected)
    x = data["test"][0]
    reference = classifier.predict(x, verbose=0)
    model = qat.quantize_model(qat.to_tf_keras(classifier))
    before = compare_outputs(model.predict(x, verbose=0), reference)
    qat.calibrate_ranges(model, data["train"][0])
    after = compare_outputs(model.predict(x, verbose=0), reference)
    assert after["agreement"] >= 0.97 and after["mean_l1"] < 0.05
    assert after["mean_l1"] < before["mean_l1"]


def test_faithful_int8_is_int8_end_to_end_and_reports_against_the_float_model():
    from keras_dcp import qat
    from keras_dcp.tflite import audit_tflite, fidelity

    protected, data = _small_protected()
    content, report = qat.faithful_int8(protected, data["train"][0], epochs=1, seeds=(0, 1), check_rows=200,
                                        verbose=0)
    audit = audit_tflite(content)
    assert [t["dtype"] for t in audit["inputs"] + audit["outputs"]] == ["int8", "int8"]
    ops = [op["op"] for op in audit["ops"]]
    assert ops[0] == "DEPTHWISE_CONV_2D" and ops.count("DEQUANTIZE") == 1  # no float block at the input
    assert report["chosen_seed"] in (0, 1) and len(report["candidates"]) == 2
    chosen = next(c for c in report["candidates"] if c["seed"] == report["chosen_seed"])
    assert chosen["export_vs_float"]["mean_l1"] == min(c["export_vs_float"]["mean_l1"] for c in report["candidates"])
    for key in ("export_vs_float", "export_vs_qat_keras", "qat_keras_vs_float"):
        assert 0.0 <= chosen[key]["mean_l1"] <= 2.0
    # The report is against the float protected model: recompute it on the test images.
    judged = fidelity(content, protected, data["test"][0])
    assert judged["agreement"] > 0.9


def test_export_tflite_with_training_images_runs_the_faithful_path():
    from keras_dcp.tflite import export_tflite

    protected, data = _small_protected()
    content = export_tflite(protected, None, quantize="int8", training_images=data["train"][0][:300])
    assert content[4:8] == b"TFL3"
    with pytest.raises(ValueError, match="faithful int8"):
        export_tflite(protected, None, quantize="fp16", training_images=data["train"][0])


def test_cli_export_train(tmp_path, capsys):
    import numpy as np

    from keras_dcp.cli import main

    protected, data = _small_protected()
    protected.save(tmp_path / "p.keras")
    np.savez(tmp_path / "train.npz", x=(data["train"][0][:300] * 255).astype("uint8"))
    out = tmp_path / "p.tflite"
    code = main(["export", str(tmp_path / "p.keras"), "-o", str(out), "--quantize", "int8", "--train",
                 str(tmp_path / "train.npz"), "--qat-epochs", "1", "--report", str(tmp_path / "r.json")])
    assert code == 0 and out.read_bytes()[4:8] == b"TFL3"
    assert "against the float protected model" in capsys.readouterr().out
    assert (tmp_path / "r.json").exists()
    assert main(["export", str(tmp_path / "p.keras"), "-o", str(tmp_path / "q.tflite"), "--quantize", "fp16",
                 "--train", str(tmp_path / "train.npz")]) == 2


def test_qat_export_for_the_edge_tpu_is_int8_end_to_end():
    # issue 12: the zoo's Rescaling is an int8 DEPTHWISE_CONV_2D in QAT exports, so with the Edge TPU
    # formulation of DCP on the QAT model's logits every op maps to the Edge TPU.
    from keras_dcp.attacks import _testing
    from keras_dcp.cli.audit import failed_requirements

    data = _testing.digits(16)
    keras.utils.set_random_seed(0)
    model = keras_dcp.models.get_model("small_cnn", (16, 16, 3), 10, width=4)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(*data["train"], epochs=3, verbose=0)
    quantized = qat.quantize_model(qat.to_tf_keras(model))
    qat.calibrate_ranges(quantized, data["train"][0])
    protected = qat.protect_qat(quantized, keras_dcp.EdgeTPUDeception())
    content = export_tflite(protected, None, quantize="int8", tail="int8", representative=data["train"][0][:200])
    report = audit_tflite(content)
    assert failed_requirements(report, ["edgetpu", "int8-io"]) == []
    assert report["ops"][0]["op"] == "DEPTHWISE_CONV_2D"
    reference = keras_dcp.tflite.protect_for_edgetpu(model)
    assert keras_dcp.tflite.fidelity(content, reference, data["test"][0])["agreement"] > 0.95
