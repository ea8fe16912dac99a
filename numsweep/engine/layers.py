"""Layers as paired forward/backward functions.

Each ``*_forward`` returns ``(out, cache)``; the matching ``*_backward`` takes the upstream
gradient and that cache and returns the gradients of its inputs. Batches are rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from numsweep.engine.backend import array_module

Cache = Any


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """x (N, D) @ w (D, M) + b (M,) -> out (N, M)."""
    out = x @ w
    out += b
    return out, (x, w)


def affine_backward(dout: np.ndarray, cache: Cache, *, input_grad: bool = True
                    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """dout (N, M) -> dx (N, D), dw (D, M), db (M,).

    A first layer needs no gradient for its input: ``input_grad=False`` skips it (dx is None).
    """
    x, w = cache
    return (dout @ w.T if input_grad else None), x.T @ dout, dout.sum(axis=0)


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
    xp = array_module(images)
    return xp.ascontiguousarray(patches).reshape(n, (h // f) * (w // f), f * f * c)


def patch_conv_forward(p: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Stride-f convolution from a patch matrix: p (N, n_p, d) @ w (d, nf) + b -> (N, n_p, nf):
    the affine layer on the N n_p patches as rows."""
    n, n_p, d = p.shape
    out, _ = affine_forward(p.reshape(n * n_p, d), w, b)
    return out.reshape(n, n_p, -1), (p, w)


def patch_conv_backward(dout: np.ndarray, cache: Cache, *, input_grad: bool = True
                        ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """dout (N, n_p, nf) -> dp (N, n_p, d), dw (d, nf), db (nf,).

    A first layer needs no gradient for its input: ``input_grad=False`` skips it (dp is None).
    """
    p, w = cache
    n, n_p, d = p.shape
    dp, dw, db = affine_backward(dout.reshape(n * n_p, -1), (p.reshape(n * n_p, d), w),
                                 input_grad=input_grad)
    return (None if dp is None else dp.reshape(n, n_p, d)), dw, db


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


def leaky_relu_forward(x: np.ndarray, slope: float) -> tuple[np.ndarray, Cache]:
    """Elementwise x if x > 0 else slope * x (0 < slope < 1), any shape."""
    out = np.maximum(x, x * np.asarray(slope, dtype=x.dtype))
    return out, (out, slope)


def leaky_relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dout has the shape of the forward input; the gradient is slope where out was negative."""
    out, slope = cache
    return np.where(out > 0, dout, dout * np.asarray(slope, dtype=dout.dtype))


def conv_output_size(size: int, filter_size: int, stride: int, pad: int) -> int:
    """1 + (size - filter_size + 2 pad) / stride; a ValueError when that is not a whole number."""
    span = size - filter_size + 2 * pad
    if stride < 1 or pad < 0 or span < 0 or span % stride:
        raise ValueError(
            f"convolution output size 1 + (W - F + 2P) / S = 1 + ({size} - {filter_size} + "
            f"2*{pad}) / {stride} = {1 + span / max(stride, 1):g} is not a positive whole "
            f"number")
    return 1 + span // stride


def _conv_shapes(x: np.ndarray, w: np.ndarray, filter_size: int, stride: int,
                 pad: int) -> tuple[int, int, int]:
    n, h, wd, c = x.shape
    if w.shape[0] != filter_size * filter_size * c:
        raise ValueError(f"filters of shape {w.shape} do not match filter_size={filter_size} "
                         f"and {c} input channels")
    return n, conv_output_size(h, filter_size, stride, pad), \
        conv_output_size(wd, filter_size, stride, pad)


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, filter_size: int, stride: int = 1,
                 pad: int = 0) -> tuple[np.ndarray, Cache]:
    """Convolution with zero padding, im2col style (one matmul, no loop over images).

    x (N, H, W, C), w (F*F*C, nf) with rows in (row, column, channel) order like the patch
    filters, b (nf,) -> out (N, H', W', nf), H' = 1 + (H - F + 2 pad) / stride.
    """
    n, ho, wo = _conv_shapes(x, w, filter_size, stride, pad)
    c = x.shape[3]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))) if pad else x
    # windows (N, H', W', C, F, F): a strided view, copied once into the column matrix.
    windows = np.lib.stride_tricks.sliding_window_view(xp, (filter_size, filter_size),
                                                       axis=(1, 2))[:, ::stride, ::stride]
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, filter_size ** 2 * c)
    out = (cols @ w).reshape(n, ho, wo, -1)
    out += b
    return out, (cols, w, x.shape, filter_size, stride, pad)


def conv_backward(dout: np.ndarray, cache: Cache, *, input_grad: bool = True
                  ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """dout (N, H', W', nf) -> dx (N, H, W, C), dw (F*F*C, nf), db (nf,).

    The column gradients are added back into the padded input with one slice per filter
    offset (F*F slices, no loop over images). ``input_grad=False`` skips dx (None).
    """
    cols, w, (n, h, wd, c), f, stride, pad = cache
    _, ho, wo, nf = dout.shape
    d2 = dout.reshape(n * ho * wo, nf)
    dw = cols.T @ d2
    db = d2.sum(axis=0)
    if not input_grad:
        return None, dw, db
    dcols = (d2 @ w.T).reshape(n, ho, wo, f, f, c)
    dxp = np.zeros((n, h + 2 * pad, wd + 2 * pad, c), dtype=dcols.dtype)
    for i in range(f):
        for j in range(f):
            dxp[:, i:i + stride * ho:stride, j:j + stride * wo:stride, :] += dcols[:, :, :, i, j]
    dx = dxp[:, pad:pad + h, pad:pad + wd, :] if pad else dxp
    return dx, dw, db


def conv_forward_naive(x: np.ndarray, w: np.ndarray, b: np.ndarray, filter_size: int,
                       stride: int = 1, pad: int = 0) -> np.ndarray:
    """Reference: one dot product per image, output position and filter. Shapes as
    :func:`conv_forward`."""
    n, ho, wo = _conv_shapes(x, w, filter_size, stride, pad)
    filters = w.reshape(filter_size, filter_size, x.shape[3], -1)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros((n, ho, wo, filters.shape[-1]), dtype=np.result_type(x, w))
    for i in range(n):
        for r in range(ho):
            for s in range(wo):
                rows = slice(r * stride, r * stride + filter_size)
                sub = xp[i, rows, s * stride:s * stride + filter_size]
                for k in range(filters.shape[-1]):
                    out[i, r, s, k] = np.sum(sub * filters[..., k]) + b[k]
    return out


def conv_backward_naive(dout: np.ndarray, x: np.ndarray, w: np.ndarray, filter_size: int,
                        stride: int = 1, pad: int = 0
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference backward with loops: dout (N, H', W', nf) -> dx, dw, db as
    :func:`conv_backward`."""
    n, ho, wo = _conv_shapes(x, w, filter_size, stride, pad)
    c = x.shape[3]
    filters = w.reshape(filter_size, filter_size, c, -1)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dxp = np.zeros_like(xp, dtype=np.result_type(x, w, dout))
    dfilters = np.zeros_like(filters, dtype=dxp.dtype)
    for i in range(n):
        for r in range(ho):
            for s in range(wo):
                rows = slice(r * stride, r * stride + filter_size)
                columns = slice(s * stride, s * stride + filter_size)
                for k in range(filters.shape[-1]):
                    dfilters[..., k] += dout[i, r, s, k] * xp[i, rows, columns]
                    dxp[i, rows, columns] += dout[i, r, s, k] * filters[..., k]
    dx = dxp[:, pad:pad + x.shape[1], pad:pad + x.shape[2]]
    return dx, dfilters.reshape(w.shape), dout.sum(axis=(0, 1, 2))


def _pool_shape(x: np.ndarray) -> tuple[int, int, int, int]:
    n, h, w, c = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"2x2 max pooling needs an even height and width, got {h}x{w}")
    return n, h // 2, w // 2, c


