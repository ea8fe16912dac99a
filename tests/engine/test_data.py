from __future__ import annotations

import pickle
import shutil
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
    with pytest.raises(DataError, match=r"bad.npz: not an .npz file"):
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


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    good = {"x_train": np.zeros((4, 4, 4, 3), np.uint8), "y_train": np.zeros(4, np.uint8),
            "x_test": np.zeros((2, 4, 4, 3), np.uint8), "y_test": np.zeros(2, np.uint8)}
    np.savez(path, **{**good, **arrays})
    return path


def test_npz_that_is_not_one_never_suggests_unsafe_loading(tmp_path: Path) -> None:
    random = tmp_path / "x.npz"
    random.write_bytes(np.random.default_rng(1).bytes(5000))  # numpy: "allow_pickle=..."
    lone = tmp_path / "lone.npz"
    np.save(lone.with_suffix(".npy"), np.zeros(3))
    lone.with_suffix(".npy").rename(lone)
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_train=np.array([{}, None], dtype=object))
    for path, message in ((random, "not an .npz file"), (lone, "not an .npz file"),
                          (objects, "holds object arrays, not numbers")):
        with pytest.raises(DataError) as info:
            load_dataset(path)
        assert str(info.value).startswith(f"{path}: {message}")
        assert "pickle" not in str(info.value) and "\n" not in str(info.value)


def test_npz_labels_that_are_no_integers_and_too_few_images(tmp_path: Path) -> None:
    strings = _npz(tmp_path / "s.npz", y_train=np.array(["1", "2", "3", "4"]))
    with pytest.raises(DataError, match=r"y_train must hold integer class labels 0..9"):
        load_dataset(strings)  # was: numpy's _UFuncNoLoopError
    floats = _npz(tmp_path / "f.npz", y_test=np.array([0.5, 1.0]))
    with pytest.raises(DataError, match=r"y_test must hold integer class labels"):
        load_dataset(floats)
    empty_test = _npz(tmp_path / "e.npz", x_test=np.zeros((0, 4, 4, 3), np.uint8),
                      y_test=np.zeros(0, np.uint8))
    with pytest.raises(DataError, match=r"x_test holds 0 images, expected at least 1"):
        load_dataset(empty_test)  # was: "cannot reshape array of size 0" in training
    one = _npz(tmp_path / "one.npz", x_train=np.zeros((1, 4, 4, 3), np.uint8),
               y_train=np.zeros(1, np.uint8))
    with pytest.raises(DataError, match=r"x_train holds 1 images, expected at least 2"):
        load_dataset(one)
    assert len(load_dataset(_npz(tmp_path / "ok.npz")).x_train) == 4


# Downloads, against a local HTTP server (never the internet).

