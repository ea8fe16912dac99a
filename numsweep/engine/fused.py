"""The trained networks: K trials of the same structure in one set of arrays, trained as one.

A fused network holds K trials' parameters stacked along a leading trial axis: weights
(K, D_in, D_out), biases (K, 1, D_out), so that every parameter is 3-D and a per-trial value
(K, 1, 1) broadcasts against all of them; a lone trial is K = 1. All K trials see the same
batch, so the layer that reads it runs ONE product for all K trials. One class per model,
each with its layouts (:func:`fuse` picks one):

- :class:`FusedMLP`: per trial, or ``wide`` (K > 1): the first layer (N, D) @ (D, K h), the
  K weight matrices side by side; the deeper layers are batched per trial;
- :class:`FusedPatchConvNet`: patch rows, or ``feature_major`` (K > 1): the patchify
  convolution (K nf, d) @ (d, n_p N), all K filter banks against the batch's patches laid
  out feature-major once per batch, its output read per trial by the hidden layer's
  batched product without a transposing pass;
- :class:`FusedConvNet3`: the batch's im2col matrix against all K filter banks at once;
- the loss, activation, bias, dropout and the update are one call each for all K.

A group of one keeps the lone trial's own products (the per-trial and patch-row layouts),
which the wide layouts would not speed up, and in the ConvNet's case would slow down (the
patches' transpose costs what the lone products gain). One training loop (``group.py``).

Measured per update per trial (``train_step``: forward and backward, no optimizer;
``benchmarks/group_speed.py --layouts --threads 1``, CPU time, medians of 5 (wide: 3)
alternating runs in one process, a lone trial timed in the same alternation; batch 100,
float32, AMD EPYC, 2 cores with a load of 5-7 from other jobs, so read the ratios, not
the times, and expect +-10%): a lone trial's time divided by the group's per trial, in the
lone layout (K per-trial products) -> the layouts here:

==========================  ===========  ===========
configuration               K = 8        K = 32
==========================  ===========  ===========
ConvNet f=4 nf=10 nh=50     1.19 -> 1.41 1.22 -> 1.54
ConvNet f=4 nf=40 nh=300    1.03 -> 1.06 1.06 -> 1.10
MLP hidden 50               1.22 -> 1.40 1.25 -> 1.46
==========================  ===========  ===========

(An earlier run, the lone trial timed apart and at a busier moment, gave 1.80x and 1.96x
for the course ConvNet: the ratio is only as good as the moment the lone trial ran.)
The course ConvNet at K = 2, 3, 4: 1.10 -> 1.11, 1.19 -> 1.27, 1.15 -> 1.39 (the shared
transposes of the patches pay from K = 3; at K = 2 the two layouts are even).
The issue's target of 2x per trial at K = 8 is not reached on one CPU core.

What bounds it: the products a group cannot widen (the hidden layers, per trial by
nature) already run near the core's peak for one trial, (N, nf n_p) @ (nf n_p, nh) and the
MLP's (N, D) @ (D, h) alike, so fusing gains only what the skinny products and per-call
costs lose; the wide ConvNet is almost all such products, hence ~1.05x.

Per-trial values (dropout rates here, label smoothing, learning rates and L2 in the step)
are (K,)-shaped arrays broadcast. Each trial draws its dropout masks from its own generator
in the order and shapes the lone network draws them, so a trial's numbers do not depend on
the other trials of its group, up to rounding: in the wide products a BLAS kernel may round
a trial's numbers differently by its place (float64: relative ~1e-16 per product).

The reference is the network of ``networks.py`` (the allocating layers of ``layers.py``,
gradient-checked): ``tests/engine/test_fast_path.py`` and ``test_group.py`` check the fused
losses and gradients, K = 1 and K > 1, against K reference networks' ``loss``
(:meth:`FusedNet.lone_param` maps a fused layout back). Array
functions come from :func:`backend.array_module` of the inputs and are ones NumPy and CuPy
share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from numsweep.engine.backend import array_module
from numsweep.engine.losses import LOSSES
from numsweep.engine.networks import Network, Structure, prepare_input
from numsweep.engine.pertrial import per_trial
from numsweep.engine.workspace import Workspace

Arrays = dict[str, Any]


def bmm(a: Any, b: Any, out: Any) -> Any:
    """out (K, M, N) = a @ b, a (M, L) or (K, M, L), b (L, N) or (K, L, N): one batched
    product; a group of one takes the plain 2-D product (no batching overhead)."""
    xp = array_module(out)
    if out.shape[0] == 1:
        return xp.matmul(a[0] if a.ndim == 3 else a, b[0] if b.ndim == 3 else b, out=out[0])
    return xp.matmul(a, b, out=out)




class FusedNet:
    """What the fused networks share: stacked parameters, activation, dropout, loss.

    Built from a network's :class:`~numsweep.engine.networks.Structure` (what it is apart
    from its weights) and ``params``: each parameter name of that structure -> its K
    trials' values stacked, (K, rows, cols), biases (K, 1, n) (:func:`fuse` stacks them).
    ``weight_names`` are those L2 applies to; :meth:`prepare` turns images into the input
    every trial of the group shares.
    """

    params: Arrays
    weight_names: tuple[str, ...]

    def __init__(self, structure: Structure, params: Arrays, dropout: Sequence[float],
                 dropout_input: Sequence[float]) -> None:
        self.structure = structure
        self.params = params
        self.k = len(dropout)
        self.dtype = next(iter(params.values())).dtype
        self.activation = structure.activation
        self.leaky_slope = structure.leaky_slope
        self.loss_name = structure.loss
        self.weight_names = structure.weight_names
        self.dropout = np.asarray(dropout, dtype=np.float64)
        self.dropout_input = np.asarray(dropout_input, dtype=np.float64)
        self._ws = Workspace(self.dtype)
        self._grads: Arrays | None = None
        self._keep_scale: dict[str, Any] = {}
        self.device_rng: Any = None

    def to_device(self, xp: Any, seed: int) -> FusedNet:
        """Move the parameters to ``xp``'s device (once, before training; NumPy: nothing to
        do). The buffers are then allocated there, and dropout masks are drawn there from
        one generator of the group seeded with ``seed``: on a device they are not the masks
        the CPU draws from each trial's own stream."""
        if xp is np:
            return self
        self.params = {name: xp.asarray(p) for name, p in self.params.items()}
        self._ws = Workspace(self.dtype, xp)
        self._grads = None
        self._keep_scale = {}
        self.device_rng = xp.random.default_rng(seed)
        return self

    def prepare(self, images: np.ndarray) -> np.ndarray:
        """images (N, H, W, C) -> the input every trial shares (:func:`networks.prepare_input`)."""
        return prepare_input(self.structure, images)

    # -- group membership --------------------------------------------------------------

    def select(self, keep: Sequence[int]) -> None:
        """Keep only the trials ``keep`` (indices into the current K), in that order."""
        idx = np.asarray(keep)
        self.params = self._select_params(idx)
        self.k = len(idx)
        self.dropout = self.dropout[idx]
        self.dropout_input = self.dropout_input[idx]
        self._grads = None
        self._keep_scale = {}

    def join(self, nets: Sequence[Network], dropout: Sequence[float],
             dropout_input: Sequence[float]) -> None:
        """Append trials after the current K (a slot group's new trials): ``nets``, their
        lone networks with their initial weights, laid out as this network's trials are."""
        new = fuse(nets, dropout, dropout_input, layout=self.layout)
        xp = array_module(next(iter(self.params.values())))
        self.params = self._adopt({name: xp.concatenate([p, xp.asarray(new.params[name])])
                                   for name, p in self.params.items()})
        self.k += len(nets)
        self.dropout = np.concatenate([self.dropout, new.dropout])
        self.dropout_input = np.concatenate([self.dropout_input, new.dropout_input])
        self._grads = None
        self._keep_scale = {}

    def copy_row(self, dst: int, src: int) -> None:
        """Trial ``dst``'s parameters become a copy of trial ``src``'s (every layout indexes
        a trial's slice by its leading index; the wide layout's views write through)."""
        for p in self.params.values():
            p[dst] = p[src]

    def set_values(self, j: int, *, dropout: float, dropout_input: float) -> None:
        """Trial ``j``'s dropout rates from the next update on (the cached per-trial
        arrays rebuilt)."""
        self.dropout = self.dropout.copy()
        self.dropout_input = self.dropout_input.copy()
        self.dropout[j], self.dropout_input[j] = dropout, dropout_input
        self._keep_scale = {}

    @property
    def layout(self) -> str:
        """``"wide"`` or ``"lone"`` (see :func:`fuse`)."""
        return "lone"

    def _adopt(self, arrays: Arrays) -> Arrays:
        """Freshly stacked parameters (K, ...) in this network's layout (as ``select``
        leaves them)."""
        return arrays

    def lone_param(self, name: str, a: Any) -> Any:
        """Trial-stacked ``a`` (K, ...) of parameter ``name`` (the parameter or its gradient)
        with each trial's slice in the lone network's order (reshaped: a.[j].reshape(lone
        shape)); here the fused layout already is."""
        return a

    def _select_params(self, idx: np.ndarray) -> Arrays:
        xp = array_module(next(iter(self.params.values())))
        at = idx if xp is np else xp.asarray(idx)
        return {name: p[at] for name, p in self.params.items()}

    # -- shared pieces -----------------------------------------------------------------

    def _grad_buffers(self) -> Arrays:
        if self._grads is None:
            xp = array_module(next(iter(self.params.values())))
            self._grads = {k: xp.empty(v.shape, v.dtype) for k, v in self.params.items()}
        return self._grads

    def _hidden_to_scores(self, h: Any, rngs: Sequence[np.random.Generator] | None
                          ) -> tuple[Any, Any]:
        """The ConvNets' head: the hidden layer's products h (K, N, nh) get b1, the
        activation and dropout in place, then the scores (K, N, C) = h W2 + b2; returns the
        scores and the dropout mask (None without dropout)."""
        h += self.params["b1"]
        self._act_inplace(h, "h")
        keep_h = self._dropout_inplace(h, self.dropout, rngs, "h")
        w2 = self.params["W2"]
        out = self._ws.get("out", (*h.shape[:2], w2.shape[2]))
        bmm(h, w2, out=out)
        out += self.params["b2"]
        return out, keep_h

    def _act_inplace(self, a: Any, name: str, mask: Any = None) -> None:
        """a = act(a) in place, as the lone network's ``_act_inplace``; the mask (a > 0) is
        kept in ``mask`` when one is given (else, for ReLU only, in the workspace's)."""
        xp = array_module(a)
        if mask is None and self.activation == "relu":
            mask = self._ws.get(name + ".mask", a.shape, np.bool_)
        if mask is not None:
            xp.greater(a, 0, out=mask)
        if self.activation == "relu":
            xp.multiply(a, mask, out=a)
        else:
            tmp = self._ws.get(name + ".act", a.shape)
            xp.multiply(a, self.leaky_slope, out=tmp)
            xp.maximum(a, tmp, out=a)

    def _act_back_inplace(self, d: Any, out: Any, name: str, mask: Any = None) -> None:
        """d *= act'(pre-activation) in place: from ``mask`` when the forward kept one, else
        ReLU's from the forward of the same ``name``, leaky ReLU's from its output (out > 0)."""
        xp = array_module(d)
        if mask is None:
            mask = self._ws.get(name + ".mask", out.shape, np.bool_)
            if self.activation != "relu":
                xp.greater(out, 0, out=mask)
        if self.activation == "relu":
            xp.multiply(d, mask, out=d)
        else:
            tmp = self._ws.get(name + ".act", d.shape)
            xp.multiply(d, self.leaky_slope, out=tmp)
            xp.copyto(tmp, d, where=mask)
            d[...] = tmp

    def _dropout_inplace(self, a: Any, rates: np.ndarray, rngs: Sequence[np.random.Generator]
                         | None, name: str) -> Any:
        """Inverted dropout of each trial's slice a[k] (K, ...) at its own rate, drawing from
        its own generator exactly what the lone network draws; None when no trial drops."""
        if rngs is None or not self._any_rate(name, rates):
            return None
        xp = array_module(a)
        u = self._ws.get(name + ".u", a.shape, np.float32)
        if xp is not np:  # one draw for the group (a trial of rate 0 keeps all: u >= 0)
            self.device_rng.random(u.shape, dtype=np.float32, out=u)
        else:
            for k, (rate, rng) in enumerate(zip(rates, rngs, strict=True)):
                if rate:
                    rng.random(dtype=np.float32, out=u[k])
                else:
                    u[k] = 1  # kept, and scaled by 1 below: the trial is untouched
        keep = self._ws.get(name + ".keep", a.shape, np.bool_)
        xp.greater_equal(u, self._per_trial_cached(name + ".rate", rates, np.float32, xp,
                                                   a.ndim), out=keep)
        xp.multiply(a, keep, out=a)
        a *= self._inv_keep(name, rates, xp, a.ndim)
        return keep

    def _any_rate(self, name: str, rates: np.ndarray) -> bool:
        flag = self._keep_scale.get(name + ".any")
        if flag is None:
            flag = self._keep_scale[name + ".any"] = bool(rates.any())
        return flag

    def _inv_keep(self, name: str, rates: np.ndarray, xp: Any, ndim: int) -> Any:
        return self._per_trial_cached(name + ".inv", 1 / (1 - rates), self.dtype, xp, ndim)

    def _per_trial_cached(self, key: str, values: np.ndarray, dtype: Any, xp: Any,
                          ndim: int) -> Any:
        """Per-trial values as (K, 1, ..., 1) of ``ndim`` dimensions (cached per group)."""
        arr = self._keep_scale.get(key)
        if arr is None:
            arr = per_trial(values, dtype, xp).reshape(-1, *(1,) * (ndim - 1))
            self._keep_scale[key] = arr
        return arr

    def _dropout_back_inplace(self, d: Any, keep: Any, name: str, rates: np.ndarray) -> None:
        if keep is not None:
            xp = array_module(d)
            xp.multiply(d, keep, out=d)
            d *= self._inv_keep(name, rates, xp, d.ndim)

    def _input_dropout(self, x: Any, rngs: Sequence[np.random.Generator] | None
                       ) -> tuple[Any, Any]:
        """(K, N, D) per-trial copies of the shared input x (N, D) after each trial's input
        dropout, and the keep mask; x itself and None when no trial drops inputs."""
        if rngs is None or not self._any_rate("x", self.dropout_input):
            return x, None
        xp = array_module(x)
        xd = self._ws.get("x", (self.k, *x.shape))
        xp.copyto(xd, x[None])
        return xd, self._dropout_inplace(xd, self.dropout_input, rngs, "x")

    def _ones(self, n: int, xp: Any) -> Any:
        ones = self._keep_scale.get("ones")
        if ones is None or ones.shape[1] < n:
            ones = self._keep_scale["ones"] = xp.ones((1, n), dtype=self.dtype)
        return ones[:, :n]

    def loss_inplace(self, scores: Any, y: Any, eps: np.ndarray, scale: np.ndarray) -> Any:
        return LOSSES[self.loss_name].inplace(scores, y, eps, scale)

    def _forward(self, x: Any, rngs: Sequence[np.random.Generator] | None) -> tuple[Any, Any]:
        raise NotImplementedError

    def scores(self, x: Any) -> Any:
        """x (N, ...) prepared -> scores (K, N, C) of every trial, without dropout (a
        workspace array: overwritten by the next call)."""
        return self._forward(x, None)[0]


