"""Datasets: CIFAR-10 and Fashion-MNIST from the official files or an ``.npz``, and splits.

Supported sources, by what ``load_dataset`` is given:

- ``None`` or ``"cifar10"``: the official CIFAR-10 python archive, downloaded once into the
  cache folder (:func:`cache_dir`), MD5-checked and extracted;
- a ``.tar.gz`` file: that archive, already downloaded (extracted into the cache under its
  MD5, see :func:`load_archive`);
- a ``cifar-10-batches-py`` folder (or a folder holding one);
- a folder holding the four Fashion-MNIST idx ``.gz`` files;
- an ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (uint8, images HWC or HW;
  channel-first arrays (N, C, H, W) are refused, naming their shape) and optionally
  ``classes`` (the class names, strings).

Class names are CIFAR-10's or Fashion-MNIST's for their files and for images of their shape;
other images are named by their labels ("0" to "9") unless the ``.npz`` names them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import pickle
import shutil
import struct
import tarfile
import tempfile
import urllib.request
import weakref
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from numsweep.errors import NumsweepError

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                   "Sneaker", "Bag", "Ankle boot")
FASHION_FILES = {
    "x_train": "train-images-idx3-ubyte.gz",
    "y_train": "train-labels-idx1-ubyte.gz",
    "x_test": "t10k-images-idx3-ubyte.gz",
    "y_test": "t10k-labels-idx1-ubyte.gz",
}

Progress = Callable[[int, int | None], None]
"""Called with (bytes so far, total bytes or None) while downloading."""


class DataError(NumsweepError):
    """A data file is missing, corrupt, truncated or not what it claims to be."""


@dataclass(frozen=True)
class Dataset:
    """Raw images (N, H, W, C) uint8 and labels (N,) int64, in the official order."""

    name: str
    classes: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


@dataclass(frozen=True)
class Split:
    """Normalised float images (N, H, W, C) and labels for training, validation and test.

    Every split is normalised with the training split's per-feature mean and std.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


def cache_dir() -> Path:
    """numsweep's cache folder (downloaded archives, group-size measurements):
    ``$NUMSWEEP_CACHE``, else ``$XDG_CACHE_HOME/numsweep``, else ``~/.cache/numsweep``."""
    folder = os.environ.get("NUMSWEEP_CACHE")
    if folder:
        return Path(folder)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) / "numsweep" if xdg else Path.home() / ".cache" / "numsweep"


def load_dataset(source: str | os.PathLike[str] | None = None, *,
                 progress: Progress | None = None) -> Dataset:
    """Load a dataset from any supported source (see the module docstring)."""
    if source is None or str(source) == "cifar10":
        archive = download(CIFAR10_URL, cache_dir(), md5=CIFAR10_MD5, progress=progress)
        return load_archive(archive, md5=CIFAR10_MD5)
    path = Path(source)
    if not path.exists():
        raise DataError(f"data not found: {path}")
    if path.is_dir():
        if (path / "data_batch_1").exists():
            return load_cifar10_folder(path)
        if (path / "cifar-10-batches-py").is_dir():
            return load_cifar10_folder(path / "cifar-10-batches-py")
        if (path / FASHION_FILES["x_train"]).exists():
            return load_fashion_mnist_folder(path)
        inside = sorted(p.name for p in path.iterdir()
                        if p.is_file() and p.name.endswith((".npz", ".tar.gz", ".tgz")))
        if inside:  # such as a folder of several datasets
            raise DataError(
                f"{path}: no cifar-10-batches-py files nor Fashion-MNIST idx files in it, but "
                f"{', '.join(inside[:6])}{', ...' if len(inside) > 6 else ''}: pass one of "
                f"them (--data {path / inside[0]}, or NUMSWEEP_DATA), or name the sweep "
                f"spec's dataset (dataset = \"cifar10\" or \"fashion_mnist\") to pick "
                f"<dataset>.npz from the folder")
        raise DataError(f"{path}: no cifar-10-batches-py files nor Fashion-MNIST idx files in it")
    if path.name.endswith((".tar.gz", ".tgz")):
        md5 = file_md5(path)
        if path.name == CIFAR10_URL.rsplit("/", 1)[-1] and md5 != CIFAR10_MD5:
            raise DataError(f"{path}: MD5 {md5} does not match the official archive's "
                            f"{CIFAR10_MD5} (corrupt or incomplete download)")
        return load_archive(path, md5=md5)
    if path.suffix == ".npz":
        return load_npz(path)
    raise DataError(f"{path}: unsupported data file (expected .npz, .tar.gz or a folder)")


