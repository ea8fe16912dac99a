"""Networks: a fully connected net of any depth and the patchify ConvNet.

A network holds its parameters in ``params`` (names -> arrays); ``weight_names`` are the
ones L2 applies to (weights and filters, never biases). Inputs are first turned into the
network's own representation by ``prepare`` (flattened images, or the patch matrix) once per
dataset, so training never repeats that work.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from numsweep.engine import layers
from numsweep.engine.initializers import init_weights
from numsweep.engine.losses import softmax_cross_entropy


class Network(Protocol):
    params: dict[str, np.ndarray]
    weight_names: tuple[str, ...]

    def prepare(self, images: np.ndarray) -> np.ndarray: ...

    def scores(self, x: np.ndarray) -> np.ndarray: ...

    def loss(self, x: np.ndarray, y: np.ndarray, *, lam: float, eps: float,
             rng: np.random.Generator | None) -> tuple[float, float, dict[str, np.ndarray]]: ...


def l2_penalty(params: dict[str, np.ndarray], names: tuple[str, ...]) -> float:
    return float(sum(np.vdot(params[n], params[n]) for n in names))


def param_count(net: Network) -> int:
    return int(sum(p.size for p in net.params.values()))


class MLP:
    """Affine - ReLU - [dropout] - ... - affine; ``hidden`` gives the widths."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], num_classes: int, *,
                 rng: np.random.Generator, init: str = "xavier", dropout: float = 0.0,
                 dtype: np.dtype | type = np.float32) -> None:
        dims = (input_dim, *hidden, num_classes)
        self.params: dict[str, np.ndarray] = {}
        for i in range(len(dims) - 1):
            self.params[f"W{i + 1}"] = init_weights(init, dims[i], dims[i + 1], rng, dtype)
            self.params[f"b{i + 1}"] = np.zeros(dims[i + 1], dtype=dtype)
        self.layers = len(dims) - 1
        self.weight_names = tuple(f"W{i + 1}" for i in range(self.layers))
        self.dropout = dropout

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """images (N, H, W, C) -> (N, H*W*C)."""
        return images.reshape(len(images), -1)

    def _forward(self, x: np.ndarray, rng: np.random.Generator | None):
        caches = []
        h = x
        for i in range(1, self.layers):
            h, c_aff = layers.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            h, c_relu = layers.relu_forward(h)
            h, c_drop = layers.dropout_forward(h, self.dropout, rng)
            caches.append((c_aff, c_relu, c_drop))
        out, c_last = layers.affine_forward(h, self.params[f"W{self.layers}"],
                                            self.params[f"b{self.layers}"])
        return out, caches, c_last

    def scores(self, x: np.ndarray) -> np.ndarray:
        """x (N, D) -> scores (N, K), without dropout."""
        return self._forward(x, None)[0]

    def loss(self, x: np.ndarray, y: np.ndarray, *, lam: float, eps: float,
             rng: np.random.Generator | None) -> tuple[float, float, dict[str, np.ndarray]]:
        """Returns (loss, cost = loss + lam * sum ||W||^2, gradients of the cost)."""
        scores, caches, c_last = self._forward(x, rng)
        loss, dout = softmax_cross_entropy(scores, y, eps)
        grads: dict[str, np.ndarray] = {}
        L = self.layers
        dh, grads[f"W{L}"], grads[f"b{L}"] = layers.affine_backward(dout, c_last)
        for i in range(L - 1, 0, -1):
            c_aff, c_relu, c_drop = caches[i - 1]
            dh = layers.relu_backward(layers.dropout_backward(dh, c_drop), c_relu)
            dh, grads[f"W{i}"], grads[f"b{i}"] = layers.affine_backward(dh, c_aff)
        cost = loss
        if lam:
            cost += lam * l2_penalty(self.params, self.weight_names)
            for name in self.weight_names:
                grads[name] += (2 * lam) * self.params[name]
        return loss, cost, grads


class PatchConvNet:
    """Patchify conv (nf filters f x f x C, stride f) - ReLU - affine nh - ReLU - affine K."""

    def __init__(self, image_shape: tuple[int, int, int], f: int, nf: int, nh: int,
                 num_classes: int, *, rng: np.random.Generator, init: str = "xavier",
                 dtype: np.dtype | type = np.float32) -> None:
        h, w, c = image_shape
        if h % f or w % f:
            raise ValueError(f"f={f} does not divide the image size {h}x{w}")
        self.f = f
        self.n_p = (h // f) * (w // f)
        d = f * f * c
        self.params = {
            "F": init_weights(init, d, nf, rng, dtype),
            "bF": np.zeros(nf, dtype=dtype),
            "W1": init_weights(init, self.n_p * nf, nh, rng, dtype),
            "b1": np.zeros(nh, dtype=dtype),
            "W2": init_weights(init, nh, num_classes, rng, dtype),
            "b2": np.zeros(num_classes, dtype=dtype),
        }
        self.weight_names = ("F", "W1", "W2")

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """images (N, H, W, C) -> patch matrix (N, n_p, f*f*C)."""
        return layers.patchify(images, self.f)

    def _forward(self, p: np.ndarray):
        s, c_conv = layers.patch_conv_forward(p, self.params["F"], self.params["bF"])
        s, c_relu0 = layers.relu_forward(s)
        h = s.reshape(len(p), -1)
        h, c_aff1 = layers.affine_forward(h, self.params["W1"], self.params["b1"])
        h, c_relu1 = layers.relu_forward(h)
        out, c_aff2 = layers.affine_forward(h, self.params["W2"], self.params["b2"])
        return out, (c_conv, c_relu0, c_aff1, c_relu1, c_aff2)

    def scores(self, p: np.ndarray) -> np.ndarray:
        return self._forward(p)[0]

    def loss(self, p: np.ndarray, y: np.ndarray, *, lam: float, eps: float,
             rng: np.random.Generator | None) -> tuple[float, float, dict[str, np.ndarray]]:
        scores, (c_conv, c_relu0, c_aff1, c_relu1, c_aff2) = self._forward(p)
        loss, dout = softmax_cross_entropy(scores, y, eps)
        grads: dict[str, np.ndarray] = {}
        dh, grads["W2"], grads["b2"] = layers.affine_backward(dout, c_aff2)
        dh = layers.relu_backward(dh, c_relu1)
        dh, grads["W1"], grads["b1"] = layers.affine_backward(dh, c_aff1)
        ds = layers.relu_backward(dh.reshape(c_relu0.shape), c_relu0)
        _, grads["F"], grads["bF"] = layers.patch_conv_backward(ds, c_conv, input_grad=False)
        cost = loss
        if lam:
            cost += lam * l2_penalty(self.params, self.weight_names)
            for name in self.weight_names:
                grads[name] += (2 * lam) * self.params[name]
        return loss, cost, grads