def _stack(nets: Sequence[Network], name: str) -> np.ndarray:
    """One parameter of K lone networks as (K, rows, cols); biases (n,) become (K, 1, n)."""
    arrays = [net.params[name] for net in nets]
    out = np.stack(arrays)
    return out.reshape(len(arrays), -1, out.shape[-1])


class FusedMLP(FusedNet):
    """K MLPs of the same widths (:class:`~numsweep.engine.networks.MLP` stacked), in one of
    two layouts (``wide``; :func:`fuse` picks it: K > 1 with a hidden layer).

    Per trial (``wide=False``): every layer is a batched product (K, N, D) @ (K, D, D'); for
    K = 1 exactly the lone network's products, so a trial alone keeps its lone numbers.

    Wide (``wide=True``): the first layer reads the batch every trial shares, so its K
    weight matrices are stored side by side, (D, K h), and meet the batch in ONE product,
    (N, D) @ (D, K h) -> (N, K h), where the per-trial layout runs K products of (N, D) @
    (D, h); its gradient is one product too, (D, N) @ (N, K h). ``params["W1"]`` and its
    gradient are (K, D, h) views of those (D, K h) arrays, and the first layer's activations
    (K, N, h) views of (N, K h) ones (strided: each trial's rows are h contiguous values),
    which the later, per-trial batched products, the optimizers and the element-wise passes
    read as they are. With input dropout the trials' inputs differ: the same layout, batched
    per trial. Exactness: the same sums in the same order as the lone network, but a trial's
    columns sit at another place in the wide product, which a BLAS kernel may round
    differently; so float64 agrees with the lone run to rounding (tested at relative 1e-10),
    not bitwise. For K = 1 the wide product is the lone one, so a group of one keeps the
    per-trial layout; so does softmax regression (no hidden layer: its one layer's output is
    the scores, which the losses want contiguous per trial).
    """

    def __init__(self, structure: Structure, params: Arrays, dropout: Sequence[float],
                 dropout_input: Sequence[float], *, wide: bool = False) -> None:
        super().__init__(structure, params, dropout, dropout_input)
        self.layers = structure.layers
        self.wide = wide
        self._widen(self.params)

    def _widen(self, arrays: Arrays) -> Arrays:
        """In the wide layout, ``arrays["W1"]`` (K, D, h) re-laid as a view of (D, K h)."""
        if self.wide:
            w = arrays["W1"]
            xp = array_module(w)
            buf = xp.empty((w.shape[1], w.shape[0], w.shape[2]), w.dtype).transpose(1, 0, 2)
            buf[...] = w
            arrays["W1"] = buf
        return arrays

    def _select_params(self, idx: np.ndarray) -> Arrays:
        return self._widen(super()._select_params(idx))

    @property
    def layout(self) -> str:
        return "wide" if self.wide else "lone"

    def _adopt(self, arrays: Arrays) -> Arrays:
        return self._widen(arrays)

    def to_device(self, xp: Any, seed: int) -> FusedNet:
        super().to_device(xp, seed)
        self._widen(self.params)  # the device copy left the wide layout
        return self

    def _grad_buffers(self) -> Arrays:
        if self._grads is None:
            self._grads = self._widen(super()._grad_buffers())
        return self._grads

    def _forward(self, x: Any, rngs: Sequence[np.random.Generator] | None
                 ) -> tuple[Any, tuple[list[Any], list[Any]]]:
        """Scores (K, N, C) (a workspace array), each affine layer's input, dropout masks."""
        n = len(x)
        h, keep = self._input_dropout(x, rngs)
        keeps, inputs = [keep], [h]
        for i in range(1, self.layers + 1):
            w, b = self.params[f"W{i}"], self.params[f"b{i}"]
            out = self._activation_buffer(f"h{i}", i, n, w.shape[2])
            self._affine(i, h, w, out)
            out += b
            if i < self.layers:
                self._act_inplace(out, f"h{i}")
                keeps.append(self._dropout_inplace(out, self.dropout, rngs, f"h{i}"))
                inputs.append(out)
            h = out
        return h, (inputs, keeps)

    def train_step(self, x: Any, y: Any, *, eps: np.ndarray, rngs: Sequence[
            np.random.Generator] | None, scale: np.ndarray) -> tuple[np.ndarray, Arrays]:
        """(K data losses, scale_k times each trial's data gradients) of one update on the
        shared batch x (N, D), y (N,), in reused buffers. No L2 term."""
        xp = array_module(x)
        grads = self._grad_buffers()
        n = len(x)
        scores, (inputs, keeps) = self._forward(x, rngs)
        loss = self.loss_inplace(scores, y, eps, scale)
        d = scores
        for i in range(self.layers, 0, -1):
            w = self.params[f"W{i}"]
            a = inputs[i - 1]
            self._weight_grad(i, a, d, grads[f"W{i}"])
            bmm(self._ones(n, xp), d, out=grads[f"b{i}"])
            if i > 1:
                dh = self._activation_buffer(f"d{i - 1}", i - 1, n, w.shape[1])
                bmm(d, w.transpose(0, 2, 1), out=dh)
                self._dropout_back_inplace(dh, keeps[i - 1], f"h{i - 1}", self.dropout)
                self._act_back_inplace(dh, inputs[i - 1], f"h{i - 1}")
                d = dh
        return loss, grads

    # the layout of each layer's activations and products: per trial (K, N, D'), except the
    # wide layout's first layer, (K, N, h) views of (N, K h)

    def _activation_buffer(self, name: str, i: int, n: int, width: int) -> Any:
        """Layer i's output (or its gradient) (K, N, width)."""
        if self.wide and i == 1:
            return self._ws.get(name, (n, self.k, width)).transpose(1, 0, 2)
        return self._ws.get(name, (self.k, n, width))

    def _affine(self, i: int, h: Any, w: Any, out: Any) -> None:
        if not self.wide:
            bmm(h, w, out=out)
        elif i == 1 and h.ndim == 2:  # the shared batch: one product for all K trials
            k, d, width = w.shape
            array_module(h).matmul(h, w.transpose(1, 0, 2).reshape(d, k * width),
                                   out=out.transpose(1, 0, 2).reshape(len(h), k * width))
        else:
            array_module(out).matmul(h, w, out=out)

    def _weight_grad(self, i: int, a: Any, d: Any, out: Any) -> None:
        if not self.wide:
            bmm(a.T if a.ndim == 2 else a.transpose(0, 2, 1), d, out=out)
        elif i == 1 and a.ndim == 2:
            k, dim, width = out.shape
            array_module(a).matmul(a.T, d.transpose(1, 0, 2).reshape(len(a), k * width),
                                   out=out.transpose(1, 0, 2).reshape(dim, k * width))
        else:
            array_module(out).matmul(a.T if a.ndim == 2 else a.transpose(0, 2, 1), d, out=out)


