"""Group sizing: the estimated bytes per trial against what a group takes on the CPU
(tracemalloc's peak of a group of 10 less one of 2, per added trial), and the sizes it
proposes for a device's free memory."""

from __future__ import annotations

import tracemalloc
from typing import Any

import numpy as np
import pytest

from numsweep.engine import Dataset, Split, TrialSpec, make_split, max_group_size, train_group
from numsweep.engine.sizing import MAX_GROUP, trial_bytes


@pytest.fixture(scope="module")
def split() -> Split:
    rng = np.random.default_rng(0)
    data = Dataset("generated", tuple(str(i) for i in range(10)),
                   rng.integers(0, 256, (600, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, 600),
                   rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8),
                   rng.integers(0, 10, 100))
    return make_split(data, 400, 200, np.dtype("float32"))


def _peak(specs: list[TrialSpec], split: Split) -> int:
    train_group(specs, split)  # buffers and caches of the first run out of the measurement
    tracemalloc.start()
    try:
        train_group(specs, split)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("case", [
    {"model": "convnet"},
    {"model": "convnet", "nf": 20, "nh": 100, "optimizer": "adam"},
    {"model": "mlp", "optimizer": "momentum", "dropout": 0.2},
    {"model": "convnet", "f": (4, 8), "nf": (10, 20), "dropout_input": 0.1,
     "optimizer": "nesterov"},
    {"model": "convnet3", "nf": 16, "filter_size": 3, "nh": 50},
    {"model": "convnet3", "nf": 8, "filter_size": 5, "conv_pad": 0, "nh": 50, "dropout": 0.2,
     "optimizer": "adam"},
])
def test_the_estimate_bounds_what_a_trial_takes(split: Split, case: dict[str, Any]) -> None:
    base = TrialSpec(schedule="constant", n_updates=2, n_train=400, n_val=200,
                     batch_size=100, curve_points=1, eval_train=200, data_seed=0, **case)
    peaks = {k: _peak([base.replace(seed=i, lam=1e-3) for i in range(k)], split)
             for k in (2, 10)}
    measured = (peaks[10] - peaks[2]) / 8
    estimate = trial_bytes(base, (32, 32, 3), 10, 10)
    assert measured <= estimate <= 2 * measured


def test_max_group_size_fits_the_free_memory() -> None:
    spec = TrialSpec(model="convnet", f=4, nf=10, nh=50, device="cuda")
    assert max_group_size(spec, (32, 32, 3), 10, 16 << 30) == MAX_GROUP
    small = max_group_size(spec, (32, 32, 3), 10, 64 << 20)
    assert 1 < small < MAX_GROUP
    assert small * trial_bytes(spec, (32, 32, 3), 10, small) <= 0.8 * (64 << 20)
    wide = spec.replace(nf=40, nh=300, optimizer="adam")
    assert max_group_size(wide, (32, 32, 3), 10, 64 << 20) < small
    assert max_group_size(spec, (32, 32, 3), 10, 1 << 10) == 1  # never below one


@pytest.mark.parametrize("shape", [
    {"model": "mlp", "hidden": (30, 20)},
    {"model": "convnet", "f": 4, "nf": 6, "nh": 20},
    {"model": "convnet", "f": (2, 8), "nf": (3, 5), "nh": 20},
    {"model": "convnet", "f": (4,), "nf": (3,), "nh": 20},
    {"model": "convnet3", "nf": 4, "filter_size": 3, "nh": 20},
    {"model": "convnet3", "nf": 4, "filter_size": 5, "nh": 20, "conv_stride": 1, "conv_pad": 0},
])
def test_the_estimates_read_the_shapes_of_the_network_the_engine_builds(shape: dict[str, Any]
                                                                        ) -> None:
    """Sizing takes a network's layer shapes and parameter count from the engine's
    ``network_shape``, which must be what ``build_network`` builds."""
    from numsweep.engine.build import build_network, network_shape
    from numsweep.engine.networks import param_count
    from numsweep.engine.sizing import param_count as estimated

    spec = TrialSpec(**shape)
    net = build_network(spec, (32, 32, 3), 10, np.random.default_rng(0))
    layers = network_shape(spec, (32, 32, 3), 10)
    assert layers.params == {name: p.shape for name, p in net.params.items()}
    assert estimated(spec, (32, 32, 3), 10) == param_count(net) == layers.param_count
