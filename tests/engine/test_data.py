from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from numsweep.engine.data import DataError, load_dataset


def write_cifar_folder(folder: Path, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A cifar-10-batches-py folder in the official pickle format, n images per batch."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n)]
        with (folder / name).open("wb") as fh:
            pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data,
                         b"filenames": [b"a.png"] * n}, fh)
        xs.append(data)
        ys.append(labels)
    return np.concatenate(xs), np.concatenate(ys)


def test_cifar_folder_is_read_in_official_order_and_hwc(tmp_path: Path) -> None:
    x, y = write_cifar_folder(tmp_path / "cifar-10-batches-py")
    data = load_dataset(tmp_path / "cifar-10-batches-py")
    assert data.x_train.shape == (100, 32, 32, 3)
    assert data.x_test.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(data.y_train, y[:100])
    # Channel c of pixel (r, k) of image i is x[i, c * 1024 + r * 32 + k].
    assert data.x_train[3, 5, 7, 2] == x[3, 2 * 1024 + 5 * 32 + 7]
    assert load_dataset(tmp_path).x_train.shape == (100, 32, 32, 3)


def test_cifar_pickle_with_foreign_objects_is_refused(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "c")
    with (tmp_path / "c" / "data_batch_2").open("wb") as fh:
        pickle.dump({b"data": Path("x"), b"labels": []}, fh)
    with pytest.raises(DataError, match=r"data_batch_2: not a CIFAR-10 batch \(refusing"):
        load_dataset(tmp_path / "c")


def test_truncated_cifar_batch_names_the_file(tmp_path: Path) -> None:
    write_cifar_folder(tmp_path / "c")
    path = tmp_path / "c" / "test_batch"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="test_batch: corrupt or truncated"):
        load_dataset(tmp_path / "c")


def test_npz_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data not found"):
        load_dataset(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"bad.npz: not a readable .npz"):
        load_dataset(bad)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="missing array"):
        load_dataset(partial)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x_train=np.zeros((2, 4, 4, 3), np.uint8), y_train=np.zeros(3, np.uint8),
             x_test=np.zeros((2, 4, 4, 3), np.uint8), y_test=np.zeros(2, np.uint8))
    with pytest.raises(DataError, match=r"y_train has shape \(3,\), expected \(2,\)"):
        load_dataset(wrong)