def archive_cache(md5: str) -> Path:
    """The cache folder of the archive with this MD5: ``cifar-10-<md5>`` in :func:`cache_dir`,
    holding its ``cifar-10-batches-py`` and the ``verified`` fingerprint of what it loads."""
    return cache_dir() / f"cifar-10-{md5}"


def load_archive(archive: Path, *, md5: str) -> Dataset:
    """The dataset in a CIFAR-10 ``.tar.gz`` whose MD5 is ``md5``, extracted once into its own
    cache folder (:func:`archive_cache`). The cache is keyed by content, never by the file's
    name, and reused only while it loads to the fingerprint recorded when it was made; an
    extraction that does not load is removed, never reused."""
    folder = archive_cache(md5)
    marker = folder / "verified"
    if marker.is_file():
        try:
            data = load_cifar10_folder(folder / "cifar-10-batches-py")
            if dataset_fingerprint(data) == marker.read_text().strip():
                return data
        except (DataError, OSError):
            pass
    shutil.rmtree(folder, ignore_errors=True)  # missing, partial or altered: made again
    folder.mkdir(parents=True, exist_ok=True)
    try:
        extract_archive(archive, folder)
        data = load_cifar10_folder(folder / "cifar-10-batches-py")
    except DataError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise DataError(f"{archive}: {str(exc).removeprefix(f'{archive}: ')}") from None
    partial = folder / f"verified.{os.getpid()}"
    partial.write_text(dataset_fingerprint(data) + "\n")
    partial.replace(marker)
    return data


_FINGERPRINTS: dict[int, tuple[weakref.ref[np.ndarray], str]] = {}


def dataset_fingerprint(data: Dataset) -> str:
    """A content hash (BLAKE2b, 128 bits) of the dataset's images and labels: the same for the
    same bytes wherever they were loaded from. Computed once per loaded dataset in a process
    (about 0.3 s for CIFAR-10's 180 MB)."""
    key = id(data.x_train)
    known = _FINGERPRINTS.get(key)
    if known is not None and known[0]() is data.x_train:
        return known[1]
    digest = hashlib.blake2b(digest_size=16)
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).data)
    fingerprint = digest.hexdigest()
    for stale in [k for k, (ref, _) in _FINGERPRINTS.items() if ref() is None]:
        del _FINGERPRINTS[stale]
    _FINGERPRINTS[key] = (weakref.ref(data.x_train), fingerprint)
    return fingerprint


def load_npz(path: Path) -> Dataset:
    """The four arrays of an ``.npz`` (a zip of ``.npy`` files); never unpickles anything.
    Other bytes, an object array (pickled data) or a damaged archive are each a one-line
    error that says what the file is not (numpy's own message advises unsafe loading)."""
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz file (no zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in ("x_train", "y_train", "x_test", "y_test")}
            names = npz["classes"] if "classes" in npz.files else None
    except KeyError as exc:
        raise DataError(f"{path}: missing array {exc}") from None
    except ValueError as exc:
        if "pickle" in str(exc):
            raise DataError(f"{path}: holds object arrays, not numbers (numsweep loads "
                            "arrays of numbers only)") from None
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if names is not None and (names.ndim != 1 or names.dtype.kind not in "US"
                              or not 1 <= len(names) <= 10):
        raise DataError(f"{path}: classes must be a list of 1 to 10 names, got {names.dtype} "
                        f"{names.shape}")
    classes = None if names is None else tuple(
        n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())
    return _make_dataset(path, **arrays, classes=classes)


