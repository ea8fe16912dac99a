"""Layers as paired forward/backward functions.

Each ``*_forward`` returns ``(out, cache)``; the matching ``*_backward`` takes the upstream
gradient and that cache and returns the gradients of its inputs. Batches are rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Cache = Any


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """x (N, D) @ w (D, M) + b (M,) -> out (N, M)."""
    out = x @ w
    out += b
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dout (N, M) -> dx (N, D), dw (D, M), db (M,)."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Elementwise max(0, x), any shape."""
    out = np.maximum(x, 0)
    return out, out


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dout has the shape of the forward input; the gradient is zero where out was zero."""
    return dout * (cache > 0)


def dropout_forward(x: np.ndarray, rate: float,
                    rng: np.random.Generator | None) -> tuple[np.ndarray, Cache]:
    """Inverted dropout: keep each unit with probability 1 - rate and scale by 1 / (1 - rate).

    With ``rng=None`` (evaluation) or ``rate=0`` this is the identity.
    """
    if rng is None or rate == 0:
        return x, None
    mask = (rng.random(x.shape, dtype=np.float32) >= rate).astype(x.dtype)
    mask /= 1 - rate
    return x * mask, mask


def dropout_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    return dout if cache is None else dout * cache


def patchify(images: np.ndarray, f: int) -> np.ndarray:
    """Non-overlapping f x f patches: images (N, H, W, C) -> (N, n_p, f*f*C).

    n_p = (H/f) * (W/f) patches per image in row-major order; each row holds one patch's
    values in (row, column, channel) order, matching filters of shape (f*f*C, nf).
    """
    n, h, w, c = images.shape
    if h % f or w % f:
        raise ValueError(f"f={f} does not divide the image size {h}x{w}")
    patches = images.reshape(n, h // f, f, w // f, f, c).transpose(0, 1, 3, 2, 4, 5)
    return np.ascontiguousarray(patches).reshape(n, (h // f) * (w // f), f * f * c)


def patch_conv_forward(p: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Stride-f convolution from a patch matrix: p (N, n_p, d) @ w (d, nf) + b -> (N, n_p, nf)."""
    n, n_p, d = p.shape
    out = (p.reshape(n * n_p, d) @ w).reshape(n, n_p, -1)
    out += b
    return out, (p, w)


def patch_conv_backward(dout: np.ndarray, cache: Cache, *, input_grad: bool = True
                        ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """dout (N, n_p, nf) -> dp (N, n_p, d), dw (d, nf), db (nf,).

    A first layer needs no gradient for its input: ``input_grad=False`` skips it (dp is None).
    """
    p, w = cache
    n, n_p, d = p.shape
    d2 = dout.reshape(n * n_p, -1)
    dw = p.reshape(n * n_p, d).T @ d2
    dp = (d2 @ w.T).reshape(n, n_p, d) if input_grad else None
    return dp, dw, d2.sum(axis=0)


def patch_conv_forward_naive(images: np.ndarray, filters: np.ndarray, b: np.ndarray,
                             f: int) -> np.ndarray:
    """Reference: one dot product per image, sub-patch and filter.

    images (N, H, W, C), filters (f, f, C, nf), b (nf,) -> out (N, n_p, nf).
    """
    n, h, w, _ = images.shape
    nf = filters.shape[-1]
    out = np.zeros((n, (h // f) * (w // f), nf), dtype=np.result_type(images, filters))
    for i in range(n):
        for r in range(h // f):
            for c in range(w // f):
                sub = images[i, r * f:(r + 1) * f, c * f:(c + 1) * f, :]
                for k in range(nf):
                    out[i, r * (w // f) + c, k] = np.sum(sub * filters[..., k]) + b[k]
    return out
