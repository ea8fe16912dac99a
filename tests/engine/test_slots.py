"""Trial slots: a slot group refills a freed slot at once, and every trial in it, whenever
it joined, gives what it gives alone (``train(result.spec)``, its ``data_offset`` the group
step it joined at): float64 to relative 1e-10, float32 to rounding."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.engine import Split, TrialResult, TrialSpec, load_dataset, make_split, train
from numsweep.engine.augment import Augmenter
from numsweep.engine.slots import SlotStats, SlotTrial, train_slots
from tests.conftest import for_model
from tests.engine.test_group import BASE, assert_same, variants


@pytest.fixture(scope="module")
def splits(tiny_npz: Path) -> dict[str, Split]:
    data = load_dataset(tiny_npz)
    return {dt: make_split(data, BASE["n_train"], BASE["n_val"], np.dtype(dt))
            for dt in ("float64", "float32")}


class QueueFeed:
    """Hands out its trials in order, ``per_call`` at most per refill (all it may when
    None); records every call, every result and every report; stops the keys in ``prune``
    at their first period end."""

    def __init__(self, trials: Sequence[SlotTrial], per_call: int | None = None,
                 prune: Collection[int] = ()) -> None:
        self.queue = list(trials)
        self.per_call = per_call
        self.prune = set(prune)
        self.calls: list[tuple[list[int], int, list[int]]] = []  # (ended keys, free, given)
        self.results: dict[int, TrialResult] = {}
        self.reports: list[list[tuple[int, int, float]]] = []

    def refill(self, ended: Sequence[tuple[int, TrialResult]],
               free: int) -> Sequence[SlotTrial]:
        for key, result in ended:
            assert key not in self.results  # each ended trial exactly once
            self.results[key] = result
        n = free if self.per_call is None else min(free, self.per_call)
        given, self.queue = self.queue[:n], self.queue[n:]
        self.calls.append(([k for k, _ in ended], free, [t.key for t in given]))
        return given

    def report(self, reports: Sequence[tuple[int, int, float]]) -> Collection[int]:
        self.reports.append(list(reports))
        return {key for key, _, _ in reports if key in self.prune}


def spec_of(dtype: str = "float64", **changes: Any) -> TrialSpec:
    return TrialSpec.from_mapping(for_model({**BASE, "seed": 3, "data_seed": 7,
                                             "dtype": dtype, **changes}))


def slot_trials(specs: Sequence[TrialSpec], first_key: int = 0) -> list[SlotTrial]:
    return [SlotTrial(first_key + i, s) for i, s in enumerate(specs)]


def test_a_trial_joining_mid_stream_reruns_alone_to_its_numbers(
        splits: dict[str, Split]) -> None:
    base = spec_of(schedule="constant", n_updates=6, eta_max=0.05, curve_points=2)
    specs = [base.replace(seed=10 + i, eta_max=0.02 * (i + 1), n_updates=6)
             for i in range(4)]
    feed = QueueFeed(slot_trials(specs))
    stats = train_slots(2, feed, splits["float64"])
    assert sorted(feed.results) == [0, 1, 2, 3]
    offsets = [feed.results[k].spec.data_offset for k in range(4)]
    assert offsets == [0, 0, 6, 6]  # the second pair joined when the first completed
    for key, result in feed.results.items():
        assert not result.diverged and result.updates == 6
        assert_same(result, train(result.spec, splits["float64"]), rtol=1e-10)
    assert stats == SlotStats(size=2, steps=12, slot_updates=24, trials=4, full_steps=12,
                              full_slot_updates=24)


def test_augmenter_skip_draws_what_augmenting_draws() -> None:
    x = np.zeros((5, 6, 7, 3))
    for aug in (Augmenter(flip=0.5), Augmenter(translate=2), Augmenter(cutout=3),
                Augmenter(flip=0.3, translate=1, cutout=2, copies=3)):
        a, b = np.random.default_rng(1), np.random.default_rng(1)
        aug(x, np.zeros(5), a)
        aug.skip(5, x.shape[1:], b)
        assert a.bit_generator.state == b.bit_generator.state
        assert a.random() == b.random()
