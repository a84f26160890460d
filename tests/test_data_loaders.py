"""Loaders of keras_dcp.data on data the tests make (never the network)."""

import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from keras_dcp import data
from keras_dcp.data import local


def _images(rng, n, shape=(8, 8, 3)):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


# ----------------------------------------------------------------------------- npz


def test_npz_round_trip(tmp_path, rng):
    x, y = _images(rng, 7), rng.integers(0, 5, 7)
    path = tmp_path / "set.npz"
    np.savez(path, x=x, y=y)
    x2, y2 = data.load_dataset(str(path))
    assert x2.dtype == np.uint8 and y2.dtype == np.int64
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(y2, y)


def test_npz_folder_picks_the_split_and_unlabeled_queries(tmp_path, rng):
    np.savez(tmp_path / "train.npz", x=_images(rng, 5), y=np.arange(5))
    np.savez(tmp_path / "test.npz", x=_images(rng, 3), y=np.arange(3))
    np.savez(tmp_path / "queries.npz", x=_images(rng, 4))
    assert len(data.load_dataset(str(tmp_path), "train")[0]) == 5
    assert len(data.load_dataset(str(tmp_path), "test")[0]) == 3
    x, y = data.load_dataset(str(tmp_path), "query")
    assert len(x) == 4 and (y == -1).all()
    assert data.default_query_split(str(tmp_path)) == "train"  # train.npz exists
    os.remove(tmp_path / "train.npz")
    assert data.default_query_split(str(tmp_path)) == "query"


def test_npz_float_images_are_scaled_and_grayscale_gets_a_channel(tmp_path):
    x = np.linspace(0, 1, 2 * 4 * 4, dtype="float32").reshape(2, 4, 4)
    np.savez(tmp_path / "f.npz", x=x, y=[0, 1])
    x2, _ = data.load_npz(str(tmp_path / "f.npz"))
    assert x2.shape == (2, 4, 4, 1) and x2.dtype == np.uint8
    assert x2.max() == 255 and x2.min() == 0


def test_npz_errors_are_clear(tmp_path, rng):
    np.savez(tmp_path / "nox.npz", images=_images(rng, 2))
    with pytest.raises(ValueError, match="'x'"):
        data.load_npz(str(tmp_path / "nox.npz"))
    np.savez(tmp_path / "bad.npz", x=_images(rng, 2), y=[0, 1, 2])
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        data.load_npz(str(tmp_path / "bad.npz"))
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        data.load_dataset(str(tmp_path / "missing.npz"))


def test_shared_prefix_reads_the_shared_layout(tmp_path, rng):
    (tmp_path / "cifar10").mkdir()
    np.savez(tmp_path / "cifar10" / "test.npz", x=_images(rng, 3, (32, 32, 3)), y=[1, 2, 3])
    x, y = data.load_dataset("shared:cifar10", "test", data_dir=str(tmp_path))
    assert x.shape == (3, 32, 32, 3) and list(y) == [1, 2, 3]
    with pytest.raises(FileNotFoundError, match="train.npz"):
        data.load_dataset("shared:cifar10", "train", data_dir=str(tmp_path))


# -------------------------------------------------------------------------- folder


def _write_folder(root, sizes):
    for label, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i, size in enumerate(sizes):
            Image.new("RGB", (size, size), (100 * label, i, 0)).save(root / name / f"{i}.png")


def test_image_folder_labels_are_sorted_class_names(tmp_path):
    _write_folder(tmp_path / "imgs", [6, 6, 6])
    x, y = data.load_dataset(str(tmp_path / "imgs"))
    assert x.shape == (6, 6, 6, 3)
    assert list(y) == [0, 0, 0, 1, 1, 1]
    assert x[3, 0, 0, 0] == 100 and x[0, 0, 0, 0] == 0  # "dog" images are red 100


def test_image_folder_needs_image_size_for_mixed_sizes(tmp_path):
    _write_folder(tmp_path / "train", [5, 9])
    with pytest.raises(ValueError, match="image_size"):
        data.load_image_folder(str(tmp_path / "train"))
    x, _ = data.load_dataset(str(tmp_path), "train", image_size=(7, 7))  # via the split subfolder
    assert x.shape == (4, 7, 7, 3)


def test_image_folder_without_classes_fails(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="class subfolders"):
        data.load_image_folder(str(tmp_path / "empty"))


# ----------------------------------------------------------------------------- IDX


def _write_idx(path, array, compress):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_files_gzip_or_not(tmp_path, rng, compress):
    suffix = ".gz" if compress else ""
    images, labels = _images(rng, 6, (28, 28)), rng.integers(0, 10, 6)
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images, compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, compress)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images[:2], compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[:2], compress)
    x, y = data.load_dataset(str(tmp_path), "train")
    assert x.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)
    x, y = data.load_dataset(str(tmp_path), "test")
    assert len(x) == 2