class FusedPatchConvNet(FusedNet):
    """K patchify ConvNets of the same shapes (one or several patch sizes,
    :class:`~numsweep.engine.networks.PatchConvNet` stacked), in one of two layouts
    (``feature_major``; :func:`fuse` picks it for K > 1).

    Patch rows (``feature_major=False``): the shared patch matrix (N n_p, d) meets the K
    filter banks (K, d, nf) in a batched product, whose output is laid out per trial, (K,
    N n_p, nf), for the hidden layer: for K = 1 exactly the lone network's products, so a
    trial alone keeps its lone numbers.

    Feature-major (``feature_major=True``): the convolution is ONE wide product for all K
    trials, and every later activation is contiguous per trial. Each branch's shared patch
    matrix (N, n_p, d) is laid out once per batch for the whole group as P^T (d, n_p N),
    columns ordered (patch, image); all K filter banks, stored stacked as (K nf, d), meet it
    in one product, C = F^T P^T (K nf, n_p N), the wide, well-shaped product BLAS runs at
    full rate, where the patch-row layout runs K products (N n_p, d) @ (d, nf) of nf = 10
    skinny columns each. Trial k's block of C is (nf n_p, N), rows (filter, patch): the
    bias, the activation and their gradients run in place on it, and the hidden layer reads
    it as the transposed operand of its batched product, (K, N, nf n_p) @ (K, nf n_p, nh),
    so no pass permutes it. Backward, the gradient dC comes straight out of (K, nf n_p, nh)
    @ (K, nh, N) in C's layout, and the filters' gradient is again one product, dF^T = dC
    (K nf, n_p N) @ P (n_p N, d). With input dropout the trials' patches differ: the same
    products, batched per trial.

    Parameters in the feature-major layout: a filter bank ``F`` (K, nf, d) (the lone (d, nf)
    transposed), its bias (K, nf, 1), and W1 (K, rows, nh) with each branch's rows in
    (filter, patch) order, where the lone network has (patch, filter); :meth:`lone_param`
    gives them back in the lone layout (``select``, the optimizers and L2 need no change:
    all are per-trial slices).

    Exactness: the same sums in the same order as the lone network, but a trial's rows sit
    at another place in the wide product, which a BLAS kernel may round differently
    (float64: relative ~1e-16 per product); so a trial's numbers equal its lone run's to
    rounding (tested: float64 1e-10), not necessarily bitwise, and may change in the last
    bits when another trial leaves the group.

    The trials run in chunks (:meth:`_chunks`) whose C fits in cache, so the bias, the
    activation and their gradients pass over C while it is there; a chunk's filter products
    are still one product each (K nf = 80 rows or more for the course ConvNet).

    Why not for K = 1: laying out P^T costs more than a lone trial's two filter products
    gain from it (measured: the course ConvNet's update ~20% slower in this layout with
    K = 1), so a group of one keeps the patch-row layout.
    """

    CHUNK_BYTES = 2 << 20
    """About what one chunk of trials' convolution outputs may take (an L2 cache or two)."""

    def __init__(self, structure: Structure, params: Arrays, dropout: Sequence[float],
                 dropout_input: Sequence[float], *, feature_major: bool = False) -> None:
        super().__init__(structure, params, dropout, dropout_input)
        self.branches = structure.branches
        self.multi = structure.multi
        self.feature_major = feature_major
        if not feature_major:
            return
        perm = np.arange(self.params["W1"].shape[1])
        for br in self.branches:
            block = np.arange(br.n_p * br.nf).reshape(br.n_p, br.nf)  # lone: (patch, filter)
            perm[br.row:br.row + br.n_p * br.nf] = br.row + block.T.reshape(-1)
        self._w1_perm = perm                  # fused row r is lone row perm[r]
        self._w1_unperm = np.argsort(perm)
        for br in self.branches:
            self.params[br.w] = self.params[br.w].transpose(0, 2, 1).copy()
            self.params[br.b] = self.params[br.b].transpose(0, 2, 1).copy()
        self.params["W1"] = self.params["W1"][:, self._w1_perm]

    @property
    def layout(self) -> str:
        return "wide" if self.feature_major else "lone"

    def lone_param(self, name: str, a: Any) -> Any:
        """Trial-stacked ``a`` (K, ...) of parameter ``name`` (a parameter or its gradient)
        in the lone layout: (K, d, nf), (K, 1, nf), W1's lone rows."""
        if not self.feature_major:
            return a
        if name == "W1":
            return a[:, self._w1_unperm]
        if any(name in (br.w, br.b) for br in self.branches):
            return a.transpose(0, 2, 1)
        return a

    def _forward(self, x: Any, rngs: Sequence[np.random.Generator] | None
                 ) -> tuple[Any, tuple[Any, ...]]:
        if self.feature_major:
            return self._forward_feature_major(x, rngs)
        return self._forward_patch_rows(x, rngs)

    def train_step(self, x: Any, y: Any, *, eps: np.ndarray, rngs: Sequence[
            np.random.Generator] | None, scale: np.ndarray) -> tuple[np.ndarray, Arrays]:
        """(K data losses, scale_k times each trial's data gradients, in this layout's
        parameters) of one update on the shared prepared batch x, y (N,), in reused
        buffers. No L2 term."""
        step = self._step_feature_major if self.feature_major else self._step_patch_rows
        return step(x, y, eps=eps, rngs=rngs, scale=scale)

    def _patches(self, x: Any) -> list[Any]:
        """Each branch's patch rows (..., N n_p, d): x itself with one size (shared (N, n_p,
        d) or per trial (K, N, n_p, d)), contiguous workspace copies with several."""
        xp = array_module(x)
        lead = x.shape[:-2] if not self.multi else x.shape[:-1]
        n = lead[-1]
        if not self.multi:
            return [x.reshape(*lead[:-1], n * self.branches[0].n_p, self.branches[0].d)]
        out = []
        for i, br in enumerate(self.branches):
            buf = self._ws.get(f"p{i}", (*lead[:-1], n * br.n_p, br.d))
            xp.copyto(buf.reshape(*lead, br.n_p * br.d), x[..., br.col:br.col + br.n_p * br.d])
            out.append(buf)
        return out

    def _forward_patch_rows(self, x: Any, rngs: Sequence[np.random.Generator] | None
                            ) -> tuple[Any, tuple[Any, ...]]:
        xp = array_module(x)
        n, k = len(x), self.k
        x, _ = self._input_dropout(x, rngs)
        ps = self._patches(x)
        w1 = self.params["W1"]
        h = self._ws.get("h", (k, n, w1.shape[2]))
        ts = []
        for i, (br, p) in enumerate(zip(self.branches, ps, strict=True)):
            t = self._ws.get(f"t{i}", (k, n * br.n_p, br.nf))
            # shared patches (N n_p, d) or per-trial ones (K, N n_p, d) @ filters (K, d, nf)
            bmm(p, self.params[br.w], out=t)
            # the bias repeated per patch, added along rows of n_p nf values (as the lone
            # network does: a broadcast over rows of only nf values costs a loop step per row)
            tiled = self._ws.get(f"bias{i}", (k, br.n_p, br.nf))
            xp.copyto(tiled, self.params[br.b])
            t2 = t.reshape(k, n, br.n_p * br.nf)
            t2 += tiled.reshape(k, 1, -1)
            self._act_inplace(t, f"t{i}")
            ts.append(t)
            w1_rows = w1[:, br.row:br.row + br.n_p * br.nf]
            if i == 0:
                bmm(t2, w1_rows, out=h)
            else:
                tmp = self._ws.get("h.part", h.shape)
                bmm(t2, w1_rows, out=tmp)
                h += tmp
        out, keep_h = self._hidden_to_scores(h, rngs)
        return out, (ps, ts, h, keep_h)

    def _hidden_backward(self, scores: Any, h: Any, keep_h: Any, grads: Arrays) -> Any:
        """The output layer's gradients and the hidden layer's bias gradient into ``grads``;
        returns d(hidden pre-activation) (K, N, nh). ``scores`` holds d(scores) (K, N, C)."""
        xp = array_module(scores)
        n = scores.shape[1]
        bmm(h.transpose(0, 2, 1), scores, out=grads["W2"])
        bmm(self._ones(n, xp), scores, out=grads["b2"])
        dh = self._ws.get("dh", h.shape)
        bmm(scores, self.params["W2"].transpose(0, 2, 1), out=dh)
        self._dropout_back_inplace(dh, keep_h, "h", self.dropout)
        self._act_back_inplace(dh, h, "h")
        bmm(self._ones(n, xp), dh, out=grads["b1"])
        return dh

    def _step_patch_rows(self, x: Any, y: Any, *, eps: np.ndarray, rngs: Sequence[
            np.random.Generator] | None, scale: np.ndarray) -> tuple[np.ndarray, Arrays]:
        """(K data losses, scale_k times each trial's data gradients) of one update on the
        shared prepared batch x, y (N,), in reused buffers. No L2 term."""
        xp = array_module(x)
        grads = self._grad_buffers()
        n, k = len(x), self.k
        scores, (ps, ts, h, keep_h) = self._forward_patch_rows(x, rngs)
        loss = self.loss_inplace(scores, y, eps, scale)
        w1 = self.params["W1"]
        dh = self._hidden_backward(scores, h, keep_h, grads)
        for i, (br, p, t) in enumerate(zip(self.branches, ps, ts, strict=True)):
            rows = slice(br.row, br.row + br.n_p * br.nf)
            t2 = t.reshape(k, n, br.n_p * br.nf)
            if self.multi:
                part = self._ws.get(f"gW1.{i}", (k, br.n_p * br.nf, dh.shape[2]))
                bmm(t2.transpose(0, 2, 1), dh, out=part)
                grads["W1"][:, rows] = part
            else:
                bmm(t2.transpose(0, 2, 1), dh, out=grads["W1"])
            ds = self._ws.get(f"ds{i}", t2.shape)
            bmm(dh, w1[:, rows].transpose(0, 2, 1), out=ds)
            ds = ds.reshape(t.shape)
            self._act_back_inplace(ds, t, f"t{i}")
            pt = p.T if p.ndim == 2 else p.transpose(0, 2, 1)
            bmm(pt, ds, out=grads[br.w])
            bmm(self._ones(n * br.n_p, xp), ds, out=grads[br.b])
        return loss, grads


    def _patch_major(self, p: Any, i: int, n: int, n_p: int) -> tuple[Any, Any]:
        """Patches (N n_p, d) or per trial (K, N n_p, d), rows (image, patch), as P (n_p N,
        d) and P^T (d, n_p N), rows resp. columns (patch, image) (per trial: (K, ...))."""
        xp = array_module(p)
        lead, d = p.shape[:-2], p.shape[-1]
        pm = self._ws.get(f"pm{i}", (*lead, n_p, n, d))
        xp.copyto(pm, p.reshape(*lead, n, n_p, d).swapaxes(-3, -2))   # runs of d values
        pm = pm.reshape(*lead, n_p * n, d)
        pt = self._ws.get(f"pt{i}", (*lead, d, n_p * n))
        if lead or xp is not np:
            xp.copyto(pt, pm.swapaxes(-2, -1))
        else:  # in column blocks that stay in cache: ~1.5x faster than one strided copy
            for start in range(0, n_p * n, 256):
                np.copyto(pt[:, start:start + 256], pm[start:start + 256].T)
        return pm, pt

    def _chunks(self, n: int) -> list[slice]:
        """Trials in runs whose convolution outputs fit about CHUNK_BYTES: each run's
        bias, activation and hidden product then read C from cache (one pass over all K
        trials' C at once runs at memory speed once it outgrows the cache)."""
        per_trial = sum(br.nf * br.n_p for br in self.branches) * n * self.dtype.itemsize
        size = max(1, self.CHUNK_BYTES // per_trial)
        return [slice(s, min(s + size, self.k)) for s in range(0, self.k, size)]

    def _forward_feature_major(self, x: Any, rngs: Sequence[np.random.Generator] | None
                               ) -> tuple[Any, tuple[Any, ...]]:
        xp = array_module(x)
        n, k = len(x), self.k
        x, _ = self._input_dropout(x, rngs)
        ps = self._patches(x)
        w1 = self.params["W1"]
        h = self._ws.get("h", (k, n, w1.shape[2]))
        pms = [self._patch_major(p, i, n, br.n_p)
               for i, (br, p) in enumerate(zip(self.branches, ps, strict=True))]
        cs = [self._ws.get(f"c{i}", (k, br.nf, br.n_p * n)) for i, br in enumerate(self.branches)]
        masks = [self._ws.get(f"c{i}.mask", c.shape, np.bool_) for i, c in enumerate(cs)]
        for run in self._chunks(n):
            kr = run.stop - run.start
            for i, (br, (_, pt), c, mask) in enumerate(zip(self.branches, pms, cs, masks,
                                                          strict=True)):
                c_run = c[run]
                if pt.ndim == 2:    # shared patches: one product for the run's filter banks
                    xp.matmul(self.params[br.w][run].reshape(kr * br.nf, br.d), pt,
                              out=c_run.reshape(kr * br.nf, -1))
                else:
                    xp.matmul(self.params[br.w][run], pt[run], out=c_run)
                c_run += self.params[br.b][run]
                self._act_inplace(c_run, f"c{i}", mask[run])
                # trial k's hidden input is its block (nf n_p, N) read transposed
                rows_t = c_run.reshape(kr, br.nf * br.n_p, n).transpose(0, 2, 1)
                w1_rows = w1[run, br.row:br.row + br.n_p * br.nf]
                if i == 0:
                    bmm(rows_t, w1_rows, out=h[run])
                else:
                    tmp = self._ws.get("h.part", h[run].shape)
                    bmm(rows_t, w1_rows, out=tmp)
                    h[run] += tmp
        out, keep_h = self._hidden_to_scores(h, rngs)
        return out, ([pm for pm, _ in pms], cs, masks, h, keep_h)

    def _step_feature_major(self, x: Any, y: Any, *, eps: np.ndarray, rngs: Sequence[
            np.random.Generator] | None, scale: np.ndarray) -> tuple[np.ndarray, Arrays]:
        """(K data losses, scale_k times each trial's data gradients, in this class's
        parameter layout) of one update on the shared prepared batch x, y (N,)."""
        xp = array_module(x)
        grads = self._grad_buffers()
        n = len(x)
        scores, (pms, cs, masks, h, keep_h) = self._forward_feature_major(x, rngs)
        loss = self.loss_inplace(scores, y, eps, scale)
        w1 = self.params["W1"]
        dh = self._hidden_backward(scores, h, keep_h, grads)
        for run in self._chunks(n):
            kr = run.stop - run.start
            dh_run = dh[run]
            for i, (br, pm, c, mask) in enumerate(zip(self.branches, pms, cs, masks,
                                                      strict=True)):
                rows = slice(br.row, br.row + br.n_p * br.nf)
                c3 = c[run].reshape(kr, br.nf * br.n_p, n)
                if self.multi:
                    part = self._ws.get(f"gW1.{i}", (kr, br.n_p * br.nf, dh.shape[2]))
                    bmm(c3, dh_run, out=part)
                    grads["W1"][run, rows] = part
                else:
                    bmm(c3, dh_run, out=grads["W1"][run])
                dc = self._ws.get(f"dc{i}", c[run].shape)     # one run's, in C's layout
                bmm(w1[run, rows], dh_run.transpose(0, 2, 1), out=dc.reshape(c3.shape))
                self._act_back_inplace(dc, None, f"c{i}", mask[run])
                ones = self._ones(br.n_p * n, xp).reshape(-1, 1)
                if pm.ndim == 2:    # shared patches: one product for the run's filter banks
                    xp.matmul(dc.reshape(kr * br.nf, -1), pm,
                              out=grads[br.w][run].reshape(kr * br.nf, br.d))
                    xp.matmul(dc.reshape(kr * br.nf, -1), ones,
                              out=grads[br.b][run].reshape(kr * br.nf, 1))
                else:
                    xp.matmul(dc, pm[run], out=grads[br.w][run])
                    xp.matmul(dc, ones, out=grads[br.b][run])
        return loss, grads


class FusedConvNet3(FusedNet):
    """K three-layer ConvNets of the same shapes (:class:`~numsweep.engine.networks.ConvNet3`)
    fused: conv - act - 2x2 max pool - affine - act - [dropout] - affine.

    The batch's im2col matrix (N H' W', F F C) is built once per batch and shared by the
    group; its product with all K filter banks side by side, (F F C, K nf), is ONE wide
    product whose output (N H' W', K nf) each trial reads as a strided (N, H', W', nf) view:
    the bias, the activation, the pooling and the rest run per trial on those views. For
    K = 1 it is the lone network's own product. With input dropout the trials' images differ:
    each trial's own im2col matrix and its own product. The parameters keep the lone layout
    (filters (K, F F C, nf)); the wide filter matrix is a per-update copy (small).
    """

    def __init__(self, structure: Structure, params: Arrays, dropout: Sequence[float],
                 dropout_input: Sequence[float]) -> None:
        super().__init__(structure, params, dropout, dropout_input)
        self.filter_size = structure.filter_size
        self.stride, self.pad = structure.stride, structure.pad

    def _im2col(self, x: Any, name: str) -> tuple[Any, tuple[int, int, int]]:
        """x (B, H, W, C) -> its columns (B H' W', F F C), rows (image, row, column), in the
        workspace (as :func:`layers.conv_forward` lays them out), and (B, H', W')."""
        xp = array_module(x)
        b, h, w, c = x.shape
        f, s, pad = self.filter_size, self.stride, self.pad
        ho, wo = (h - f + 2 * pad) // s + 1, (w - f + 2 * pad) // s + 1
        if pad:
            xpad = self._ws.get(name + ".pad", (b, h + 2 * pad, w + 2 * pad, c))
            for border in (xpad[:, :pad], xpad[:, pad + h:], xpad[:, :, :pad],
                           xpad[:, :, pad + w:]):
                border[...] = 0
            xpad[:, pad:pad + h, pad:pad + w] = x
        else:
            xpad = x
        cols = self._ws.get(name, (b * ho * wo, f * f * c))
        view = cols.reshape(b, ho, wo, f, f, c)
        if xp is np:
            windows = np.lib.stride_tricks.sliding_window_view(xpad, (f, f), axis=(1, 2))
            np.copyto(view, windows[:, ::s, ::s].transpose(0, 1, 2, 4, 5, 3))
        else:
            for i in range(f):
                for j in range(f):
                    view[:, :, :, i, j] = xpad[:, i:i + s * ho:s, j:j + s * wo:s]
        return cols, (b, ho, wo)

    def _conv(self, x: Any, xin: Any) -> tuple[Any, Any, tuple[int, int, int]]:
        """The K convolutions (bias added) as (K, N, H', W', nf) views of one (N H' W', K nf)
        array; the im2col matrix (shared, or per trial (K, N H' W', d)) and (N, H', W')."""
        xp = array_module(x)
        k = self.k
        w, b = self.params["F"], self.params["bF"]
        d, nf = w.shape[1], w.shape[2]
        if xin.ndim == 4:       # the shared batch: one product for all K filter banks
            cols, (n, ho, wo) = self._im2col(xin, "cols")
            s = self._ws.get("s", (n * ho * wo, k * nf))
            wide = self._ws.get("F.wide", (d, k, nf))
            xp.copyto(wide, w.transpose(1, 0, 2))
            xp.matmul(cols, wide.reshape(d, k * nf), out=s)
        else:                   # each trial's own images (input dropout)
            cols, (_, ho, wo) = self._im2col(xin.reshape(-1, *xin.shape[2:]), "cols")
            n = len(x)
            cols = cols.reshape(k, n * ho * wo, d)
            s = self._ws.get("s", (n * ho * wo, k * nf))
            xp.matmul(cols, w, out=s.reshape(n * ho * wo, k, nf).transpose(1, 0, 2))
        s += b.reshape(1, k * nf)      # (K, 1, nf): trial-major, as the columns of s
        return s, cols, (n, ho, wo)

    @staticmethod
    def _trial_view(s: Any, k: int, shape: tuple[int, int, int]) -> Any:
        """(N H' W', K nf) -> (K, N, H', W', nf), a strided view."""
        n, ho, wo = shape
        return s.reshape(n, ho, wo, k, -1).transpose(3, 0, 1, 2, 4)

    def _forward(self, x: Any, rngs: Sequence[np.random.Generator] | None
                 ) -> tuple[Any, tuple[Any, ...]]:
        xp = array_module(x)
        k = self.k
        xin, _ = self._input_dropout(x, rngs)
        s, cols, shape = self._conv(x, xin)
        self._act_inplace(s, "s")
        sv = self._trial_view(s, k, shape)
        n, ho, wo = shape
        pooled = self._ws.get("pool", (k, n, ho // 2, wo // 2, sv.shape[-1]))
        xp.maximum(sv[:, :, 0::2, 0::2], sv[:, :, 0::2, 1::2], out=pooled)
        xp.maximum(pooled, sv[:, :, 1::2, 0::2], out=pooled)
        xp.maximum(pooled, sv[:, :, 1::2, 1::2], out=pooled)
        w1 = self.params["W1"]
        flat = pooled.reshape(k, n, -1)
        h = self._ws.get("h", (k, n, w1.shape[2]))
        bmm(flat, w1, out=h)
        out, keep_h = self._hidden_to_scores(h, rngs)
        return out, (cols, s, shape, pooled, h, keep_h)

    def _unpool(self, dpooled: Any, sv: Any, pooled: Any, dsv: Any) -> None:
        """dsv (a view like sv) = each 2x2 window's gradient at its first maximum in (row,
        column) order, as :func:`layers.max_pool_backward`."""
        xp = array_module(sv)
        taken = self._ws.get("pool.taken", pooled.shape, np.bool_)
        taken[...] = False
        hit = self._ws.get("pool.hit", pooled.shape, np.bool_)
        for i in (0, 1):
            for j in (0, 1):
                xp.equal(sv[:, :, i::2, j::2], pooled, out=hit)
                hit &= ~taken
                taken |= hit
                xp.multiply(dpooled, hit, out=dsv[:, :, i::2, j::2])

    def train_step(self, x: Any, y: Any, *, eps: np.ndarray, rngs: Sequence[
            np.random.Generator] | None, scale: np.ndarray) -> tuple[np.ndarray, Arrays]:
        """(K data losses, scale_k times each trial's data gradients) of one update on the
        shared batch of images x (N, H, W, C), y (N,), in reused buffers. No L2 term."""
        xp = array_module(x)
        grads = self._grad_buffers()
        k, n = self.k, len(x)
        scores, (cols, s, shape, pooled, h, keep_h) = self._forward(x, rngs)
        loss = self.loss_inplace(scores, y, eps, scale)
        w1, w2 = self.params["W1"], self.params["W2"]
        bmm(h.transpose(0, 2, 1), scores, out=grads["W2"])
        bmm(self._ones(n, xp), scores, out=grads["b2"])
        dh = self._ws.get("dh", h.shape)
        bmm(scores, w2.transpose(0, 2, 1), out=dh)
        self._dropout_back_inplace(dh, keep_h, "h", self.dropout)
        self._act_back_inplace(dh, h, "h")
        bmm(self._ones(n, xp), dh, out=grads["b1"])
        flat = pooled.reshape(k, n, -1)
        bmm(flat.transpose(0, 2, 1), dh, out=grads["W1"])
        dpooled = self._ws.get("dpool", flat.shape)
        bmm(dh, w1.transpose(0, 2, 1), out=dpooled)
        ds = self._ws.get("ds", s.shape)
        self._unpool(dpooled.reshape(pooled.shape), self._trial_view(s, k, shape), pooled,
                     self._trial_view(ds, k, shape))
        self._act_back_inplace(ds, s, "s")
        d, nf = grads["F"].shape[1], grads["F"].shape[2]
        rows = ds.shape[0]
        if cols.ndim == 2:      # the shared columns: one product for all K filter banks
            wide = self._ws.get("dF.wide", (d, k, nf))
            xp.matmul(cols.T, ds, out=wide.reshape(d, k * nf))
            xp.copyto(grads["F"], wide.transpose(1, 0, 2))
        else:
            xp.matmul(cols.transpose(0, 2, 1), ds.reshape(rows, k, nf).transpose(1, 0, 2),
                      out=grads["F"])
        xp.matmul(self._ones(rows, xp), ds, out=grads["bF"].reshape(1, k * nf))
        return loss, grads


def fuse(nets: Sequence[Network], dropout: Sequence[float],
         dropout_input: Sequence[float], layout: str | None = None) -> FusedNet:
    """The fused network of K networks of one :class:`~numsweep.engine.networks.Structure`
    (their initial weights), the weights stacked along the trial axis. ``layout``:
    ``"wide"`` (the MLP's wide first layer, the feature-major ConvNet) or ``"lone"`` (every
    product per trial, the lone network's); None picks as measured: wide for K > 1 (the
    MLP: with a hidden layer), lone for K = 1. The three-layer ConvNet has one layout."""
    structure = nets[0].structure
    shapes = {name: p.shape for name, p in nets[0].params.items()}
    if any(net.structure != structure or {name: p.shape for name, p in net.params.items()}
           != shapes for net in nets):
        raise ValueError("cannot fuse networks of different structures (class, shapes, "
                         "activation or loss)")
    params = {name: _stack(nets, name) for name in nets[0].params}
    args = (structure, params, dropout, dropout_input)
    wide = len(nets) > 1 if layout is None else layout == "wide"
    if structure.model == "mlp":
        return FusedMLP(*args, wide=wide and structure.layers > 1)
    if structure.model == "convnet":
        return FusedPatchConvNet(*args, feature_major=wide)
    return FusedConvNet3(*args)