class RefusedPickle(pickle.UnpicklingError):
    """A pickle asks for an object a CIFAR-10 batch never holds."""


class _ArrayUnpickler(pickle.Unpickler):
    """Accepts only what a CIFAR-10 batch holds: dicts, lists, bytes and numpy arrays."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> type:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise RefusedPickle(f"refusing to load {module}.{name}")


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DataError(f"{path}: file missing")
    try:
        with path.open("rb") as fh:
            batch = _ArrayUnpickler(fh, encoding="bytes").load()
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except RefusedPickle as exc:
        raise DataError(f"{path}: not a CIFAR-10 batch ({exc})") from None
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError, IndexError,
            AttributeError) as exc:
        raise DataError(f"{path}: corrupt or truncated CIFAR-10 batch ({exc!r})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise DataError(f"{path}: expected data (N, 3072) with N labels, got {data.shape}")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_cifar10_folder(folder: Path) -> Dataset:
    parts = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _read_cifar_batch(folder / "test_batch")
    return _make_dataset(folder, np.concatenate([p[0] for p in parts]),
                         np.concatenate([p[1] for p in parts]), x_test, y_test)


def _read_idx(path: Path, magic: int) -> np.ndarray:
    if not path.exists():
        raise DataError(f"{path}: file missing")
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip file ({exc})") from None
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header or struct.unpack(">I", raw[:4])[0] != magic:
        raise DataError(f"{path}: not an idx file with magic number {magic}")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(f"{path}: truncated idx data ({len(raw) - header} of {expected} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist_folder(folder: Path) -> Dataset:
    arrays = {key: _read_idx(folder / name, 2051 if key.startswith("x") else 2049)
              for key, name in FASHION_FILES.items()}
    for part in ("train", "test"):
        images, labels = len(arrays[f"x_{part}"]), len(arrays[f"y_{part}"])
        if images != labels:
            raise DataError(f"{folder / FASHION_FILES[f'y_{part}']}: {labels} labels for the "
                            f"{images} images of {FASHION_FILES[f'x_{part}']}")
    return _make_dataset(folder, **arrays)


CHANNELS = (1, 3, 4)
"""Channel counts of images: grey, RGB, RGBA."""


def _make_dataset(origin: Path, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  y_test: np.ndarray, classes: tuple[str, ...] | None = None) -> Dataset:
    if x_train.ndim == 3:
        x_train, x_test = x_train[..., None], x_test[..., None]
    for name, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim != 4 or x.dtype != np.uint8:
            raise DataError(f"{origin}: x_{name} must be uint8 images (N, H, W[, C]), "
                            f"got {x.dtype} {x.shape}")
        if len(x) < (2 if name == "train" else 1):
            raise DataError(f"{origin}: x_{name} holds {len(x)} images, expected at least "
                            f"{2 if name == 'train' else 1}"
                            + (" (one to train on, one to validate)" if name == "train" else ""))
        if x.shape[1] in CHANNELS and x.shape[3] not in CHANNELS:
            raise DataError(f"{origin}: x_{name} of shape {x.shape} looks channel-first "
                            f"(N, C, H, W); numsweep takes (N, H, W, C) images: save "
                            f"x_{name}.transpose(0, 2, 3, 1)")
        if y.shape != (len(x),):
            raise DataError(f"{origin}: y_{name} has shape {y.shape}, expected ({len(x)},)")
        if not np.issubdtype(y.dtype, np.integer):
            raise DataError(f"{origin}: y_{name} must hold integer class labels 0..9, got "
                            f"{y.dtype}")
        if y.min() < 0 or y.max() > 9:
            raise DataError(f"{origin}: y_{name} holds labels outside 0..9")
        if classes is not None and len(y) and y.max() >= len(classes):
            raise DataError(f"{origin}: y_{name} holds label {int(y.max())} but classes names "
                            f"{len(classes)}")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(f"{origin}: train images {x_train.shape[1:]} and test images "
                        f"{x_test.shape[1:]} differ in shape")
    is_cifar = x_train.shape[1:] == (32, 32, 3)
    is_fashion = x_train.shape[1:] == (28, 28, 1)
    if classes is None:  # names only where they are known
        classes = (CIFAR10_CLASSES if is_cifar else FASHION_CLASSES if is_fashion
                   else tuple(str(k) for k in range(10)))
    return Dataset(
        name="cifar10" if is_cifar else "fashion_mnist" if is_fashion else origin.stem,
        classes=classes,
        x_train=x_train, y_train=y_train.astype(np.int64), x_test=x_test,
        y_test=y_test.astype(np.int64),
    )


def make_split(data: Dataset, n_train: int | None, n_val: int,
               dtype: np.dtype | type = np.float32) -> Split:
    """Training images ``[0, n_train)``, validation ``[n_train, n_train + n_val)``.

    ``n_train=None`` takes every training image not kept for validation, so the validation
    images are the last ``n_val``. ``n_train=10000, n_val=10000`` is CIFAR-10's data_batch_1
    for training and data_batch_2 for validation.
    """
    total = len(data.x_train)
    if n_train is None:
        n_train = total - n_val
    if n_train < 1 or n_train + n_val > total:
        raise DataError(f"n_train={n_train} + n_val={n_val} exceeds the {total} training images "
                        f"of {data.name}")
    mean, std = _feature_mean_std(data.x_train[:n_train])
    std[std == 0] = 1.0
    mean, inv_std = mean.astype(dtype), (1.0 / std).astype(dtype)
    x = data.x_train[: n_train + n_val].astype(dtype)
    x -= mean
    x *= inv_std
    x_test = data.x_test.astype(dtype)
    x_test -= mean
    x_test *= inv_std
    return Split(x[:n_train], data.y_train[:n_train], x[n_train:], data.y_train[n_train:
                 n_train + n_val], x_test, data.y_test, num_classes=len(data.classes))


def _feature_mean_std(x: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and (population) std of x (N, ...) in float64, two passes over chunks
    of rows: no float64 copy of the whole set (1.2 GB for CIFAR-10's 49,000 images)."""
    n = len(x)
    total = np.zeros(x.shape[1:], np.float64)
    for start in range(0, n, chunk):
        total += x[start:start + chunk].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros_like(mean)
    for start in range(0, n, chunk):
        dev = x[start:start + chunk] - mean
        squares += np.einsum("i...,i...->...", dev, dev)
    return mean, np.sqrt(squares / n)


