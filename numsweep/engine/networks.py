"""Networks: a fully connected net of any depth, the patchify ConvNet and a three-layer ConvNet.

These are the reference networks, written on the allocating layers of ``layers.py``: their
``loss`` (forward, backward and the L2 cost) is what the gradient checks verify
(``gradcheck.py``) and what the trained networks, the fused ones of ``fused.py`` (K trials
along a leading axis; K = 1 a lone trial), are tested against. A network here also draws a
trial's initial weights (``build_network`` in ``train.py``), which the fused network stacks.

A network holds its parameters in ``params`` (names -> arrays); ``weight_names`` are the
ones L2 applies to (weights and filters, never biases). Inputs are first turned into the
network's own representation by ``prepare`` (flattened images, the patch matrix, or the
images themselves) once per dataset, so training never repeats that work.

Every network takes the same options: ``activation`` (``relu`` or ``leaky_relu`` with
``leaky_slope``), inverted dropout on its input (``dropout_input``) and on its hidden fully
connected layers (``dropout``), and the data ``loss`` (``softmax`` with label smoothing
``eps``, or the multiclass ``svm`` loss).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

import numsweep.engine.layers as layers
from numsweep.engine.backend import array_module
from numsweep.engine.initializers import init_weights
from numsweep.engine.losses import add_l2_gradient, get_loss, l2_penalty
from numsweep.engine.spec import ACTIVATIONS


class Network(Protocol):
    params: dict[str, np.ndarray]
    weight_names: tuple[str, ...]
    structure: Structure

    def prepare(self, images: np.ndarray) -> np.ndarray: ...

    def scores(self, x: np.ndarray) -> np.ndarray: ...

    def data_loss(self, scores: np.ndarray, y: np.ndarray,
                  eps: float) -> tuple[float, np.ndarray]: ...

    def loss(self, x: np.ndarray, y: np.ndarray, *, lam: float, eps: float,
             rng: np.random.Generator | None) -> tuple[float, float, dict[str, np.ndarray]]: ...


def param_count(net: Network) -> int:
    return int(sum(p.size for p in net.params.values()))


@dataclass(frozen=True)
class Structure:
    """What a network is apart from its weights: everything a trained network of ``fused.py``
    needs to know of it (it stacks the weights of K networks of one structure). ``model``
    names the kind; ``layers`` (the MLP's affine layers), ``branches`` and ``multi`` (the
    patchify ConvNet's patch sizes) and ``filter_size``, ``stride``, ``pad`` (the
    three-layer ConvNet's convolution) are its shape; :func:`prepare_input` turns images
    into its input."""

    model: str
    activation: str
    leaky_slope: float
    loss: str
    weight_names: tuple[str, ...]
    layers: int = 0
    branches: tuple[_Branch, ...] = ()
    multi: bool = False
    filter_size: int = 0
    stride: int = 1
    pad: int = 0


def prepare_input(structure: Structure, images: np.ndarray) -> np.ndarray:
    """images (N, H, W, C) -> the network's input, once per dataset: flattened (N, H*W*C)
    for the MLP; the patch matrix (N, n_p, f*f*C) for the patchify ConvNet, with several
    patch sizes their patch matrices flattened and side by side, (N, sum_i n_p_i f_i f_i C);
    the images themselves (contiguous) for the three-layer ConvNet."""
    if structure.model == "mlp":
        return images.reshape(len(images), -1)
    if structure.model == "convnet3":
        return array_module(images).ascontiguousarray(images)
    if not structure.multi:
        return layers.patchify(images, structure.branches[0].f)
    n, h, w, c = images.shape
    xp = array_module(images)
    out = xp.empty((n, sum(br.n_p * br.d for br in structure.branches)), images.dtype)
    for br in structure.branches:
        f = br.f
        if xp is not np:  # a device: its own strided copy
            out[:, br.col:br.col + br.n_p * br.d] = layers.patchify(images, f).reshape(n, -1)
            continue
        # one copy per size, straight into its block: the block viewed as
        # (N, H/f, W/f, f, f, C) takes the images' (N, H/f, f, W/f, f, C) transposed
        block = out[:, br.col:br.col + br.n_p * br.d]
        view = np.lib.stride_tricks.as_strided(
            block, (n, h // f, w // f, f, f, c),
            (out.strides[0], *(block.itemsize * s for s in (w // f * br.d, br.d, f * c, c, 1))))
        np.copyto(view, images.reshape(n, h // f, f, w // f, f, c).transpose(0, 1, 3, 2, 4, 5))
    return out


class _Base:
    """What every network shares: activation, dropout rates, data loss and the L2 cost."""

    params: dict[str, np.ndarray]
    weight_names: tuple[str, ...]
    structure: Structure

    def __init__(self, *, activation: str, leaky_slope: float, dropout: float,
                 dropout_input: float, loss: str) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} (known: "
                             f"{', '.join(ACTIVATIONS)})")
        self.activation = activation
        self.leaky_slope = leaky_slope
        self.dropout = dropout
        self.dropout_input = dropout_input
        self.loss_name = loss
        self._loss_fn = get_loss(loss).reference
        self._act: Callable[[np.ndarray], tuple[np.ndarray, Any]]
        self._act_back: Callable[[np.ndarray, Any], np.ndarray]
        if activation == "relu":
            self._act, self._act_back = layers.relu_forward, layers.relu_backward
        else:
            self._act = lambda x: layers.leaky_relu_forward(x, leaky_slope)
            self._act_back = layers.leaky_relu_backward

    def _structure(self, model: str, **shape: Any) -> Structure:
        return Structure(model, self.activation, self.leaky_slope, self.loss_name,
                         self.weight_names, **shape)

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """images (N, H, W, C) -> this network's input (:func:`prepare_input`)."""
        return prepare_input(self.structure, images)

    def data_loss(self, scores: np.ndarray, y: np.ndarray,
                  eps: float) -> tuple[float, np.ndarray]:
        """(mean data loss, dscores) of scores (N, K) against labels y (N,)."""
        return self._loss_fn(scores, y, eps)

    def _cost(self, loss: float, grads: dict[str, np.ndarray], lam: float) -> float:
        """Adds lam * sum ||W||^2 to the loss and 2 lam W to the weight gradients."""
        if not lam:
            return loss
        add_l2_gradient(grads, self.params, self.weight_names, lam)
        return loss + lam * l2_penalty(self.params, self.weight_names)


class MLP(_Base):
    """[dropout_input] - affine - act - [dropout] - ... - affine; ``hidden`` gives the widths."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], num_classes: int, *,
                 rng: np.random.Generator, init: str = "xavier", dropout: float = 0.0,
                 dropout_input: float = 0.0, activation: str = "relu",
                 leaky_slope: float = 0.01, loss: str = "softmax",
                 dtype: np.dtype | type = np.float32) -> None:
        super().__init__(activation=activation, leaky_slope=leaky_slope, dropout=dropout,
                         dropout_input=dropout_input, loss=loss)
        dims = (input_dim, *hidden, num_classes)
        self.params = {}
        for i in range(len(dims) - 1):
            self.params[f"W{i + 1}"] = init_weights(init, dims[i], dims[i + 1], rng, dtype)
            self.params[f"b{i + 1}"] = np.zeros(dims[i + 1], dtype=dtype)
        self.layers = len(dims) - 1
        self.weight_names = tuple(f"W{i + 1}" for i in range(self.layers))
        self.structure = self._structure("mlp", layers=self.layers)

    def _forward(self, x: np.ndarray, rng: np.random.Generator | None
                 ) -> tuple[np.ndarray, list[Any], Any]:
        caches = []
        h, _ = layers.dropout_forward(x, self.dropout_input, rng)
        for i in range(1, self.layers):
            h, c_aff = layers.affine_forward(h, self.params[f"W{i}"], self.params[f"b{i}"])
            h, c_act = self._act(h)
            h, c_drop = layers.dropout_forward(h, self.dropout, rng)
            caches.append((c_aff, c_act, c_drop))
        out, c_last = layers.affine_forward(h, self.params[f"W{self.layers}"],
                                            self.params[f"b{self.layers}"])
        return out, caches, c_last

    def loss(self, x: np.ndarray, y: np.ndarray, *, lam: float, eps: float,
             rng: np.random.Generator | None) -> tuple[float, float, dict[str, np.ndarray]]:
        """Returns (loss, cost = loss + lam * sum ||W||^2, gradients of the cost).

        ``rng`` draws the dropout masks; ``None`` turns dropout off.
        """
        scores, caches, c_last = self._forward(x, rng)
        loss, dout = self._loss_fn(scores, y, eps)
        grads: dict[str, np.ndarray] = {}
        L = self.layers
        dh, grads[f"W{L}"], grads[f"b{L}"] = layers.affine_backward(dout, c_last)
        for i in range(L - 1, 0, -1):
            c_aff, c_act, c_drop = caches[i - 1]
            dh = self._act_back(layers.dropout_backward(dh, c_drop), c_act)
            dh, grads[f"W{i}"], grads[f"b{i}"] = layers.affine_backward(dh, c_aff,
                                                                        input_grad=i > 1)
        return loss, self._cost(loss, grads, lam), grads

    def scores(self, x: np.ndarray) -> np.ndarray:
        """x (N, D) -> scores (N, K), without dropout."""
        return self._forward(x, None)[0]


class PatchConvNet(_Base):
    """Patchify conv (nf filters f x f x C, stride f) - act - affine nh - act - affine K.

    With lists ``f = [f_1, ..., f_m]`` and ``nf = [nf_1, ..., nf_m]`` the network has one
    patchify convolution per patch size (parameters ``F1``, ``bF1``, ..., ``Fm``, ``bFm``),
    each followed by the activation; their flattened outputs are concatenated, in that order,
    into the hidden layer's input. A single size keeps the names ``F`` and ``bF``.

    ``dropout_input`` drops entries of the patch matrix (that is, pixels; with several sizes
    each size's copy of a pixel independently); ``dropout`` acts on the nh hidden units.
    """

    def __init__(self, image_shape: tuple[int, int, int], f: int | Sequence[int],
                 nf: int | Sequence[int], nh: int, num_classes: int, *,
                 rng: np.random.Generator, init: str = "xavier", dropout: float = 0.0,
                 dropout_input: float = 0.0, activation: str = "relu",
                 leaky_slope: float = 0.01, loss: str = "softmax",
                 dtype: np.dtype | type = np.float32) -> None:
        super().__init__(activation=activation, leaky_slope=leaky_slope, dropout=dropout,
                         dropout_input=dropout_input, loss=loss)
        h, w, c = image_shape
        fs = [f] if isinstance(f, int) else list(f)
        nfs = [nf] if isinstance(nf, int) else list(nf)
        if len(fs) != len(nfs) or not fs:
            raise ValueError(f"f={fs} and nf={nfs} need one filter count per patch size")
        for size in fs:
            if h % size or w % size:
                raise ValueError(f"f={size} does not divide the image size {h}x{w}")
        self.multi = not isinstance(f, int)
        self.f = f if isinstance(f, int) else tuple(fs)
        self.branches: list[_Branch] = []
        col = row = 0
        for i, (size, count) in enumerate(zip(fs, nfs, strict=True)):
            n_p, d = (h // size) * (w // size), size * size * c
            suffix = str(i + 1) if self.multi else ""
            self.branches.append(_Branch(size, n_p, d, count, f"F{suffix}", f"bF{suffix}",
                                         col, row))
            col += n_p * d
            row += n_p * count
        self.n_p = self.branches[0].n_p
        self.params = {}
        for br in self.branches:
            self.params[br.w] = init_weights(init, br.d, br.nf, rng, dtype)
            self.params[br.b] = np.zeros(br.nf, dtype=dtype)
        self.params.update({
            "W1": init_weights(init, row, nh, rng, dtype),
            "b1": np.zeros(nh, dtype=dtype),
            "W2": init_weights(init, nh, num_classes, rng, dtype),
            "b2": np.zeros(num_classes, dtype=dtype),
        })
        self.weight_names = (*(br.w for br in self.branches), "W1", "W2")
        self.structure = self._structure("convnet", branches=tuple(self.branches),
                                         multi=self.multi)

    def _patches(self, x: np.ndarray) -> list[np.ndarray]:
        """Each branch's patch matrix (N, n_p, d) from the prepared input: contiguous
        copies with several sizes, x itself with one."""
        if not self.multi:
            return [x]
        n = len(x)
        return [np.ascontiguousarray(x[:, br.col:br.col + br.n_p * br.d]).reshape(n, br.n_p,
                                                                                    br.d)
                for br in self.branches]

    def _forward(self, x: np.ndarray, rng: np.random.Generator | None
                 ) -> tuple[np.ndarray, tuple[Any, ...]]:
        n = len(x)
        x, _ = layers.dropout_forward(x, self.dropout_input, rng)
        convs, flat = [], []
        for br, p in zip(self.branches, self._patches(x), strict=True):
            s, c_conv = layers.patch_conv_forward(p, self.params[br.w], self.params[br.b])
            s, c_act0 = self._act(s)
            convs.append((c_conv, c_act0, s.shape))
            flat.append(s.reshape(n, -1))
        h = flat[0] if len(flat) == 1 else np.concatenate(flat, axis=1)
        h, c_aff1 = layers.affine_forward(h, self.params["W1"], self.params["b1"])
        h, c_act1 = self._act(h)
        h, c_drop = layers.dropout_forward(h, self.dropout, rng)
        out, c_aff2 = layers.affine_forward(h, self.params["W2"], self.params["b2"])
        return out, (convs, c_aff1, c_act1, c_drop, c_aff2)

    def loss(self, x: np.ndarray, y: np.ndarray, *, lam: float, eps: float,
             rng: np.random.Generator | None) -> tuple[float, float, dict[str, np.ndarray]]:
        """Returns (loss, cost = loss + lam * sum ||W||^2, gradients of the cost)."""
        scores, (convs, c_aff1, c_act1, c_drop, c_aff2) = self._forward(x, rng)
        loss, dout = self._loss_fn(scores, y, eps)
        grads: dict[str, np.ndarray] = {}
        dh, grads["W2"], grads["b2"] = layers.affine_backward(dout, c_aff2)
        dh = self._act_back(layers.dropout_backward(dh, c_drop), c_act1)
        dh, grads["W1"], grads["b1"] = layers.affine_backward(dh, c_aff1)
        assert dh is not None
        for br, (c_conv, c_act0, s_shape) in zip(self.branches, convs, strict=True):
            block = dh[:, br.row:br.row + br.n_p * br.nf]
            ds = self._act_back(block.reshape(s_shape), c_act0)
            _, grads[br.w], grads[br.b] = layers.patch_conv_backward(ds, c_conv,
                                                                     input_grad=False)
        return loss, self._cost(loss, grads, lam), {k: grads[k] for k in self.params}

    def scores(self, p: np.ndarray) -> np.ndarray:
        """p as :meth:`prepare` makes it -> scores (N, K), without dropout."""
        return self._forward(p, None)[0]


@dataclass(frozen=True)
class _Branch:
    """One patch size of the patchify ConvNet: patch size f, n_p patches of d = f*f*C values,
    nf filters (parameters ``w``, ``b``); its block starts at column ``col`` of the prepared
    input and at row ``row`` of W1."""

    f: int
    n_p: int
    d: int
    nf: int
    w: str
    b: str
    col: int
    row: int


class ConvNet3(_Base):
    """The three-layer ConvNet: conv (nf filters filter_size x filter_size, stride, zero
    padding) - act - 2x2 max pool - affine nh - act - affine K.

    ``pad=None`` keeps the image size at stride 1: pad = (filter_size - 1) // 2. Filters are
    held as a (filter_size^2 * C, nf) matrix like the patch filters.
    """

    def __init__(self, image_shape: tuple[int, int, int], nf: int, filter_size: int, nh: int,
                 num_classes: int, *, rng: np.random.Generator, stride: int = 1,
                 pad: int | None = None, init: str = "xavier", dropout: float = 0.0,
                 dropout_input: float = 0.0, activation: str = "relu",
                 leaky_slope: float = 0.01, loss: str = "softmax",
                 dtype: np.dtype | type = np.float32) -> None:
        super().__init__(activation=activation, leaky_slope=leaky_slope, dropout=dropout,
                         dropout_input=dropout_input, loss=loss)
        h, w, c = image_shape
        self.filter_size = filter_size
        self.stride = stride
        self.pad = (filter_size - 1) // 2 if pad is None else pad
        where = (f"filter_size={filter_size}, conv_stride={stride}, conv_pad={self.pad} do not "
                 f"fit {h}x{w} images")
        try:
            ho = layers.conv_output_size(h, filter_size, stride, self.pad)
            wo = layers.conv_output_size(w, filter_size, stride, self.pad)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if ho % 2 or wo % 2:
            raise ValueError(f"{where}: the {ho}x{wo} convolution output cannot be split into "
                             f"2x2 pooling windows (it needs an even height and width)")
        self.params = {
            "F": init_weights(init, filter_size * filter_size * c, nf, rng, dtype),
            "bF": np.zeros(nf, dtype=dtype),
            "W1": init_weights(init, (ho // 2) * (wo // 2) * nf, nh, rng, dtype),
            "b1": np.zeros(nh, dtype=dtype),
            "W2": init_weights(init, nh, num_classes, rng, dtype),
            "b2": np.zeros(num_classes, dtype=dtype),
        }
        self.weight_names = ("F", "W1", "W2")
        self.structure = self._structure("convnet3", filter_size=filter_size, stride=stride,
                                         pad=self.pad)

    def _forward(self, x: np.ndarray, rng: np.random.Generator | None
                 ) -> tuple[np.ndarray, tuple[Any, ...]]:
        x, _ = layers.dropout_forward(x, self.dropout_input, rng)
        s, c_conv = layers.conv_forward(x, self.params["F"], self.params["bF"],
                                        self.filter_size, self.stride, self.pad)
        s, c_act0 = self._act(s)
        s, c_pool = layers.max_pool_forward(s)
        h = s.reshape(len(x), -1)
        h, c_aff1 = layers.affine_forward(h, self.params["W1"], self.params["b1"])
        h, c_act1 = self._act(h)
        h, c_drop = layers.dropout_forward(h, self.dropout, rng)
        out, c_aff2 = layers.affine_forward(h, self.params["W2"], self.params["b2"])
        return out, (c_conv, c_act0, c_pool, s.shape, c_aff1, c_act1, c_drop, c_aff2)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """x (N, H, W, C) -> scores (N, K), without dropout."""
        return self._forward(x, None)[0]

    def loss(self, x: np.ndarray, y: np.ndarray, *, lam: float, eps: float,
             rng: np.random.Generator | None) -> tuple[float, float, dict[str, np.ndarray]]:
        """Returns (loss, cost = loss + lam * sum ||W||^2, gradients of the cost)."""
        scores, (c_conv, c_act0, c_pool, s_shape, c_aff1, c_act1, c_drop, c_aff2) = \
            self._forward(x, rng)
        loss, dout = self._loss_fn(scores, y, eps)
        grads: dict[str, np.ndarray] = {}
        dh, grads["W2"], grads["b2"] = layers.affine_backward(dout, c_aff2)
        dh = self._act_back(layers.dropout_backward(dh, c_drop), c_act1)
        dh, grads["W1"], grads["b1"] = layers.affine_backward(dh, c_aff1)
        ds = self._act_back(layers.max_pool_backward(dh.reshape(s_shape), c_pool), c_act0)
        _, grads["F"], grads["bF"] = layers.conv_backward(ds, c_conv, input_grad=False)
        return loss, self._cost(loss, grads, lam), grads
