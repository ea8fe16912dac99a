"""Data augmentation of image batches (N, H, W, C), vectorised over the batch.

Every random choice comes from the ``numpy.random.Generator`` passed in (the data stream, on
the host, so a GPU run augments exactly as the CPU run does); the arrays may be NumPy's or
CuPy's (the draws are copied to the images' device). Images are the
normalised training images, so the zeros that translations shift in and cutout paints are
the training set's mean pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from numsweep.engine.backend import array_module
from numsweep.engine.spec import TrialSpec


def _on(a: np.ndarray, like: np.ndarray) -> np.ndarray:
    """A host draw ``a`` on ``like``'s device."""
    xp = array_module(like)
    return a if xp is np else xp.asarray(a)


def random_flip(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Mirror each image left-right with probability ``p``: (N, H, W, C) -> same shape."""
    flip = _on(rng.random(len(x)) < p, x)
    out = x.copy()
    out[flip] = x[flip, :, ::-1]
    return out


def random_flip_naive(x: np.ndarray, p: float, rng: np.random.Generator) -> np.ndarray:
    """Reference for :func:`random_flip` (one image at a time, same random draws)."""
    flip = rng.random(len(x)) < p
    return np.stack([img[:, ::-1] if f else img for img, f in zip(x, flip, strict=True)])


def _shifts(n: int, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-image (dy, dx), each uniform on the integers -k..k."""
    d = rng.integers(-k, k + 1, size=(2, n))
    return d[0], d[1]


def random_translate(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each image by (dy, dx), each uniform in -k..k pixels, filling with zeros.

    Pixel (r, c) of the result is pixel (r - dy, c - dx) of the input, or 0 outside it.
    """
    if k == 0:
        return x.copy()
    n, h, w, c = x.shape
    xp = array_module(x)
    dy, dx = _shifts(n, k, rng)
    hp, wp = h + 2 * k, w + 2 * k
    padded = xp.zeros((n, hp, wp, c), x.dtype)
    padded[:, k:k + h, k:k + w] = x
    # One gather of whole pixels (C values each) by their flat index in the padded batch.
    first = np.arange(n) * (hp * wp) + (k - dy) * wp + (k - dx)           # (N,)
    idx = first[:, None, None] + (np.arange(h) * wp)[:, None] + np.arange(w)  # (N, H, W)
    return xp.take(padded.reshape(n * hp * wp, c), _on(idx, x), axis=0)


def random_translate_naive(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Reference for :func:`random_translate`: a loop over images and pixels."""
    n, h, w, _ = x.shape
    dy, dx = _shifts(n, k, rng) if k else (np.zeros(n, int), np.zeros(n, int))
    out = np.zeros_like(x)
    for i in range(n):
        for r in range(h):
            for c in range(w):
                if 0 <= r - dy[i] < h and 0 <= c - dx[i] < w:
                    out[i, r, c] = x[i, r - dy[i], c - dx[i]]
    return out


def _cutout_corners(n: int, h: int, w: int, size: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners of the squares: the centre is uniform over the image."""
    cy = rng.integers(0, h, size=n)
    cx = rng.integers(0, w, size=n)
    return cy - size // 2, cx - size // 2


def cutout(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Zero a size x size square of each image, centred at a uniformly random pixel.

    As in DeVries & Taylor (2017) the square may reach over the border and is then cut off
    there, so parts of it, not always the whole, land on the image.
    """
    n, h, w, _ = x.shape
    y0, x0 = _cutout_corners(n, h, w, size, rng)
    r = np.arange(h)
    c = np.arange(w)
    in_rows = (r >= y0[:, None]) & (r < (y0 + size)[:, None])      # (N, H)
    in_cols = (c >= x0[:, None]) & (c < (x0 + size)[:, None])      # (N, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * _on(keep[..., None].astype(x.dtype), x)


def cutout_naive(x: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Reference for :func:`cutout`: slice assignment one image at a time."""
    n, h, w, _ = x.shape
    y0, x0 = _cutout_corners(n, h, w, size, rng)
    out = x.copy()
    for i in range(n):
        out[i, max(y0[i], 0):max(y0[i] + size, 0), max(x0[i], 0):max(x0[i] + size, 0)] = 0
    return out


@dataclass(frozen=True)
class Augmenter:
    """Flip (probability ``flip``), translate (up to ``translate`` pixels), then cutout (a
    ``cutout`` x ``cutout`` square); ``copies`` > 1 is batch augmentation (Hoffer et al.
    2019): every image of the batch appears ``copies`` times, each copy augmented on its own.
    """

    flip: float = 0.0
    translate: int = 0
    cutout: int = 0
    copies: int = 1

    @classmethod
    def from_spec(cls, spec: TrialSpec) -> Augmenter:
        return cls(spec.flip, spec.translate, spec.cutout, spec.aug_copies)

    @property
    def active(self) -> bool:
        return bool(self.flip or self.translate or self.cutout or self.copies > 1)

    def __call__(self, x: np.ndarray, y: np.ndarray,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """x (N, H, W, C), y (N,) -> (N * copies, H, W, C), (N * copies,)."""
        if self.copies > 1:
            xp = array_module(x)
            x = xp.repeat(x, self.copies, axis=0)
            y = xp.repeat(y, self.copies, axis=0)
        if self.flip:
            x = random_flip(x, self.flip, rng)
        if self.translate:
            x = random_translate(x, self.translate, rng)
        if self.cutout:
            x = cutout(x, self.cutout, rng)
        return x, y

    def skip(self, n: int, image_shape: tuple[int, ...], rng: np.random.Generator) -> None:
        """Draw from ``rng`` what augmenting a batch of ``n`` images of ``image_shape``
        (H, W, C) draws, touching no image: a run that joins a data stream mid-way skips
        the batches before it (``inputs.BatchDrawer.skip``)."""
        n *= self.copies
        if self.flip:
            rng.random(n)
        if self.translate:
            _shifts(n, self.translate, rng)
        if self.cutout:
            _cutout_corners(n, image_shape[0], image_shape[1], self.cutout, rng)