def test_idx_bad_magic_and_truncation(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX"):
        local.read_idx(str(tmp_path / "junk"))
    (tmp_path / "short").write_bytes(struct.pack(">BBBBI", 0, 0, 8, 1, 10) + b"\x00" * 3)
    with pytest.raises(ValueError, match="holds 3"):
        local.read_idx(str(tmp_path / "short"))


def test_fashion_mnist_idx_points_at_the_debian_package(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        data.load_dataset("fashion-mnist-idx", "train", data_dir=str(tmp_path / "absent"))


# --------------------------------------------------------------------------- GTSRB


def _write_gtsrb(root):
    """Two classes of training signs and a test set, as in the official zips."""
    header = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId\n"
    for class_id, sizes in ((0, (20, 30)), (2, (25,))):
        folder = root / "GTSRB" / "Final_Training" / "Images" / f"{class_id:05d}"
        folder.mkdir(parents=True)
        rows = []
        for i, size in enumerate(sizes):
            name = f"00000_{i:05d}.ppm"
            Image.new("RGB", (size, size), (10 * class_id, 0, 0)).save(folder / name)
            rows.append(f"{name};{size};{size};2;2;{size - 3};{size - 3};{class_id}\n")
        (folder / f"GT-{class_id:05d}.csv").write_text(header + "".join(rows))
    test = root / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    for i, class_id in enumerate((2, 0, 1)):
        Image.new("RGB", (40, 35), (0, 50, 0)).save(test / f"{i:05d}.ppm")
    (test / "GT-final_test.csv").write_text(
        header + "".join(f"{i:05d}.ppm;40;35;5;5;30;30;{c}\n" for i, c in enumerate((2, 0, 1)))
    )


def test_gtsrb_official_layout(tmp_path):
    _write_gtsrb(tmp_path)
    x, y = data.load_dataset("gtsrb", "train", data_dir=str(tmp_path))
    assert x.shape == (3, 32, 32, 3) and list(y) == [0, 0, 2]
    assert x[2, 10, 10, 0] == 20  # class 2 signs are red 20
    x, y = data.load_dataset(str(tmp_path), "test", image_size=(16, 16))  # found as a path too
    assert x.shape == (3, 16, 16, 3) and list(y) == [2, 0, 1]
    x, _ = data.load_gtsrb(str(tmp_path), "train", image_size=(8, 8), crop_roi=True)
    assert x.shape == (3, 8, 8, 3)


def test_gtsrb_missing_data_names_the_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="Final_Training"):
        data.load_gtsrb(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="data-dir"):
        data.load_dataset("gtsrb", "train")
    _write_gtsrb(tmp_path)
    os.remove(tmp_path / "GTSRB" / "Final_Test" / "Images" / "GT-final_test.csv")
    with pytest.raises(FileNotFoundError, match="GT-final_test.csv"):
        data.load_gtsrb(str(tmp_path), "test")


# ---------------------------------------------------------------------------- tfds


def test_tfds_mock_data_gives_uint8_nhwc(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=5):
        x, y = data.load_dataset("cifar10", "train", data_dir=str(tmp_path))
        assert x.shape == (5, 32, 32, 3) and x.dtype == np.uint8 and y.dtype == np.int64
        x, y = data.load_dataset("svhn", "test", data_dir=str(tmp_path))
        assert x.shape == (5, 32, 32, 3) and y.max() < 10
        x, y = data.load_dataset("cub200", "train", data_dir=str(tmp_path), image_size=(24, 24))
        assert x.shape == (5, 24, 24, 3) and y.max() < 200


def test_tfds_refuses_to_download_and_names_the_path(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError) as info:
        data.load_dataset("cifar100", "train", data_dir=str(tmp_path))
    message = str(info.value)
    assert str(tmp_path) in message and "download" in message
    assert not any(tmp_path.iterdir())  # nothing was fetched


# --------------------------------------------------------------- digits and photos


def test_digits_splits_are_disjoint_stratified_and_32x32():
    sizes = {}
    for split in ("train", "test", "query"):
        x, y = data.load_dataset("digits", split)
        assert x.shape[1:] == (32, 32, 1) and x.dtype == np.uint8
        assert set(np.unique(y)) == set(range(10))
        sizes[split] = len(x)
    assert sum(sizes.values()) == 1797
    x_all, _ = data.load_digits("all")
    train = {row.tobytes() for row in data.load_digits("train")[0]}
    test = {row.tobytes() for row in data.load_digits("test")[0]}
    assert len(x_all) == 1797 and sizes["train"] > 2 * sizes["test"] - 10
    # scikit-learn's digits hold a few exact duplicates; the splits share almost none.
    assert len(train & test) <= 5
    with pytest.raises(ValueError, match="splits"):
        data.load_digits("validation")


def test_sample_photos_are_seeded_natural_crops():
    x1, y1 = data.load_sample_photos("train", num_images=6, image_size=(16, 16))
    x2, _ = data.load_sample_photos("train", num_images=6, image_size=(16, 16))
    x3, _ = data.load_sample_photos("test", num_images=6, image_size=(16, 16))
    assert x1.shape == (6, 16, 16, 3) and (y1 == -1).all()
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, x3)
    assert x1.std() > 5  # real photo content, not a constant


def test_to_float_and_match_shape():
    x = np.array([[[[0], [255]]]], np.uint8)
    u = data.to_float(x)
    assert u.dtype == np.float32 and u.min() == 0.0 and u.max() == 1.0
    rgb = data.match_shape(x, (4, 4, 3))
    assert rgb.shape == (1, 4, 4, 3) and (rgb[..., 0] == rgb[..., 2]).all()
    gray = data.match_shape(np.full((1, 2, 2, 3), [255, 0, 0], np.uint8), (2, 2, 1))
    assert gray.shape == (1, 2, 2, 1) and int(gray[0, 0, 0, 0]) == round(0.299 * 255)


def test_unknown_names_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such_set"):
        data.load_dataset(str(tmp_path / "no_such_set"))
    with pytest.raises(ValueError, match="non-empty"):
        data.load_dataset("")
