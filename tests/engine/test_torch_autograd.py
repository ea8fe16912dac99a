"""The engine's analytic gradients against PyTorch autograd (float64, CPU).

Layers are compared with torch's own operators (conv2d, max_pool2d, leaky_relu,
cross_entropy, multi_margin_loss); networks with the same computation written in torch, on
the cases :mod:`numsweep.engine.gradcheck` uses, including the same dropout masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from numsweep.engine import gradcheck, layers
from numsweep.engine.losses import softmax_cross_entropy, svm_loss
from numsweep.engine.networks import MLP, ConvNet3, Network, PatchConvNet

torch = pytest.importorskip("torch")
F = torch.nn.functional


def t(a: np.ndarray) -> Any:
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def agree(ours: np.ndarray, theirs: Any) -> None:
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-9, atol=1e-12)


def filters_to_torch(w, f: int, c: int):
    """(f*f*C, nf) rows in (row, column, channel) order -> torch's (nf, C, f, f)."""
    return w.reshape(f, f, c, -1).permute(3, 2, 0, 1)


def torch_conv(x, w, b, f: int, stride: int, pad: int):
    """NHWC in and out, like the engine."""
    out = F.conv2d(x.permute(0, 3, 1, 2), filters_to_torch(w, f, x.shape[3]), b,
                   stride=stride, padding=pad)
    return out.permute(0, 2, 3, 1)


def torch_pool(x):
    return F.max_pool2d(x.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)


@pytest.mark.parametrize(("h", "f", "stride", "pad"),
                         [(5, 3, 1, 1), (7, 3, 2, 0), (8, 4, 2, 1), (6, 1, 1, 0)])
def test_conv_layer(h: int, f: int, stride: int, pad: int) -> None:
    rng = np.random.default_rng(h + f)
    x, w, b = rng.normal(size=(2, h, h, 3)), rng.normal(size=(f * f * 3, 4)), rng.normal(size=4)
    out, cache = layers.conv_forward(x, w, b, f, stride, pad)
    dout = rng.normal(size=out.shape)
    dx, dw, db = layers.conv_backward(dout, cache)
    tx, tw, tb = t(x), t(w), t(b)
    tout = torch_conv(tx, tw, tb, f, stride, pad)
    agree(out, tout)
    (tout * torch.tensor(dout)).sum().backward()
    agree(dx, tx.grad)
    agree(dw, tw.grad)
    agree(db, tb.grad)


def test_patch_conv_layer() -> None:
    rng = np.random.default_rng(1)
    images, w, b = rng.normal(size=(2, 8, 8, 3)), rng.normal(size=(48, 5)), rng.normal(size=5)
    out, cache = layers.patch_conv_forward(layers.patchify(images, 4), w, b)
    dout = rng.normal(size=out.shape)
    _, dw, db = layers.patch_conv_backward(dout, cache, input_grad=False)
    tw, tb = t(w), t(b)
    tout = torch_conv(torch.tensor(images), tw, tb, 4, 4, 0).reshape(2, 4, 5)
    agree(out, tout)
    (tout * torch.tensor(dout)).sum().backward()
    agree(dw, tw.grad)
    agree(db, tb.grad)


def test_multi_size_patch_convnet_against_torch_conv2d() -> None:
    """Patches of sizes 2 and 4 side by side: the engine's scores and gradients against
    torch's conv2d with stride f per size, concatenated (NHWC flattening, as the engine)."""
    rng = np.random.default_rng(6)
    net = PatchConvNet((8, 8, 3), [2, 4], [3, 5], 6, 4, rng=rng, dtype=np.float64)
    images, y = rng.normal(size=(3, 8, 8, 3)), rng.integers(0, 4, size=3)
    _, cost, grads = net.loss(net.prepare(images), y, lam=0.01, eps=0.1, rng=None)
    tp = {k: t(v) for k, v in net.params.items()}
    x = torch.tensor(images)
    s = torch.cat([F.relu(torch_conv(x, tp[f"F{i}"], tp[f"bF{i}"], f, f, 0)).reshape(3, -1)
                   for i, f in ((1, 2), (2, 4))], dim=1)
    scores = F.relu(s @ tp["W1"] + tp["b1"]) @ tp["W2"] + tp["b2"]
    tcost = F.cross_entropy(scores, torch.tensor(y), label_smoothing=0.1 * 4 / 3) + 0.01 * sum(
        (tp[n] ** 2).sum() for n in ("F1", "F2", "W1", "W2"))
    tcost.backward()
    assert cost == pytest.approx(tcost.item(), rel=1e-12)
    agree(net.scores(net.prepare(images)), scores)
    for k in net.params:
        agree(grads[k], tp[k].grad)


def test_max_pool_layer() -> None:
    rng = np.random.default_rng(2)
    x = gradcheck.distinct(rng, (2, 4, 6, 3))
    out, cache = layers.max_pool_forward(x)
    dout = rng.normal(size=out.shape)
    tx = t(x)
    tout = torch_pool(tx)
    agree(out, tout)
    (tout * torch.tensor(dout)).sum().backward()
    agree(layers.max_pool_backward(dout, cache), tx.grad)


