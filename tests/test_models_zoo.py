"""The model zoo: shapes, the probability head, the input convention, backend independence."""

import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from keras_dcp import models

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "keras_dcp"


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_every_model_outputs_probabilities(name, rng):
    num_classes = 7
    model = models.get_model(name, (32, 32, 3), num_classes)
    assert isinstance(model, keras.Model) and not model.compiled  # uncompiled
    assert model.layers[-1].name == "probabilities"
    assert isinstance(model.layers[-1], keras.layers.Softmax)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, num_classes)
    x = rng.random((3, 32, 32, 3), dtype=np.float32)
    y = keras.ops.convert_to_numpy(model(x, training=False))
    assert y.shape == (3, num_classes)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)
    assert (y >= 0).all()


def test_inputs_in_unit_range_are_rescaled_to_plus_minus_one():
    model = models.small_cnn((16, 16, 1), 3, width=4)
    rescale = model.get_layer("rescale")
    out = keras.ops.convert_to_numpy(rescale(np.array([0.0, 0.5, 1.0], "float32")))
    np.testing.assert_allclose(out, [-1.0, 0.0, 1.0])


def test_resnet_depths_match_he_et_al():
    def convs(model):
        return sum(isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (3, 3) for layer in model.layers)

    resnet20, resnet32 = models.resnet20(), models.resnet32()
    # 6n + 1 3x3 convolutions plus the dense layer = 6n + 2 weighted layers.
    assert convs(resnet20) == 19 and convs(resnet32) == 31
    assert 0.26e6 < resnet20.count_params() < 0.29e6  # He et al.: 0.27M
    assert 0.45e6 < resnet32.count_params() < 0.48e6  # He et al.: 0.46M
    assert resnet20.get_layer("stage3_block3_out").output.shape[1:] == (8, 8, 64)


def test_grayscale_and_small_inputs():
    assert models.small_cnn((28, 28, 1), 10).output_shape == (None, 10)
    assert models.resnet20((28, 28, 1), 10).output_shape == (None, 10)
    assert models.mobilenet_v2((32, 32, 1), 5).output_shape == (None, 5)


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="depth"):
        models.cifar_resnet(21)
    with pytest.raises(ValueError, match="num_classes"):
        models.resnet20(num_classes=1)
    with pytest.raises(ValueError, match="input_shape"):
        models.small_cnn((32, 32), 10)
    with pytest.raises(ValueError, match="at least 32x32"):
        models.mobilenet_v2((16, 16, 3), 10)
    with pytest.raises(ValueError, match="choose from"):
        models.get_model("vgg16")


def test_zoo_protects_and_reloads(tmp_path):
    import keras_dcp

    model = models.small_cnn((16, 16, 3), 4, width=4)
    protected = keras_dcp.protect(model, keras_dcp.DeceptionLayer())
    path = tmp_path / "p.keras"
    protected.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).random((2, 16, 16, 3), dtype=np.float32)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), protected.predict(x, verbose=0), atol=1e-6)


def test_no_tensorflow_import_in_backend_agnostic_code():
    files = list((PACKAGE / "models").glob("*.py")) + [PACKAGE / "training.py"]
    files += [PACKAGE / "experiments" / name for name in ("runner.py", "schema.py", "table.py", "sweep.py")]
    for path in files:
        text = path.read_text()
        assert "import tensorflow" not in text and "from tensorflow" not in text, path


def test_zoo_and_training_run_under_jax():
    pytest.importorskip("jax")
    script = textwrap.dedent(
        """
        import numpy as np, keras
        from keras_dcp import models
        from keras_dcp.training import train_classifier, accuracy
        assert keras.backend.backend() == "jax"
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(64, 16, 16, 1), dtype=np.uint8)
        y = (x.reshape(64, -1).mean(axis=1) > 127).astype("int64")
        model = models.small_cnn((16, 16, 1), 2, width=4)
        train_classifier(model, x, y, epochs=1, batch_size=32, verbose=0, flip=False)
        p = model.predict(x[:4].astype("float32") / 255, verbose=0)
        assert p.shape == (4, 2) and abs(p.sum() - 4) < 1e-4
        assert models.resnet20((16, 16, 3), 3).output_shape == (None, 3)
        print("ok", accuracy(model, x, y))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
        cwd=str(PACKAGE.parent),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ok" in result.stdout