@pytest.fixture
def http_folder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """(folder served at base_url, base_url, list of requested paths)."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def make_archive(folder: Path, name: str = "cifar-10-python.tar.gz") -> tuple[Path, np.ndarray]:
    """A small .tar.gz in the official layout (cifar-10-batches-py/...); returns it and y."""
    import tarfile

    _, y = write_cifar_folder(folder / "src" / "cifar-10-batches-py", n=8)
    archive = folder / name
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, y


def test_download_checks_md5_reports_progress_and_extracts(tmp_path: Path,
                                                           http_folder) -> None:  # type: ignore[no-untyped-def]
    from numsweep.engine.data import download, extract_archive, file_md5

    served, base, requests = http_folder
    archive, y = make_archive(served)
    cache = tmp_path / "cache"
    seen: list[tuple[int, int | None]] = []
    got = download(f"{base}/{archive.name}", cache, md5=file_md5(archive),
                   progress=lambda done, total: seen.append((done, total)), chunk=1000)
    assert got == cache / archive.name and got.read_bytes() == archive.read_bytes()
    size = archive.stat().st_size
    assert seen[-1] == (size, size) and len(seen) == -(-size // 1000)
    assert not list(cache.glob("*.part"))
    extract_archive(got, cache)
    data = load_dataset(cache / "cifar-10-batches-py")
    np.testing.assert_array_equal(data.y_train, y[:40])
    # Cached: a second call with the same MD5 does not download again.
    assert len(requests) == 1
    assert download(f"{base}/{archive.name}", cache, md5=file_md5(archive)) == got
    assert len(requests) == 1


def test_load_dataset_downloads_into_the_cache_once(tmp_path: Path, http_folder,  # type: ignore[no-untyped-def]
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from numsweep.engine import data as data_module

    served, base, requests = http_folder
    archive, y = make_archive(served)
    monkeypatch.setenv("NUMSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(data_module, "CIFAR10_URL", f"{base}/{archive.name}")
    monkeypatch.setattr(data_module, "CIFAR10_MD5", data_module.file_md5(archive))
    first = load_dataset(None)
    np.testing.assert_array_equal(first.y_test, y[40:])
    assert (data_module.archive_cache(data_module.CIFAR10_MD5) / "cifar-10-batches-py"
            / "test_batch").is_file()
    np.testing.assert_array_equal(load_dataset("cifar10").x_train, first.x_train)
    assert len(requests) == 1


def test_md5_mismatch_is_one_line_and_keeps_nothing(tmp_path: Path, http_folder) -> None:  # type: ignore[no-untyped-def]
    from numsweep.engine.data import download

    served, base, _ = http_folder
    archive, _ = make_archive(served)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: MD5 \w+ does not match the "
                                        r"expected 0{32}") as err:
        download(f"{base}/{archive.name}", cache, md5="0" * 32)
    assert "\n" not in str(err.value)
    assert list(cache.iterdir()) == []
    with pytest.raises(DataError, match=r"cannot download .*missing\.tar\.gz.*404"):
        download(f"{base}/missing.tar.gz", cache, md5=None)


def test_a_failed_download_says_what_to_pass_instead(tmp_path: Path) -> None:
    from numsweep.engine.data import download

    # nothing listens on port 9 of this machine: as a download while offline fails
    with pytest.raises(DataError) as err:
        download("http://127.0.0.1:9/cifar-10-python.tar.gz", tmp_path, md5=None)
    message = str(err.value)
    assert message.startswith("cannot download http://127.0.0.1:9/cifar-10-python.tar.gz: ")
    assert "--data (or NUMSWEEP_DATA)" in message and "cifar-10-python.tar.gz" in message
    assert "\n" not in message


def test_a_folder_of_npz_files_names_them_and_what_to_pass(tmp_path: Path,
                                                           tiny_npz: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy(tiny_npz, folder / "cifar10.npz")
    with pytest.raises(DataError) as err:
        load_dataset(folder)
    message = str(err.value)
    assert f"but cifar10.npz: pass one of them (--data {folder / 'cifar10.npz'}" in message
    assert "NUMSWEEP_DATA" in message and 'dataset = "cifar10"' in message
    assert "\n" not in message


def test_official_archive_name_is_md5_checked_and_bad_archives_named(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from numsweep.engine.data import extract_archive

    monkeypatch.setenv("NUMSWEEP_CACHE", str(tmp_path / "cache"))
    archive, _ = make_archive(tmp_path)
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz: MD5 \w+ does not match the "
                                        r"official archive's c58f30108f718f92721af3b95e74349a"):
        load_dataset(archive)
    other, y = make_archive(tmp_path / "b", name="my-copy.tar.gz")
    np.testing.assert_array_equal(load_dataset(other).y_train, y[:40])
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(other.read_bytes()[: other.stat().st_size // 2])
    with pytest.raises(DataError, match=r"cut.tar.gz: corrupt or truncated archive"):
        extract_archive(truncated, tmp_path / "out")
    import tarfile

    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(DataError, match=r"empty\.tar\.gz: no cifar-10-batches-py folder inside"):
        extract_archive(empty, tmp_path / "out")


def test_archive_cache_is_keyed_by_content_and_never_reuses_a_bad_extraction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--data X.tar.gz trains on X's bytes or fails with one line, whatever the cache holds."""
    import tarfile

    from numsweep.engine.data import archive_cache, dataset_fingerprint, file_md5

    monkeypatch.setenv("NUMSWEEP_CACHE", str(tmp_path / "cache"))
    # a bad archive first: a well-formed .tar.gz whose test batch is not a pickle
    bad_src = tmp_path / "bad" / "cifar-10-batches-py"
    write_cifar_folder(bad_src, n=8)
    (bad_src / "test_batch").write_bytes(b"not a pickle")
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(bad_src, arcname="cifar-10-batches-py")
    with pytest.raises(DataError, match=r"bad\.tar\.gz: .*test_batch: corrupt") as err:
        load_dataset(bad)
    assert "\n" not in str(err.value)
    assert not archive_cache(file_md5(bad)).exists()  # the bad extraction is not kept
    # ... never makes a later good archive fail
    good, y = make_archive(tmp_path / "a", name="good.tar.gz")
    first = load_dataset(good)
    np.testing.assert_array_equal(first.y_train, y[:40])
    # with a good cache, bad bytes under any name still fail with one line
    noise = tmp_path / "noise.tar.gz"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    for broken in (noise, truncated, bad):
        with pytest.raises(DataError, match=rf"{broken.name}: ") as err:
            load_dataset(broken)
        assert "\n" not in str(err.value)
    # another good archive with other images gets its own cache entry and its own data
    other_src = tmp_path / "o" / "cifar-10-batches-py"
    write_cifar_folder(other_src, n=8)
    with (other_src / "data_batch_1").open("wb") as fh:
        pickle.dump({b"labels": [1] * 8, b"data": np.full((8, 3072), 7, np.uint8)}, fh)
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(other_src, arcname="cifar-10-batches-py")
    assert dataset_fingerprint(load_dataset(other)) != dataset_fingerprint(first)
    # an extraction altered after it was verified is made again from the archive
    cached = archive_cache(file_md5(good)) / "cifar-10-batches-py" / "data_batch_1"
    with cached.open("wb") as fh:
        pickle.dump({b"labels": [0] * 8, b"data": np.zeros((8, 3072), np.uint8)}, fh)
    again = load_dataset(good)
    np.testing.assert_array_equal(again.x_train, first.x_train)
    assert dataset_fingerprint(again) == dataset_fingerprint(first)


