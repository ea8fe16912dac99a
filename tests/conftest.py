"""Shared fixtures: small generated datasets (never the real data); the ``numsweep`` command's
Ctrl-C handler for one test; a cache folder of the suite's own (never the user's)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.shield import install_sigint_handler


def make_images(n: int, rng: np.random.Generator, shape: tuple[int, ...] = (16, 16, 3),
                num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class shifts the mean of one block of pixels, so they can be learnt."""
    y = rng.integers(0, num_classes, size=n)
    x = rng.normal(110, 40, size=(n, *shape))
    flat = x.reshape(n, -1)
    block = flat.shape[1] // num_classes
    for k in range(num_classes):
        flat[y == k, k * block:(k + 1) * block] += 60
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.uint8)


def write_images_npz(path: Path, seed: int) -> Path:
    """600 training and 200 test images of :func:`make_images` as an .npz at ``path``."""
    rng = np.random.default_rng(seed)
    x_train, y_train = make_images(600, rng)
    x_test, y_test = make_images(200, rng)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


@pytest.fixture(scope="session", autouse=True)
def suite_cache_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``$NUMSWEEP_CACHE`` for the whole suite (the group-size measurements kept by
    ``sweeps.pace_cache``; the commands the tests spawn inherit it): nothing is written to
    the user's ``~/.cache``."""
    folder = tmp_path_factory.mktemp("cache")
    before = os.environ.get("NUMSWEEP_CACHE")
    os.environ["NUMSWEEP_CACHE"] = str(folder)
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop("NUMSWEEP_CACHE", None)
        else:
            os.environ["NUMSWEEP_CACHE"] = before


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_images_npz(tmp_path_factory.mktemp("data") / "tiny.npz", seed=0)


@pytest.fixture
def ctrl_c_waits_for_the_database() -> Iterator[None]:
    """The SIGINT handler of the ``numsweep`` command (see :mod:`numsweep.shield`), put back
    as it was after the test."""
    previous, hook = signal.getsignal(signal.SIGINT), sys.unraisablehook
    install_sigint_handler()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook


def for_model(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the shape parameters its model does not read (a base shared by
    tests of every model sets them all; a spec refuses another model's parameters)."""
    from numsweep.engine.spec import MODEL_PARAMETERS, model_parameter_users

    own = MODEL_PARAMETERS[values.get("model", "mlp")]
    return {k: v for k, v in values.items() if k not in model_parameter_users() or k in own}
