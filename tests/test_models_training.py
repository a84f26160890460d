"""train_classifier: it learns, augments correctly, checkpoints and resumes."""

import keras
import numpy as np
import pytest

from keras_dcp import data, models
from keras_dcp.training import AugmentedImages, accuracy, augment_batch, train_classifier


@pytest.fixture(scope="module")
def digits16():
    x, y = data.load_digits("all")
    x = data.resize_images(x, (16, 16))
    return x[:600], y[:600], x[1500:], y[1500:]


def test_training_learns_digits(digits16):
    x, y, x_test, y_test = digits16
    keras.utils.set_random_seed(0)
    model = models.small_cnn((16, 16, 1), 10, width=8)
    history = train_classifier(model, x, y, epochs=4, batch_size=64, learning_rate=0.05, flip=False, verbose=0)
    assert len(history["loss"]) == 4 and history["loss"][-1] < history["loss"][0]
    assert accuracy(model, x_test, y_test) > 0.5  # chance is 0.1


def test_checkpoint_resumes_after_the_last_epoch(tmp_path, digits16):
    x, y = digits16[0][:128], digits16[1][:128]
    keras.utils.set_random_seed(0)
    model = models.small_cnn((16, 16, 1), 10, width=4)
    train_classifier(model, x, y, epochs=2, batch_size=64, checkpoint_dir=str(tmp_path), verbose=0)
    assert (tmp_path / "checkpoint.json").exists()
    fresh = models.small_cnn((16, 16, 1), 10, width=4)
    history = train_classifier(fresh, x, y, epochs=3, batch_size=64, checkpoint_dir=str(tmp_path), verbose=0)
    assert len(history["loss"]) == 1  # only the third epoch ran
    assert int(fresh.optimizer.iterations) == 3 * 2  # optimizer state came back too
    again = models.small_cnn((16, 16, 1), 10, width=4)
    assert train_classifier(again, x, y, epochs=3, checkpoint_dir=str(tmp_path), verbose=0) == {}
    np.testing.assert_allclose(again.get_weights()[0], fresh.get_weights()[0])


def test_augment_batch_crops_and_flips(rng):
    x = rng.integers(0, 256, size=(64, 8, 8, 2), dtype=np.uint8)
    flipped_only = augment_batch(x, np.random.default_rng(1), pad=0, flip=True)
    mirrored = [(flipped_only[i] == x[i, :, ::-1]).all() for i in range(64)]
    same = [(flipped_only[i] == x[i]).all() for i in range(64)]
    assert all(m or s for m, s in zip(mirrored, same)) and 10 < sum(mirrored) < 54
    cropped = augment_batch(x, np.random.default_rng(2), pad=2, flip=False)
    assert cropped.shape == x.shape and cropped.dtype == x.dtype
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    for i in range(64):  # every crop is some 8x8 window of the zero-padded image
        windows = [padded[i, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any((cropped[i] == w).all() for w in windows)
    assert (augment_batch(x, np.random.default_rng(3), pad=0, flip=False) == x).all()


def test_augmented_batches_are_seeded_and_cover_the_data(rng):
    x = rng.integers(0, 256, size=(10, 4, 4, 1), dtype=np.uint8)
    y = np.arange(10)
    first = AugmentedImages(x, y, 4, seed=5)
    second = AugmentedImages(x, y, 4, seed=5)
    assert len(first) == 3
    labels = np.concatenate([first[i][1] for i in range(3)])
    assert sorted(labels) == list(range(10))
    np.testing.assert_array_equal(first[1][0], second[1][0])
    assert first[0][0].dtype == np.float32 and first[0][0].max() <= 1.0


def test_bad_inputs_raise(digits16):
    x, y = digits16[0][:8], digits16[1][:8]
    model = models.small_cnn((16, 16, 1), 10, width=4)
    with pytest.raises(ValueError, match="same number"):
        train_classifier(model, x, y[:5], epochs=1)
    with pytest.raises(ValueError, match="epochs"):
        train_classifier(model, x, y, epochs=0)
    with pytest.raises(ValueError, match="Labels must be in"):
        train_classifier(model, x, y + 10, epochs=1)
    with pytest.raises(ValueError, match="images of shape"):
        train_classifier(model, x[..., 0], y, epochs=1)


def test_strategy_scope_trains_and_copies_weights_back(digits16):
    tf = pytest.importorskip("tensorflow")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute needs the TensorFlow backend")
    x, y = digits16[0][:64], digits16[1][:64]
    model = models.small_cnn((16, 16, 1), 10, width=4)
    before = [w.copy() for w in model.get_weights()]
    train_classifier(model, x, y, epochs=1, batch_size=32, strategy=tf.distribute.OneDeviceStrategy("/cpu:0"),
                     verbose=0)
    assert any(not np.allclose(a, b) for a, b in zip(before, model.get_weights()))
