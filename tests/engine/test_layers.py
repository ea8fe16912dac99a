"""Layers: fast implementations against their naive loop references, and shape errors."""

from __future__ import annotations

import numpy as np
import pytest

from numsweep.engine import layers
from numsweep.engine.networks import ConvNet3


def test_patch_conv_matches_naive_loops() -> None:
    rng = np.random.default_rng(4)
    images = rng.normal(size=(3, 8, 8, 3))
    f, nf = 4, 5
    filters = rng.normal(size=(f, f, 3, nf))
    b = rng.normal(size=nf)
    fast, _ = layers.patch_conv_forward(layers.patchify(images, f),
                                        filters.reshape(f * f * 3, nf), b)
    naive = layers.patch_conv_forward_naive(images, filters, b, f)
    np.testing.assert_allclose(fast, naive, rtol=1e-12, atol=1e-12)


def test_patch_conv_is_the_general_conv_with_stride_f() -> None:
    rng = np.random.default_rng(5)
    images = rng.normal(size=(2, 8, 8, 3))
    w, b = rng.normal(size=(4 * 4 * 3, 6)), rng.normal(size=6)
    patch, _ = layers.patch_conv_forward(layers.patchify(images, 4), w, b)
    general, _ = layers.conv_forward(images, w, b, 4, stride=4, pad=0)
    np.testing.assert_allclose(patch, general.reshape(2, 4, 6), rtol=1e-12, atol=1e-12)


def test_patchify_rejects_f_that_does_not_divide() -> None:
    with pytest.raises(ValueError, match="f=5 does not divide"):
        layers.patchify(np.zeros((1, 32, 32, 3)), 5)


@pytest.mark.parametrize(("h", "w", "f", "stride", "pad"),
                         [(5, 5, 3, 1, 1), (6, 4, 3, 1, 0), (7, 7, 3, 2, 0), (8, 6, 4, 2, 1),
                          (5, 5, 1, 1, 0), (4, 4, 5, 1, 2), (9, 9, 3, 3, 0)])
def test_conv_fast_matches_naive(h: int, w: int, f: int, stride: int, pad: int) -> None:
    rng = np.random.default_rng(h * 100 + f * 10 + stride)
    x = rng.normal(size=(2, h, w, 3))
    wt, b = rng.normal(size=(f * f * 3, 4)), rng.normal(size=4)
    out, cache = layers.conv_forward(x, wt, b, f, stride, pad)
    assert out.shape == (2, 1 + (h - f + 2 * pad) // stride, 1 + (w - f + 2 * pad) // stride, 4)
    np.testing.assert_allclose(out, layers.conv_forward_naive(x, wt, b, f, stride, pad),
                               rtol=1e-12, atol=1e-12)
    dout = rng.normal(size=out.shape)
    dx, dw, db = layers.conv_backward(dout, cache)
    ndx, ndw, ndb = layers.conv_backward_naive(dout, x, wt, f, stride, pad)
    for fast, naive in ((dx, ndx), (dw, ndw), (db, ndb)):
        np.testing.assert_allclose(fast, naive, rtol=1e-12, atol=1e-12)
    assert layers.conv_backward(dout, cache, input_grad=False)[0] is None


def test_conv_keeps_float32() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, 3)).astype(np.float32)
    w, b = rng.normal(size=(27, 4)).astype(np.float32), np.zeros(4, np.float32)
    out, cache = layers.conv_forward(x, w, b, 3, 1, 1)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layers.conv_backward(out, cache))


@pytest.mark.parametrize(("size", "f", "stride", "pad", "value"),
                         [(32, 4, 3, 0, "10.3333"), (8, 3, 2, 1, "4.5"), (3, 5, 1, 0, "-1")])
def test_conv_output_size_error(size: int, f: int, stride: int, pad: int, value: str) -> None:
    with pytest.raises(ValueError) as info:
        layers.conv_output_size(size, f, stride, pad)
    assert str(info.value) == (f"convolution output size 1 + (W - F + 2P) / S = 1 + ({size} - "
                               f"{f} + 2*{pad}) / {stride} = {value} is not a positive whole "
                               f"number")


def test_conv_output_size() -> None:
    assert layers.conv_output_size(32, 3, 1, 1) == 32
    assert layers.conv_output_size(32, 4, 2, 1) == 16
    assert layers.conv_output_size(7, 3, 2, 0) == 3


def test_convnet3_names_the_parameters_that_do_not_fit() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"filter_size=4, conv_stride=3, conv_pad=0 do not fit "
                                         r"32x32 images: convolution output size"):
        ConvNet3((32, 32, 3), 4, 4, 10, 10, rng=rng, stride=3, pad=0)
    with pytest.raises(ValueError, match="31x31 convolution output cannot be split into 2x2"):
        ConvNet3((32, 32, 3), 4, 4, 10, 10, rng=rng)  # pad (4 - 1) // 2 = 1


def test_max_pool_fast_matches_naive() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 6, 5))
    x[0, :2, :2, 0] = 1.5  # a tie: both versions send the gradient to the first maximum
    x[1, :2, :2, 1] = 0.0
    out, cache = layers.max_pool_forward(x)
    np.testing.assert_array_equal(out, layers.max_pool_forward_naive(x))
    dout = rng.normal(size=out.shape)
    dx = layers.max_pool_backward(dout, cache)
    np.testing.assert_array_equal(dx, layers.max_pool_backward_naive(dout, x))
    assert dx[0, 0, 0, 0] == dout[0, 0, 0, 0] and not dx[0, :2, :2, 0].ravel()[1:].any()
    assert dx.sum() == pytest.approx(dout.sum())


def test_max_pool_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="even height and width, got 5x4"):
        layers.max_pool_forward(np.zeros((1, 5, 4, 2)))


def test_leaky_relu_values_and_gradient() -> None:
    x = np.array([[-2.0, 0.5, 3.0, -0.1]])
    out, cache = layers.leaky_relu_forward(x, 0.1)
    np.testing.assert_allclose(out, [[-0.2, 0.5, 3.0, -0.01]])
    np.testing.assert_allclose(layers.leaky_relu_backward(np.ones_like(x), cache),
                               [[0.1, 1.0, 1.0, 0.1]])


def test_inverted_dropout_keeps_the_expected_value() -> None:
    x = np.ones((200, 500))
    out, mask = layers.dropout_forward(x, 0.2, np.random.default_rng(0))
    assert set(np.unique(out)) == {0.0, 1.25}
    assert (out == 0).mean() == pytest.approx(0.2, abs=0.01)
    assert out.mean() == pytest.approx(1.0, abs=0.01)
    np.testing.assert_array_equal(layers.dropout_backward(np.ones_like(x), mask), out)
    assert layers.dropout_forward(x, 0.2, None)[0] is x  # evaluation: identity, no copy
