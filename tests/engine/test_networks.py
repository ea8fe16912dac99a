"""Networks: they learn, keep float32, and are built from the spec's parameters."""

from __future__ import annotations

import numpy as np
import pytest

from numsweep.engine import layers
from numsweep.engine.build import build_network
from numsweep.engine.losses import LOSSES
from numsweep.engine.networks import MLP, ConvNet3, Network, PatchConvNet, param_count
from numsweep.engine.spec import ACTIVATIONS, MODELS, SpecError, TrialSpec
from numsweep.engine.spec import LOSSES as LOSS_NAMES


def overfit(net: Network, images: np.ndarray, y: np.ndarray, steps: int, lr: float) -> float:
    """Full-batch gradient descent; returns the final training accuracy."""
    x = net.prepare(images)
    for _ in range(steps):
        _, _, grads = net.loss(x, y, lam=0.0, eps=0.0, rng=None)
        for name, g in grads.items():
            net.params[name] -= lr * g
    return float((net.scores(x).argmax(axis=1) == y).mean())


@pytest.mark.parametrize(("model", "steps", "lr"), [
    ("mlp", 300, 0.1), ("mlp_leaky_svm", 300, 0.05), ("convnet", 300, 0.1),
    ("convnet3", 300, 0.1)])
def test_network_overfits_100_examples(model: str, steps: int, lr: float) -> None:
    """Random labels on noise: only memorising all 100 examples reaches accuracy 1."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(100, 8, 8, 3))
    y = rng.integers(0, 10, size=100)
    net: Network
    if model == "mlp":
        net = MLP(192, (100,), 10, rng=rng, init="he", dtype=np.float64)
    elif model == "mlp_leaky_svm":
        net = MLP(192, (100,), 10, rng=rng, init="he", activation="leaky_relu", loss="svm",
                  dtype=np.float64)
    elif model == "convnet":
        net = PatchConvNet((8, 8, 3), 2, 16, 100, 10, rng=rng, init="he", dtype=np.float64)
    else:
        net = ConvNet3((8, 8, 3), 16, 3, 100, 10, rng=rng, init="he", dtype=np.float64)
    assert overfit(net, images, y, steps, lr) == 1.0


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSS_NAMES)
def test_float32_stays_float32(model: str, activation: str, loss: str) -> None:
    shape = {"nf": 4, "nh": 8} if model != "mlp" else {"hidden": (8,)}
    spec = TrialSpec(model=model, activation=activation, loss=loss, dropout=0.3,
                     dropout_input=0.1, **shape)
    rng = np.random.default_rng(0)
    net = build_network(spec, (8, 8, 3), 5, rng)
    x = net.prepare(rng.normal(size=(6, 8, 8, 3)).astype(np.float32))
    loss_value, cost, grads = net.loss(x, rng.integers(0, 5, size=6), lam=0.01, eps=0.0,
                                       rng=rng)
    assert np.isfinite(loss_value) and cost > loss_value
    assert set(grads) == set(net.params)
    assert all(grads[k].dtype == np.float32 and grads[k].shape == p.shape
               for k, p in net.params.items())
    assert net.scores(x).dtype == np.float32


def test_build_network_uses_every_network_parameter() -> None:
    rng = np.random.default_rng(0)
    spec = TrialSpec(model="convnet3", nf=6, filter_size=5, nh=20, conv_stride=1, conv_pad=2,
                     activation="leaky_relu", leaky_slope=0.2, loss="svm", dropout=0.5,
                     dropout_input=0.1, init="he")
    net = build_network(spec, (16, 16, 3), 10, rng)
    assert isinstance(net, ConvNet3)
    assert net.params["F"].shape == (5 * 5 * 3, 6)
    assert net.params["W1"].shape == (8 * 8 * 6, 20)
    assert (net.activation, net.leaky_slope, net.loss_name) == ("leaky_relu", 0.2, "svm")
    assert (net.dropout, net.dropout_input) == (0.5, 0.1)
    assert param_count(net) == 75 * 6 + 6 + 384 * 20 + 20 + 20 * 10 + 10
    strided = build_network(spec.replace(conv_stride=2, conv_pad=1, filter_size=4), (16, 16, 3),
                            10, rng)
    assert strided.params["W1"].shape == (4 * 4 * 6, 20)
    mlp = build_network(TrialSpec(hidden=(30, 20), dropout_input=0.2), (4, 4, 3), 10, rng)
    assert isinstance(mlp, MLP) and mlp.layers == 3 and mlp.dropout_input == 0.2


def test_scores_never_drop_out() -> None:
    rng = np.random.default_rng(0)
    net = MLP(12, (20,), 3, rng=rng, dropout=0.5, dropout_input=0.5, dtype=np.float64)
    x, y = rng.normal(size=(4, 12)), np.array([0, 1, 2, 0])
    np.testing.assert_array_equal(net.scores(x), net.scores(x))
    plain = net.loss(x, y, lam=0.0, eps=0.0, rng=None)[0]
    assert net.data_loss(net.scores(x), y, 0.0)[0] == pytest.approx(plain)
    assert net.loss(x, y, lam=0.0, eps=0.0, rng=np.random.default_rng(1))[0] != plain


def test_data_loss_follows_the_loss_parameter() -> None:
    rng = np.random.default_rng(0)
    scores, y = rng.normal(size=(5, 3)), rng.integers(0, 3, size=5)
    for name, loss in LOSSES.items():
        net = MLP(4, (3,), 3, rng=rng, loss=name)
        assert net.data_loss(scores, y, 0.0)[0] == loss.reference(scores, y, 0.0)[0]


def test_loss_and_activation_names_agree_with_the_spec() -> None:
    assert set(LOSSES) == set(LOSS_NAMES)
    with pytest.raises(ValueError, match="unknown activation 'tanh'"):
        MLP(4, (3,), 2, rng=np.random.default_rng(0), activation="tanh")


@pytest.mark.parametrize(("values", "message"), [
    ({"activation": "tanh"}, "activation='tanh' is invalid"),
    ({"leaky_slope": "0"}, "leaky_slope=0.0 is invalid"),
    ({"dropout_input": "1"}, "dropout_input=1.0 is invalid"),
    ({"loss": "hinge"}, "loss='hinge' is invalid: expected one of softmax, svm"),
    ({"loss": "svm", "eps": "0.1"}, "eps=0.1 is invalid: expected 0 with loss=svm"),
    ({"filter_size": "0"}, "filter_size=0 is invalid"),
    ({"conv_stride": "0"}, "conv_stride=0 is invalid"),
    ({"conv_pad": "-1"}, "conv_pad=-1 is invalid"),
    ({"conv_pad": "1.5"}, "conv_pad='1.5' is invalid: wrong type"),
])
def test_spec_rejects_bad_network_parameters(values: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        TrialSpec.from_mapping(values)


def test_spec_coerces_network_parameters() -> None:
    spec = TrialSpec.from_mapping({"model": "convnet3", "filter_size": "5", "conv_stride": "1",
                                   "conv_pad": "auto", "activation": "leaky_relu",
                                   "leaky_slope": "0.05", "dropout_input": "0.2",
                                   "loss": "svm"})
    assert (spec.filter_size, spec.conv_pad, spec.leaky_slope) == (5, None, 0.05)
    assert TrialSpec.from_mapping({"model": "convnet3", "conv_pad": "2"}).conv_pad == 2
    assert TrialSpec.from_mapping(spec.to_dict()) == spec


@pytest.mark.parametrize(("kind", "variance"), [("xavier", 1.0), ("he", 2.0)])
def test_initialisers_scale_by_fan_in(kind: str, variance: float) -> None:
    from numsweep.engine.initializers import init_weights

    w = init_weights(kind, 400, 300, np.random.default_rng(0), np.float32)
    assert w.dtype == np.float32 and w.shape == (400, 300)
    assert w.mean() == pytest.approx(0.0, abs=0.01 * np.sqrt(variance / 400))
    assert w.var() == pytest.approx(variance / 400, rel=0.02)
    net = ConvNet3((8, 8, 3), 16, 5, 10, 10, rng=np.random.default_rng(1), init=kind)
    assert net.params["F"].var() == pytest.approx(variance / 75, rel=0.1)  # fan_in 5*5*3


def test_patch_convnet_prepares_the_patch_matrix_once() -> None:
    rng = np.random.default_rng(0)
    net = PatchConvNet((8, 8, 3), 4, 5, 6, 3, rng=rng, dtype=np.float64)
    images = rng.normal(size=(7, 8, 8, 3))
    p = net.prepare(images)
    assert p.shape == (7, 4, 48) and p.flags.c_contiguous
    np.testing.assert_array_equal(p[2, 1], images[2, 0:4, 4:8].ravel())
    # training and evaluation take the prepared matrix as it is, for any batch of its rows
    np.testing.assert_allclose(net.scores(p[3:5]), net.scores(p)[3:5], rtol=1e-12)


def test_multi_size_patch_convnet_matches_naive_loops() -> None:
    """f=[2, 4]: each size's convolution by the naive loop (a dot product per sub-patch),
    ReLU, flattened and concatenated into the hidden layer, against the network."""
    rng = np.random.default_rng(3)
    net = PatchConvNet((8, 8, 3), [2, 4], [3, 5], 7, 4, rng=rng, dtype=np.float64)
    for v in net.params.values():
        v += rng.normal(scale=0.1, size=v.shape)
    images = rng.normal(size=(3, 8, 8, 3))
    p = net.prepare(images)
    assert p.shape == (3, 16 * 12 + 4 * 48) and p.flags.c_contiguous
    assert [(br.w, br.b) for br in net.branches] == [("F1", "bF1"), ("F2", "bF2")]
    assert net.weight_names == ("F1", "F2", "W1", "W2")
    assert net.params["W1"].shape == (16 * 3 + 4 * 5, 7)
    parts = [np.maximum(layers.patch_conv_forward_naive(
        images, net.params[f"F{i}"].reshape(f, f, 3, -1), net.params[f"bF{i}"], f), 0)
        .reshape(3, -1) for i, f in ((1, 2), (2, 4))]
    h = np.maximum(np.concatenate(parts, axis=1) @ net.params["W1"] + net.params["b1"], 0)
    expected = h @ net.params["W2"] + net.params["b2"]
    np.testing.assert_allclose(net.scores(p), expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(net._forward(p, None)[0], expected, rtol=1e-12, atol=1e-12)


def test_a_single_patch_size_in_a_list_is_the_scalar_network() -> None:
    spec = TrialSpec.from_mapping({"model": "convnet", "f": "[4]", "nf": "[6]", "nh": 8})
    assert (spec.f, spec.nf) == (4, 6) and spec.patches == ((4, 6),)
    net = build_network(spec, (8, 8, 3), 5, np.random.default_rng(0))
    scalar = build_network(spec.replace(f=4, nf=6), (8, 8, 3), 5, np.random.default_rng(0))
    assert list(net.params) == ["F", "bF", "W1", "b1", "W2", "b2"]
    for k in net.params:
        np.testing.assert_array_equal(net.params[k], scalar.params[k])


@pytest.mark.parametrize(("values", "message"), [
    ({"model": "convnet", "f": "[4, 8]", "nf": "40"},
     r"nf=40 is invalid: expected a list of 2 filter counts, one per patch size in f=\[4, 8\]"),
    ({"model": "convnet", "f": "[4, 8]", "nf": "[40, 80, 10]"},
     r"nf=\[40, 80, 10\] is invalid: expected a list of 2 filter counts"),
    ({"model": "convnet", "f": "[4, 4]", "nf": "[40, 80]"},
     r"f=\[4, 4\] is invalid: expected distinct patch sizes"),
    ({"model": "convnet", "f": "[4, 0]", "nf": "[40, 80]"},
     r"f=\[4, 0\] is invalid: expected a positive whole number or a non-empty list"),
    ({"model": "convnet", "f": "[]", "nf": "[]"}, r"f=\[\] is invalid"),
    ({"model": "convnet", "f": "[4, 2.5]", "nf": "[1, 2]"}, "f='.4, 2.5.' is invalid: wrong"),
    ({"model": "convnet3", "f": "[4, 8]", "nf": "[4, 8]"},
     r"nf=\[4, 8\] is invalid: expected a single filter count with model=convnet3"),
])
def test_spec_rejects_bad_patch_size_lists(values: dict[str, str], message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        TrialSpec.from_mapping(values)
    assert "\n" not in str(info.value)


def test_spec_takes_patch_size_lists() -> None:
    for f, nf in (("[4, 8]", "[40, 80]"), ("4,8", "40,80"), ([4, 8], [40, 80])):
        spec = TrialSpec.from_mapping({"model": "convnet", "f": f, "nf": nf})
        assert (spec.f, spec.nf, spec.patches) == ((4, 8), (40, 80), ((4, 40), (8, 80)))
        assert spec.to_dict()["f"] == [4, 8] and TrialSpec.from_mapping(spec.to_dict()) == spec
    assert TrialSpec().patches == ((4, 10),) and TrialSpec().to_dict()["f"] == 4
    with pytest.raises(ValueError, match="f=5 does not divide the image size 32x32"):
        build_network(TrialSpec.from_mapping({"model": "convnet", "f": "[4, 5]",
                                              "nf": "[2, 2]"}), (32, 32, 3), 10,
                      np.random.default_rng(0))


@pytest.mark.parametrize(("values", "message"), [
    ({"model": "mlp", "f": "5"}, "f=5 is invalid: expected 4 (unset) with model=mlp"),
    ({"model": "mlp", "nf": "7"}, "nf=7 is invalid: expected 10 (unset) with model=mlp"),
    ({"model": "mlp", "filter_size": "9"}, "filter_size=9 is invalid: expected 3 (unset)"),
    ({"model": "convnet", "hidden": "[100, 100]"}, "hidden=[100, 100] is invalid"),
    ({"model": "convnet", "conv_stride": "2"}, "conv_stride=2 is invalid"),
    ({"model": "convnet3", "f": "8"}, "f=8 is invalid: expected 4 (unset) with model=convnet3"),
    ({"momentum": "0.5"}, "momentum=0.5 is invalid: expected 0.9 (unset) with optimizer=sgd"),
    ({"optimizer": "adam", "rho": "0.5"}, "rho=0.5 is invalid: expected 0.9 (unset) with "
                                          "optimizer=adam (it applies to optimizer=rmsprop"),
    ({"optimizer": "rmsprop", "beta1": "0.5"}, "beta1=0.5 is invalid"),
    ({"optimizer": "momentum", "opt_eps": "1e-6"}, "opt_eps=1e-06 is invalid"),
    ({"leaky_slope": "0.2"}, "leaky_slope=0.2 is invalid: expected 0.01 (unset) with "
                             "activation=relu"),
    ({"step_size": "5"}, "step_size=5 is invalid: expected unset with schedule=cyclic"),
])
def test_a_parameter_of_another_model_or_rule_is_refused(values: dict[str, str],
                                                         message: str) -> None:
    with pytest.raises(SpecError) as info:
        TrialSpec.from_mapping(values)
    assert str(info.value).startswith(message)


def test_a_models_own_and_untouched_parameters_are_accepted() -> None:
    assert TrialSpec.from_mapping({"model": "convnet3", "nf": "7", "nh": "20",
                                   "hidden": "[50]"}).nf == 7  # [50]: the default
    assert TrialSpec.from_mapping({"model": "convnet", "f": "[2, 4]", "nf": "[3, 5]"}).f == (2, 4)
    assert TrialSpec.from_mapping({"optimizer": "rmsprop_nesterov", "momentum": "0.5",
                                   "rho": "0.8", "opt_eps": "1e-6"}).rho == 0.8
    assert TrialSpec.from_mapping({"activation": "leaky_relu", "leaky_slope": "0.2"})