def test_dataset_fingerprint_depends_on_the_bytes_not_the_path(tmp_path: Path) -> None:
    from numsweep.engine.data import dataset_fingerprint

    write_cifar_folder(tmp_path / "a" / "cifar-10-batches-py")
    write_cifar_folder(tmp_path / "b" / "cifar-10-batches-py")
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert dataset_fingerprint(a) == dataset_fingerprint(b)
    changed = load_dataset(tmp_path / "b")
    changed.y_test[0] = (changed.y_test[0] + 1) % 10
    assert dataset_fingerprint(changed) != dataset_fingerprint(a)


# Fashion-MNIST idx files.

def write_idx(path: Path, array: np.ndarray) -> None:
    import gzip
    import struct

    magic = 0x800 | array.ndim
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def write_fashion_folder(folder: Path, n_train: int = 12, n_test: int = 5) -> dict[str, np.ndarray]:
    from numsweep.engine.data import FASHION_FILES

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"x_train": rng.integers(0, 256, (n_train, 28, 28)),
              "y_train": rng.integers(0, 10, n_train),
              "x_test": rng.integers(0, 256, (n_test, 28, 28)),
              "y_test": rng.integers(0, 10, n_test)}
    for key, name in FASHION_FILES.items():
        write_idx(folder / name, arrays[key])
    return arrays


def test_fashion_idx_folder_is_read(tmp_path: Path) -> None:
    arrays = write_fashion_folder(tmp_path / "f")
    data = load_dataset(tmp_path / "f")
    assert data.name == "fashion_mnist" and data.classes[0] == "T-shirt/top"
    assert data.x_train.shape == (12, 28, 28, 1) and data.x_test.shape == (5, 28, 28, 1)
    np.testing.assert_array_equal(data.x_train[..., 0], arrays["x_train"])
    np.testing.assert_array_equal(data.y_test, arrays["y_test"])


