"""The victim <- query presets."""

import numpy as np
import pytest

from keras_dcp import data, models


def test_paper_pairs_are_present():
    pairs = {name: (p.victim, p.queries) for name, p in data.PRESETS.items()}
    assert pairs["cifar10"] == ("cifar10", "cifar100")
    assert pairs["cifar100"] == ("cifar100", "cifar10")
    assert pairs["svhn"] == ("svhn_cropped", "cifar10")
    assert pairs["gtsrb"] == ("gtsrb", "cifar10")
    assert pairs["cub200"] == ("caltech_birds2011", None)
    assert pairs["cifar10-local"] == ("shared:cifar10", "shared:tinyimagenet")
    for preset in data.PRESETS.values():
        assert preset.arch in models.ARCHITECTURES
        assert len(preset.input_shape) == 3 and preset.num_classes >= 10
    assert data.PRESETS["cifar100"].num_classes == 100 and data.PRESETS["gtsrb"].num_classes == 43


def test_get_preset_aliases_and_errors():
    assert data.get_preset("SVHN_cropped").name == "svhn"
    assert data.get_preset("caltech_birds2011").name == "cub200"
    with pytest.raises(ValueError, match="choose from"):
        data.get_preset("imagenet")


def test_digits_preset_is_offline_and_shaped_for_the_victim():
    loaded = data.load_preset("digits", max_queries=50, max_test=20)
    assert loaded["x_train"].shape[1:] == (32, 32, 1)
    assert loaded["x_queries"].shape == (50, 32, 32, 1)
    assert len(loaded["x_test"]) == 20 and loaded["y_test"].dtype == np.int64
    indomain = data.load_preset("digits-indomain")
    assert len(indomain["x_queries"]) == len(data.load_digits("query")[0])


def test_cifar10_local_preset_reads_the_shared_layout(tmp_path, rng):
    for folder, files in (("cifar10", ("train", "test")), ("tinyimagenet", ("queries",))):
        (tmp_path / folder).mkdir()
        for stem in files:
            x = rng.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
            arrays = {"x": x} if stem == "queries" else {"x": x, "y": np.arange(6) % 10}
            np.savez(tmp_path / folder / f"{stem}.npz", **arrays)
    loaded = data.load_preset("cifar10-local", data_dir=str(tmp_path), max_queries=4)
    assert loaded["x_train"].shape == (6, 32, 32, 3) and loaded["x_queries"].shape == (4, 32, 32, 3)


def test_paper_preset_with_tfds_mock(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=4):
        loaded = data.load_preset("svhn", data_dir=str(tmp_path))
    assert loaded["x_test"].shape == (4, 32, 32, 3) and loaded["x_queries"].shape == (4, 32, 32, 3)


def test_cub200_needs_user_queries(tmp_path, rng):
    tfds = pytest.importorskip("tensorflow_datasets")
    queries = tmp_path / "q.npz"
    np.savez(queries, x=rng.integers(0, 256, size=(3, 50, 40, 3), dtype=np.uint8))
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match="queries"):
            data.load_preset("cub200", data_dir=str(tmp_path))
        loaded = data.load_preset("cub200", data_dir=str(tmp_path), queries=str(queries))
    assert loaded["x_queries"].shape == (3, 224, 224, 3)  # resized to the victim's input
