from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from numsweep.engine import TrialSpec, load_dataset, make_split, train
from numsweep.engine.augment import (
    Augmenter,
    cutout,
    cutout_naive,
    random_flip,
    random_flip_naive,
    random_translate,
    random_translate_naive,
)


def images(n: int = 6, h: int = 5, w: int = 7, c: int = 3) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, h, w, c)).astype(np.float32)


@pytest.mark.parametrize(("fast", "naive", "arg"), [
    (random_flip, random_flip_naive, 0.5),
    (random_translate, random_translate_naive, 2),
    (random_translate, random_translate_naive, 0),
    (cutout, cutout_naive, 3),
    (cutout, cutout_naive, 4),
])
def test_fast_and_naive_agree(fast, naive, arg) -> None:  # type: ignore[no-untyped-def]
    x = images(n=40)
    out = fast(x, arg, np.random.default_rng(5))
    np.testing.assert_array_equal(out, naive(x, arg, np.random.default_rng(5)))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not np.shares_memory(out, x)


def test_flip_mirrors_left_right() -> None:
    x = images()
    np.testing.assert_array_equal(random_flip(x, 1.0, np.random.default_rng(0)),
                                  x[:, :, ::-1, :])
    np.testing.assert_array_equal(random_flip(x, 0.0, np.random.default_rng(0)), x)
    flipped = (random_flip(images(n=2000, h=2, w=2, c=1), 0.5, np.random.default_rng(0))
               != images(n=2000, h=2, w=2, c=1)).any(axis=(1, 2, 3))
    assert 0.45 < flipped.mean() < 0.55


def test_translate_shifts_and_fills_with_zeros() -> None:
    x = np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
    rng = np.random.default_rng(3)
    dy, dx = np.random.default_rng(3).integers(-2, 3, size=(2, 1))[:, 0]
    out = random_translate(x, 2, rng)[0, :, :, 0]
    for r in range(5):
        for c in range(5):
            inside = 0 <= r - dy < 5 and 0 <= c - dx < 5
            assert out[r, c] == (x[0, r - dy, c - dx, 0] if inside else 0)
    shifts = {tuple(random_translate(np.ones((1, 5, 5, 1)), 1, np.random.default_rng(s))
                    [0, :, :, 0].sum(axis=(0,)).nonzero()[0]) for s in range(40)}
    assert len(shifts) == 3  # dx of -1, 0 and +1 all occur


def test_cutout_zeros_one_square_at_most() -> None:
    x = np.ones((500, 8, 8, 3), np.float32)
    out = cutout(x, 4, np.random.default_rng(0))
    zeros = (out == 0).all(axis=3)
    assert ((out == 0) == zeros[..., None]).all()  # all channels of a pixel together
    counts = zeros.sum(axis=(1, 2))
    assert counts.max() == 16 and counts.min() >= 4  # whole, or cut off at a border
    rows, cols = zeros.any(axis=2), zeros.any(axis=1)
    np.testing.assert_array_equal(counts, rows.sum(axis=1) * cols.sum(axis=1))  # a rectangle


def test_batch_augmentation_makes_differently_augmented_copies() -> None:
    x, y = images(n=4), np.array([0, 1, 2, 3])
    aug = Augmenter(flip=0.5, translate=1, cutout=2, copies=3)
    out, labels = aug(x, y, np.random.default_rng(0))
    assert out.shape == (12, *x.shape[1:])
    np.testing.assert_array_equal(labels, np.repeat(y, 3))
    assert not np.array_equal(out[0], out[1]) or not np.array_equal(out[1], out[2])
    again, _ = aug(x, y, np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)
    assert not Augmenter().active and Augmenter.from_spec(TrialSpec(cutout=8)).active


@pytest.mark.parametrize("model", ["mlp", "convnet"])
def test_copies_alone_leave_training_unchanged(tiny_npz: Path, model: str) -> None:
    """M identical copies of a batch give the same mean loss and gradients, so training with
    aug_copies=2 and no random transform follows training without augmentation (this runs
    the per-batch ``net.prepare`` path against the precomputed one)."""
    split = make_split(load_dataset(tiny_npz), 300, 100)
    shape = {"nf": 4, "nh": 16} if model == "convnet" else {"hidden": (16,)}
    spec = TrialSpec(model=model, **shape, n_train=300, n_val=100, batch_size=50,
                     cycles=1, n_s=6)
    plain, copied = train(spec, split), train(spec.replace(aug_copies=2), split)
    assert plain.updates == copied.updates == 12
    np.testing.assert_allclose([c.loss for c in copied.curves],
                               [c.loss for c in plain.curves], rtol=1e-4)


def test_augmented_training_is_reproducible_and_differs(tiny_npz: Path) -> None:
    split = make_split(load_dataset(tiny_npz), 300, 100)
    spec = TrialSpec(model="convnet", nf=4, nh=16, n_train=300, n_val=100, batch_size=50,
                     cycles=1, n_s=6, flip=0.5, translate=2, cutout=4, aug_copies=2)
    a, b = train(spec, split), train(spec, split)
    assert [c.loss for c in a.curves] == [c.loss for c in b.curves]
    plain = train(spec.replace(flip=0, translate=0, cutout=0, aug_copies=1), split)
    assert [c.loss for c in a.curves][2:] != [c.loss for c in plain.curves][2:]