def _corrupt_gzip(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 64] = b"\x55" * 64
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize(("damage", "message"), [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
     "t10k-images-idx3-ubyte.gz: corrupt or truncated gzip file"),
    (_corrupt_gzip, "t10k-images-idx3-ubyte.gz: corrupt or truncated gzip file"),
    (lambda p: p.write_bytes(b"plain text, not gzip"),
     "t10k-images-idx3-ubyte.gz: corrupt or truncated gzip file"),
    (lambda p: write_idx(p, np.zeros((5, 28), np.uint8)),
     "t10k-images-idx3-ubyte.gz: not an idx file with magic number 2051"),
    (lambda p: p.unlink(), "t10k-images-idx3-ubyte.gz: file missing"),
])
def test_damaged_idx_files_name_the_file(tmp_path: Path, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    write_fashion_folder(tmp_path / "f")
    path = tmp_path / "f" / "t10k-images-idx3-ubyte.gz"
    damage(path)  # the folder is still recognised by its training images
    with pytest.raises(DataError, match=message) as err:
        load_dataset(tmp_path / "f")
    assert "\n" not in str(err.value)


def test_truncated_idx_payload_and_mismatched_counts(tmp_path: Path) -> None:
    import gzip
    import struct

    write_fashion_folder(tmp_path / "f")
    path = tmp_path / "f" / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">II", 2049, 12) + bytes(11))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: truncated idx data "
                                        r"\(11 of 12 bytes\)"):
        load_dataset(tmp_path / "f")
    write_idx(path, np.zeros(11, np.uint8))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte.gz: 11 labels for the 12 "
                                        r"images of train-images-idx3-ubyte.gz"):
        load_dataset(tmp_path / "f")


@pytest.mark.parametrize("shape", [(4, 3, 32, 32), (4, 1, 28, 28), (4, 3, 16, 16),
                                   (4, 4, 8, 8)])
def test_channel_first_images_are_refused_naming_their_shape(tmp_path: Path,
                                                             shape: tuple[int, ...]) -> None:
    path = tmp_path / "chw.npz"
    np.savez(path, x_train=np.zeros(shape, np.uint8), y_train=np.zeros(4, np.uint8),
             x_test=np.zeros(shape, np.uint8), y_test=np.zeros(4, np.uint8))
    with pytest.raises(DataError) as info:
        load_dataset(path)
    message = str(info.value)
    assert f"x_train of shape {shape} looks channel-first" in message
    assert "transpose(0, 2, 3, 1)" in message and "\n" not in message


def write_images(path: Path, shape: tuple[int, ...], **extra: np.ndarray) -> Path:
    np.savez(path, x_train=np.zeros((4, *shape), np.uint8), y_train=np.arange(4, dtype=np.uint8),
             x_test=np.zeros((2, *shape), np.uint8), y_test=np.zeros(2, np.uint8), **extra)
    return path


def test_classes_are_named_only_where_they_are_known(tmp_path: Path) -> None:
    own = load_dataset(write_images(tmp_path / "own.npz", (16, 16, 3)))
    assert own.classes == tuple(str(k) for k in range(10)) and own.image_shape == (16, 16, 3)
    grey = load_dataset(write_images(tmp_path / "grey.npz", (12, 12)))
    assert grey.classes[0] == "0"  # not Fashion-MNIST's T-shirt/top
    assert load_dataset(write_images(tmp_path / "c.npz", (32, 32, 3))).classes[0] == "airplane"
    assert load_dataset(write_images(tmp_path / "f.npz", (28, 28))).classes[0] == "T-shirt/top"
    named = load_dataset(write_images(tmp_path / "named.npz", (8, 8, 3),
                                      classes=np.array(["cat", "dog", "owl", "emu"])))
    assert named.classes == ("cat", "dog", "owl", "emu")
    with pytest.raises(DataError, match="holds label 3 but classes names 2"):
        load_dataset(write_images(tmp_path / "few.npz", (8, 8, 3),
                                  classes=np.array(["cat", "dog"])))
    with pytest.raises(DataError, match="classes must be a list of 1 to 10 names"):
        load_dataset(write_images(tmp_path / "nums.npz", (8, 8, 3), classes=np.arange(3)))
