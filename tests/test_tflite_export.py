"""TFLite export: the four quantization modes, the float tail, the Edge TPU formulation."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import keras_dcp  # noqa: E402
from keras_dcp import ops as defense_ops  # noqa: E402
from keras_dcp.tflite import (  # noqa: E402
    EdgeTPUDeception,
    audit_tflite,
    export_tflite,
    predict,
    protect_for_edgetpu,
)
from keras_dcp.tflite import flatbuffer  # noqa: E402


def tiny_classifier(seed=0, classes=10):
    """8x8x3 images in [0, 1] -> conv -> pool -> dense logits -> softmax (sharpened)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3), name="image")
    x = keras.layers.Rescaling(2.0, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(classes, name="logits", kernel_initializer=keras.initializers.RandomNormal(0, 3))(x)
    return keras.Model(inputs, keras.layers.Softmax(name="probabilities")(logits))


@pytest.fixture(scope="module")
def victim():
    return tiny_classifier()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((64, 8, 8, 3)).astype("float32")


@pytest.fixture(scope="module")
def protected(victim):
    return keras_dcp.protect(victim, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2))


@pytest.fixture(scope="module")
def int8_models(protected, images):
    return {
        "int8": export_tflite(protected, None, quantize="int8", representative=images),
        "float_io": export_tflite(protected, None, quantize="int8", representative=images, io_type="float"),
    }


def test_int8_without_representative_is_a_clear_error(protected):
    with pytest.raises(ValueError, match="representative"):
        export_tflite(protected, None, quantize="int8")


@pytest.mark.parametrize("bad", [dict(quantize="int4"), dict(io_type="uint8"), dict(tail="fp16")])
def test_bad_arguments_are_named(protected, bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        export_tflite(protected, None, **bad)


def test_float_export_matches_keras_and_writes_file(protected, images, tmp_path):
    path = tmp_path / "sub" / "model.tflite"
    content = export_tflite(protected, path, quantize="none")
    assert path.read_bytes() == content
    np.testing.assert_allclose(predict(content, images), protected.predict(images, verbose=0), atol=1e-5)


def test_fixed_batch_export(protected, images):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=export_tflite(protected, None, batch_size=4))
    detail = interpreter.get_input_details()[0]
    assert detail["shape"].tolist() == [4, 8, 8, 3] and detail["shape_signature"].tolist() == [4, 8, 8, 3]
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], images[:4])
    interpreter.invoke()
    out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(out, protected.predict(images[:4], verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="batch_size"):
        export_tflite(protected, None, batch_size=0)


@pytest.mark.parametrize("mode, atol", [("fp16", 0.05), ("dynamic", 0.2)])
def test_fp16_and_dynamic_stay_close_and_keep_float_io(protected, images, mode, atol):
    content = export_tflite(protected, None, quantize=mode)
    inputs, outputs = flatbuffer.io_tensors(content)
    assert inputs[0]["dtype"] == outputs[0]["dtype"] == "float32"
    out = predict(content, images)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-4)
    assert np.abs(out - protected.predict(images, verbose=0)).sum(1).mean() < atol


def test_int8_is_full_integer_with_a_float_tail(int8_models):
    report = audit_tflite(int8_models["int8"])
    assert report["inputs"][0]["dtype"] == "int8" and report["outputs"][0]["dtype"] == "int8"
    assert report["outputs"][0]["scale"][0] == pytest.approx(1 / 255) and report["outputs"][0]["zero_point"] == [-128]
    by_op = {}
    for op in report["ops"]:
        by_op.setdefault(op["op"], set()).update(op["output_types"])
    assert by_op["CONV_2D"] == {"int8"}
    # The head, softmax and the DCP math (LOG is only in DCP) run in float32.
    assert by_op["FULLY_CONNECTED"] == {"float32"}
    assert by_op["SOFTMAX"] == {"float32"} and by_op["LOG"] == {"float32"}