@pytest.mark.parametrize("kind", ["relu", "leaky_relu", "affine"])
def test_activation_and_affine_layers(kind: str) -> None:
    rng = np.random.default_rng(3)
    x, w, b = gradcheck.away_from_zero(rng, (4, 5)), rng.normal(size=(5, 3)), rng.normal(size=3)
    tx, tw, tb = t(x), t(w), t(b)
    if kind == "relu":
        out, cache = layers.relu_forward(x)
        tout = F.relu(tx)
    elif kind == "leaky_relu":
        out, cache = layers.leaky_relu_forward(x, 0.1)
        tout = F.leaky_relu(tx, 0.1)
    else:
        out, cache = layers.affine_forward(x, w, b)
        tout = tx @ tw + tb
    dout = rng.normal(size=out.shape)
    agree(out, tout)
    (tout * torch.tensor(dout)).sum().backward()
    if kind == "affine":
        dx, dw, db = layers.affine_backward(dout, cache)
        agree(dw, tw.grad)
        agree(db, tb.grad)
    else:
        dx = (layers.relu_backward if kind == "relu" else layers.leaky_relu_backward)(dout, cache)
    agree(dx, tx.grad)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_softmax_cross_entropy_with_label_smoothing(eps: float) -> None:
    """torch spreads eps' / K over every class; ours puts eps / (K - 1) on each wrong one:
    they agree for eps' = eps K / (K - 1)."""
    rng = np.random.default_rng(4)
    scores, y = rng.normal(size=(6, 5)), rng.integers(0, 5, size=6)
    loss, dscores = softmax_cross_entropy(scores, y, eps)
    ts = t(scores)
    tloss = F.cross_entropy(ts, torch.tensor(y), label_smoothing=eps * 5 / 4)
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    agree(dscores, ts.grad)


def test_svm_loss() -> None:
    """torch's multi_margin_loss divides each row's hinge sum by the number of classes."""
    scores, y = gradcheck.svm_scores(np.random.default_rng(5), 6, 5)
    loss, dscores = svm_loss(scores, y)
    ts = t(scores)
    tloss = F.multi_margin_loss(ts, torch.tensor(y)) * 5
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    agree(dscores, ts.grad)


def torch_cost(net: Network, x: np.ndarray, y: np.ndarray, lam: float, eps: float,
               rng: np.random.Generator | None, tp: dict[str, Any]) -> Any:
    """The network's cost written in torch, with the masks the engine's rng draws."""

    def mask(shape: tuple[int, ...], rate: float):
        if rng is None or rate == 0:
            return 1.0
        return torch.tensor(layers.dropout_forward(np.ones(shape), rate, rng)[1])

    def act(s):
        return F.relu(s) if net.activation == "relu" else F.leaky_relu(s, net.leaky_slope)

    h = torch.tensor(x) * mask(x.shape, net.dropout_input)
    if isinstance(net, MLP):
        for i in range(1, net.layers):
            h = act(h @ tp[f"W{i}"] + tp[f"b{i}"])
            h = h * mask(tuple(h.shape), net.dropout)
        scores = h @ tp[f"W{net.layers}"] + tp[f"b{net.layers}"]
    else:
        if isinstance(net, PatchConvNet):
            # each patch size's block of the prepared input is its patch matrix
            s = torch.cat([act(h[:, br.col:br.col + br.n_p * br.d].reshape(len(x), br.n_p, br.d)
                               @ tp[br.w] + tp[br.b]).reshape(len(x), -1)
                           for br in net.branches], dim=1) if net.multi else \
                act(h @ tp["F"] + tp["bF"])
        else:
            assert isinstance(net, ConvNet3)
            s = torch_pool(act(torch_conv(h, tp["F"], tp["bF"], net.filter_size, net.stride,
                                          net.pad)))
        h = act(s.reshape(len(x), -1) @ tp["W1"] + tp["b1"])
        h = h * mask(tuple(h.shape), net.dropout)
        scores = h @ tp["W2"] + tp["b2"]
    k = scores.shape[1]
    ty = torch.tensor(y)
    loss = (F.cross_entropy(scores, ty, label_smoothing=eps * k / (k - 1))
            if net.loss_name == "softmax" else F.multi_margin_loss(scores, ty) * k)
    return loss + lam * sum((tp[n] ** 2).sum() for n in net.weight_names)


CASES: dict[str, gradcheck.NetworkCase] = gradcheck.network_cases()


@pytest.mark.parametrize("name", list(CASES))
def test_network(name: str) -> None:
    case = CASES[name]
    net, x, y = gradcheck.smooth_case(case)
    _, cost, grads = net.loss(x, y, lam=case.lam, eps=case.eps, rng=case.rng())
    tp = {k: t(v) for k, v in net.params.items()}
    tcost = torch_cost(net, x, y, case.lam, case.eps, case.rng(), tp)
    tcost.backward()
    assert cost == pytest.approx(tcost.item(), rel=1e-12)
    for k in net.params:
        agree(grads[k], tp[k].grad)