def max_pool_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """2x2 max pooling with stride 2: x (N, H, W, C) -> out (N, H/2, W/2, C).

    The maximum of the four strided views x[:, i::2, j::2]; no copy of x.
    """
    _pool_shape(x)
    out = np.maximum(x[:, 0::2, 0::2], x[:, 0::2, 1::2])
    np.maximum(out, x[:, 1::2, 0::2], out=out)
    np.maximum(out, x[:, 1::2, 1::2], out=out)
    return out, (x, out)


def max_pool_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """dout (N, H/2, W/2, C) -> dx (N, H, W, C).

    Each window's gradient goes to one input: its first maximum in (row, column) order.
    """
    x, out = cache
    dx = np.empty(x.shape, dtype=dout.dtype)
    taken = np.zeros(out.shape, dtype=bool)
    for i in (0, 1):
        for j in (0, 1):
            hit = x[:, i::2, j::2] == out
            hit &= ~taken
            taken |= hit
            np.multiply(dout, hit, out=dx[:, i::2, j::2])
    return dx


def max_pool_forward_naive(x: np.ndarray) -> np.ndarray:
    """Reference: a loop over every image, window and channel."""
    n, ho, wo, c = _pool_shape(x)
    out = np.zeros((n, ho, wo, c), dtype=x.dtype)
    for i in range(n):
        for r in range(ho):
            for s in range(wo):
                for k in range(c):
                    out[i, r, s, k] = x[i, 2 * r:2 * r + 2, 2 * s:2 * s + 2, k].max()
    return out


def max_pool_backward_naive(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Reference backward: the gradient goes to the first maximum of each window."""
    n, ho, wo, c = _pool_shape(x)
    dx = np.zeros(x.shape, dtype=dout.dtype)
    for i in range(n):
        for r in range(ho):
            for s in range(wo):
                for k in range(c):
                    window = x[i, 2 * r:2 * r + 2, 2 * s:2 * s + 2, k]
                    a, b = np.unravel_index(np.argmax(window), (2, 2))
                    dx[i, 2 * r + a, 2 * s + b, k] += dout[i, r, s, k]
    return dx