def download(url: str, folder: Path, *, md5: str | None, progress: Progress | None = None,
             chunk: int = 1 << 20) -> Path:
    """Download ``url`` into ``folder`` (kept if already there and its MD5 matches)."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / url.rsplit("/", 1)[-1]
    if target.exists() and (md5 is None or file_md5(target) == md5):
        return target
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = response.length
            done = 0
            while block := response.read(chunk):
                out.write(block)
                done += len(block)
                if progress is not None:
                    progress(done, total)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DataError(f"cannot download {url}: {exc}; without a network, give the data "
                        f"with --data (or NUMSWEEP_DATA): an .npz, the downloaded "
                        f"{url.rsplit('/', 1)[-1]} or its extracted folder") from None
    if md5 is not None and (got := file_md5(partial)) != md5:
        partial.unlink(missing_ok=True)
        raise DataError(f"{url}: MD5 {got} does not match the expected {md5}")
    partial.replace(target)
    return target


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def extract_archive(archive: Path, folder: Path) -> None:
    """Extract a CIFAR-10 ``.tar.gz`` into ``folder`` (regular files only)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=archive.name + ".extracting-", dir=folder))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: corrupt or truncated archive ({exc})") from None
    extracted = tmp / "cifar-10-batches-py"
    if not extracted.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"{archive}: no cifar-10-batches-py folder inside")
    target = folder / "cifar-10-batches-py"
    shutil.rmtree(target, ignore_errors=True)
    with contextlib.suppress(OSError):  # another process put its extraction there first
        extracted.replace(target)
    shutil.rmtree(tmp, ignore_errors=True)