def test_float_tail_gives_distributions_and_int8_output_is_its_rounding(int8_models, protected, images):
    """With float I/O, the tail is exact float DCP: rows sum to 1 and follow Keras closely."""
    out = predict(int8_models["float_io"], images)
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    reference = protected.predict(images, verbose=0)
    assert np.mean(out.argmax(1) == reference.argmax(1)) >= 0.9
    int8_out = predict(int8_models["int8"], images)
    # The int8 output is the float output rounded to 1/255.
    assert np.abs(int8_out - out).max() <= 1 / 255 + 1e-6


def test_naive_int8_tail_is_all_int8_and_not_edgetpu(protected, images):
    content = export_tflite(protected, None, quantize="int8", representative=images, tail="int8")
    report = audit_tflite(content)
    types = {op["op"]: set(op["output_types"]) for op in report["ops"]}
    assert types["SOFTMAX"] == types["LOG"] == types["CONV_2D"] == {"int8"}
    assert not report["edgetpu_all"] and "LOG" in report["edgetpu_unsupported"]


@pytest.mark.parametrize("classes", [10, 100])
def test_edgetpu_formulation_approximates_dcp(classes):
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(2000, classes)) * rng.uniform(0.5, 6, size=(2000, 1))).astype("float32")
    approx = keras.ops.convert_to_numpy(defense_ops.deception_edgetpu(logits))
    exact = keras.ops.convert_to_numpy(defense_ops.deception(keras.ops.softmax(logits)))
    l1 = np.abs(approx - exact).sum(1)
    assert l1.mean() < 3e-3 and l1.max() < 0.02
    assert np.abs(approx.sum(1) - 1).max() < 0.01


def test_edgetpu_layer_config_and_checks():
    layer = EdgeTPUDeception(beta=0.5, gamma=0.3, tau=0.6)
    clone = EdgeTPUDeception.from_config(layer.get_config())
    assert (clone.beta, clone.gamma, clone.tau, clone.nu) == (0.5, 0.3, 0.6, 1000.0)
    with pytest.raises(ValueError, match="beta"):
        EdgeTPUDeception(beta=0)
    with pytest.raises(ValueError, match="preserve_top1"):
        protect_for_edgetpu(tiny_classifier(), keras_dcp.DeceptionLayer(preserve_top1=True))


def test_edgetpu_model_maps_whole_and_stays_close(victim, protected, images):
    edge = protect_for_edgetpu(victim, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2))
    np.testing.assert_allclose(edge.predict(images, verbose=0), protected.predict(images, verbose=0), atol=0.02)
    content = export_tflite(edge, None, quantize="int8", representative=images, tail="int8")
    report = audit_tflite(content)
    assert report["edgetpu_all"], report["edgetpu_unsupported"]
    out = predict(content, images)
    assert np.abs(out - protected.predict(images, verbose=0)).sum(1).mean() < 0.15


def test_float_tail_needs_a_softmax(images):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    logits_only = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="softmax"):
        export_tflite(logits_only, None, quantize="int8", representative=images)


def test_fidelity_of_the_float_export_is_exact_and_int8_is_measured(protected, images, int8_models):
    from keras_dcp.tflite import fidelity

    exact = fidelity(export_tflite(protected, None), protected, images, tau=0.7)
    assert exact["agreement"] == 1.0 and exact["mean_l1"] < 1e-4 and exact["detector_differs"] == 0.0
    assert exact["rows"] == len(images)
    reference = protected.predict(images, verbose=0)
    measured = fidelity(int8_models["int8"], reference, images, xnnpack=False)
    manual = predict(int8_models["int8"], images)
    assert measured["mean_l1"] == pytest.approx(np.abs(manual - reference).sum(1).mean(), abs=0.02)
    assert 0 < measured["mean_l1"] < 0.2


def test_compare_outputs_checks_shapes_and_counts():
    from keras_dcp.tflite import compare_outputs

    a = np.array([[0.6, 0.4], [0.2, 0.8]])
    b = np.array([[0.4, 0.6], [0.2, 0.8]])
    row = compare_outputs(a, b, tau=0.7)
    assert row == {"agreement": 0.5, "mean_l1": pytest.approx(0.2), "detector_differs": 0.0}
    with pytest.raises(ValueError, match=r"\(n, K\)"):
        compare_outputs(a, b[:1])
