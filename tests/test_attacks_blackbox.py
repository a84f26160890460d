"""BlackBox: every target kind, exact counting, budget refusal, bad inputs, the log."""

import numpy as np
import pytest

import keras_dcp
from keras_dcp import attacks
from keras_dcp.attacks import _testing

INPUT_SHAPE = (8, 8, 3)
NUM_CLASSES = 4


@pytest.fixture(scope="module")
def protected_model():
    import keras

    keras.utils.set_random_seed(0)
    model = _testing.make_mlp(INPUT_SHAPE, NUM_CLASSES, hidden=16)
    # Large weights make some rows confident and others not, so the defense acts on a mix.
    model.set_weights([w * 4.0 for w in model.get_weights()])
    return keras_dcp.protect(model, keras_dcp.DeceptionLayer(beta=0.7, gamma=0.2))


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((37, *INPUT_SHAPE)).astype("float32")


@pytest.fixture(scope="module")
def reference(protected_model, images):
    return protected_model.predict(images, verbose=0)


@pytest.fixture(scope="module")
def exported(protected_model, tmp_path_factory):
    """The same defended model as a .keras file, a SavedModel directory and a .tflite file."""
    import tensorflow as tf

    root = tmp_path_factory.mktemp("victims")
    keras_path = str(root / "victim.keras")
    protected_model.save(keras_path)
    saved_model = str(root / "saved_model")
    protected_model.export(saved_model, format="tf_saved_model", verbose=False)
    tflite_path = str(root / "victim.tflite")
    with open(tflite_path, "wb") as f:
        f.write(tf.lite.TFLiteConverter.from_saved_model(saved_model).convert())
    return {"keras_file": keras_path, "saved_model": saved_model, "tflite": tflite_path}


@pytest.mark.parametrize("kind", ["model", "keras_file", "saved_model", "tflite", "callable"])
def test_every_target_kind_answers_like_the_model(kind, protected_model, exported, images, reference):
    if kind == "model":
        target = protected_model
    elif kind == "callable":
        target = lambda x: protected_model.predict(x, verbose=0)  # noqa: E731
    else:
        target = exported[kind]
    victim = attacks.BlackBox(target, budget=100, batch_size=16)
    answers = victim.query(images)
    assert answers.shape == (len(images), NUM_CLASSES)
    assert answers.dtype == np.float32
    np.testing.assert_allclose(answers, reference, atol=1e-5)
    assert victim.queries_used == len(images)
    assert victim.remaining == 100 - len(images)
    assert victim.num_classes == NUM_CLASSES
    if kind != "callable":
        assert victim.input_shape == INPUT_SHAPE


def test_counts_per_call_and_log(protected_model, images):
    victim = attacks.BlackBox(protected_model, budget=None, batch_size=8)
    for n, tag in ((5, "a"), (17, "b"), (1, "a")):
        victim.query(images[:n], tag=tag)
    assert victim.queries_used == 23
    assert victim.remaining is None
    assert victim.log.counts == [5, 17, 1]
    assert [r.total for r in victim.log] == [5, 22, 23]
    assert victim.log.counts_by_tag() == {"a": 6, "b": 17}
    with pytest.raises(ValueError, match="record_arrays"):
        victim.log.inputs()


def test_record_arrays_keeps_what_was_answered(protected_model, images, reference):
    victim = attacks.BlackBox(protected_model, record_arrays=True)
    victim.query(images[:10])
    victim.query(images[10:12])
    np.testing.assert_array_equal(victim.log.inputs(), images[:12])
    np.testing.assert_allclose(victim.log.outputs(), reference[:12], atol=1e-6)


def test_budget_refused_before_answering(images):
    calls = []

    def victim_fn(x):
        calls.append(len(x))
        return np.full((len(x), 3), 1 / 3, "float32")

    victim = attacks.BlackBox(victim_fn, budget=20)
    victim.query(images[:15])
    with pytest.raises(attacks.BudgetExceededError, match="5 left"):
        victim.query(images[:6])
    assert issubclass(attacks.BudgetExceededError, RuntimeError)
    assert calls == [15]  # the refused batch never reached the victim
    assert victim.queries_used == 15 and len(victim.log) == 1
    victim.query(images[:5])  # exactly up to the budget is fine
    assert victim.remaining == 0
    with pytest.raises(attacks.BudgetExceededError):
        victim.query(images[:1])


def test_label_mode_answers_one_hot_of_argmax(protected_model, images, reference):
    victim = attacks.BlackBox(protected_model, output="label")
    answers = victim.query(images)
    np.testing.assert_array_equal(answers.sum(axis=1), 1.0)
    np.testing.assert_array_equal(answers.argmax(axis=1), reference.argmax(axis=1))
    assert set(np.unique(answers)) == {0.0, 1.0}


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((2, 8, 8), "float32"), "shape"),
        (np.zeros((8, 8, 3), "float32"), "batch axis"),
        (np.zeros((2, 9, 8, 3), "float32"), "shape"),
        (np.zeros((2, 8, 8, 3), "uint8"), "dtype uint8"),
        (np.full((2, 8, 8, 3), 255.0, "float32"), r"lie in \[0.0, 1.0\]"),
        (np.full((2, 8, 8, 3), -0.1, "float32"), r"lie in"),
        (np.full((2, 8, 8, 3), np.nan, "float32"), "NaN"),
        ("not an array", "numpy array"),
    ],
)
def test_bad_inputs_raise_and_cost_nothing(protected_model, bad, match):
    victim = attacks.BlackBox(protected_model, budget=10)
    with pytest.raises(ValueError, match=match):
        victim.query(bad)
    assert victim.queries_used == 0 and len(victim.log) == 0


def test_custom_input_range_and_float64(protected_model):
    victim = attacks.BlackBox(protected_model, input_range=(-1.0, 1.0))
    answers = victim.query(np.full((3, *INPUT_SHAPE), -0.5))  # float64 is cast
    assert answers.shape == (3, NUM_CLASSES)
    with pytest.raises(ValueError, match="lie in"):
        victim.query(np.full((1, *INPUT_SHAPE), -1.5, "float32"))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"budget": -1}, "budget"),
        ({"budget": 1.5}, "budget"),
        ({"output": "logits"}, "output"),
        ({"input_range": (1.0, 0.0)}, "input_range"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_arguments(protected_model, kwargs, match):
    with pytest.raises(ValueError, match=match):
        attacks.BlackBox(protected_model, **kwargs)


def test_bad_targets(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        attacks.BlackBox(str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="SavedModel"):
        attacks.BlackBox(str(tmp_path))
    with pytest.raises(ValueError, match="target"):
        attacks.BlackBox(42)
    victim = attacks.BlackBox(lambda x: np.zeros((len(x) + 1, 2), "float32"))
    with pytest.raises(ValueError, match="expected"):
        victim.query(np.zeros((2, 4, 4, 3), "float32"))
    assert victim.queries_used == 0


def test_unmetered_path_is_not_counted(protected_model, images, reference):
    victim = attacks.BlackBox(protected_model, budget=1)
    np.testing.assert_allclose(victim.answer_unmetered(images), reference, atol=1e-6)
    assert victim.queries_used == 0 and len(victim.log) == 0
