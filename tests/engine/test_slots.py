"""Trial slots: a slot group refills a freed slot at once, and every trial in it, whenever
it joined, gives what it gives alone (``train(result.spec)``, its ``data_offset`` the group
step it joined at): float64 to relative 1e-10, float32 to rounding."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.engine import (
    Split,
    TrialResult,
    TrialSpec,
    load_dataset,
    make_split,
    train,
    train_group,
)
from numsweep.engine.augment import Augmenter
from numsweep.engine.slots import SlotStats, SlotTrial, train_slots
from tests.conftest import for_model
from tests.engine.test_group import BASE, CASES, assert_same, variants


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
    for result in feed.results.values():
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


SLOT_CASES = {
    **{name: case for name, case in CASES.items() if "batch_schedule" not in case},
    "convnet_multi_adagrad": {"model": "convnet", "f": (4, 8), "nf": (3, 2),
                              "optimizer": "adagrad", "eta_max": 0.02},
    "convnet3_adam_dropout": {"model": "convnet3", "nf": 3, "nh": 8, "optimizer": "adam",
                              "eta_max": 0.003, "dropout": 0.2, "dropout_input": 0.1},
}
"""Every model (the MLP of depth 2 and 1, the ConvNet with one and two patch sizes, the
three-layer ConvNet), every update rule and every schedule kind; dropout (``variants``
spreads it over the trials) and augmentation in some."""


def first_period_end(spec: TrialSpec) -> int:
    from numsweep.engine.runplan import plan_run

    return plan_run([spec], BASE["n_train"]).period_ends[0]


def prune_and_refill(spec: TrialSpec, split: Split) -> dict[int, TrialResult]:
    """Two slots, four trials: trial 1 is pruned at its first period end P and trial 2 takes
    its slot there (joins at P > 0); trial 0 completes at T and trial 3 joins at T."""
    feed = QueueFeed(slot_trials(variants(spec, 4)), prune={1})
    train_slots(2, feed, split)
    results = feed.results
    period, total = first_period_end(spec), results[0].updates
    assert sorted(results) == [0, 1, 2, 3]
    assert results[1].stopped and results[1].updates == period
    assert [results[k].spec.data_offset for k in range(4)] == [0, 0, period, total]
    assert results[1].message == f"stopped by the pruner at update {period}"
    return results


@pytest.mark.parametrize("name", list(SLOT_CASES))
def test_every_trial_of_a_slot_group_reruns_alone_to_its_numbers(
        splits: dict[str, Split], name: str) -> None:
    spec = spec_of(**SLOT_CASES[name])
    results = prune_and_refill(spec, splits["float64"])
    for key in (0, 2, 3):
        assert not results[key].diverged and not results[key].stopped
        assert_same(results[key], train(results[key].spec, splits["float64"]), rtol=1e-10)
    # the pruned trial alone, stopped by a reporter at the same period end
    alone = train(results[1].spec, splits["float64"], reporter=lambda step, acc: True)
    assert_same(results[1], alone, rtol=1e-10)
    late = results[3].curves
    assert late[-2].loss < late[0].loss  # it trained: not a comparison of idle networks


@pytest.mark.parametrize("case", [
    {"model": "convnet", "optimizer": "adam", "eta_max": 0.003},
    {"model": "mlp", "hidden": (10, 6)},
    {"model": "convnet3", "nf": 3, "nh": 8, "optimizer": "momentum", "eta_max": 0.02}])
def test_float32_slots_agree_with_lone_runs_to_rounding(splits: dict[str, Split],
                                                        case: dict[str, Any]) -> None:
    """Measured: relative 3e-8 at most (the rounding of a different summation order)."""
    spec = spec_of("float32", **case)
    results = prune_and_refill(spec, splits["float32"])
    for key in (0, 2, 3):
        assert_same(results[key], train(results[key].spec, splits["float32"]), rtol=1e-5)


def test_a_lone_run_with_data_offset_skips_that_many_batches(
        splits: dict[str, Split]) -> None:
    """data_offset changes the batches (so a test of it can fail), and a trial that joins a
    group at step s0 alone in its slots trains as train(spec with data_offset=s0)."""
    spec = spec_of(model="convnet", schedule="constant", n_updates=8, eta_max=0.02,
                   flip=0.5, translate=1, cutout=3, aug_copies=2)
    plain, skipped = train(spec, splits["float64"]), train(spec.replace(data_offset=6),
                                                           splits["float64"])
    assert skipped.spec.data_offset == 6 and skipped.epochs == plain.epochs
    assert [c.loss for c in skipped.curves[1:]] != [c.loss for c in plain.curves[1:]]
    feed = QueueFeed(slot_trials([spec.replace(seed=4), spec]), prune={0})
    train_slots(1, feed, splits["float64"])
    assert feed.results[0].updates == 6  # pruned at its first epoch's end
    assert feed.results[1].spec.data_offset == 6
    assert_same(feed.results[1], skipped, rtol=1e-10)


def test_data_offset_is_a_checked_per_trial_parameter() -> None:
    from numsweep.engine.group import group_key
    from numsweep.engine.spec import SpecError

    spec = spec_of(data_offset=12)
    assert TrialSpec.from_mapping(spec.to_dict()) == spec
    assert TrialSpec.from_mapping({"data_offset": "12"}).data_offset == 12
    assert group_key(spec) == group_key(spec.replace(data_offset=0))
    with pytest.raises(SpecError, match="data_offset=-1 is invalid"):
        spec_of(data_offset=-1)
    with pytest.raises(SpecError, match="batch_schedule=constant"):
        spec_of(data_offset=2, batch_schedule="cyclic")


def test_train_group_refuses_specs_of_different_offsets(splits: dict[str, Split]) -> None:
    spec = spec_of(schedule="constant", n_updates=4)
    with pytest.raises(ValueError, match="must share data_offset"):
        train_group([spec, spec.replace(seed=5, data_offset=2)], splits["float64"])


def test_a_mid_stream_join_needs_a_constant_batch_size(splits: dict[str, Split]) -> None:
    spec = spec_of(batch_schedule="cyclic", b_min=10, b_max=30)
    feed = QueueFeed(slot_trials([spec, spec.replace(seed=4)]))
    with pytest.raises(ValueError, match="only with batch_schedule=constant"):
        train_slots(1, feed, splits["float64"])
    assert feed.results[0].updates == 16  # the first trained; the second could not join
    both = QueueFeed(slot_trials([spec, spec.replace(seed=4)]))
    train_slots(2, both, splits["float64"])  # both at step 0: a batch group
    assert_same(both.results[1], train(both.results[1].spec, splits["float64"]), rtol=1e-10)


def test_a_diverged_trial_is_replaced_at_the_step_it_diverged(
        splits: dict[str, Split]) -> None:
    spec = spec_of(schedule="constant", n_updates=10, eta_max=0.05)
    wild = spec.replace(seed=5, eta_max=1e150)
    feed = QueueFeed(slot_trials([spec, wild, spec.replace(seed=6)]))
    stats = train_slots(2, feed, splits["float64"])
    diverged, late = feed.results[1], feed.results[2]
    assert diverged.diverged and 0 < diverged.updates < 10
    assert late.spec.data_offset == diverged.updates + 1  # the diverging update's batch
    assert ([1], 1, [2]) in feed.calls  # told at once, and refilled in the same call
    alone = train(diverged.spec, splits["float64"])
    assert (alone.diverged, alone.updates, alone.message, alone.epochs) == (
        True, diverged.updates, diverged.message, diverged.epochs)
    assert_same(late, train(late.spec, splits["float64"]), rtol=1e-10)
    assert stats.slot_updates == 10 + (diverged.updates + 1) + 10


def test_slot_stats_count_the_slots_used(splits: dict[str, Split]) -> None:
    """Two slots, three trials of 6 updates: two train steps 0-5, the third alone 6-11 (the
    feed had one trial for two free slots at step 6)."""
    spec = spec_of(schedule="constant", n_updates=6)
    feed = QueueFeed(slot_trials([spec.replace(seed=s) for s in (1, 2, 3)]))
    stats = train_slots(2, feed, splits["float64"])
    assert stats == SlotStats(size=2, steps=12, slot_updates=18, trials=3, full_steps=6,
                              full_slot_updates=12)
    assert stats.occupancy == 0.75
    assert feed.calls == [([], 2, [0, 1]), ([0, 1], 2, [2]), ([2], 2, [])]
    assert SlotStats(3, 0, 0, 0, 0, 0).occupancy == 1.0


@pytest.mark.parametrize("model", ["mlp", "convnet", "convnet3"])
def test_a_feed_that_gives_fewer_leaves_slots_empty_and_is_asked_again(
        splits: dict[str, Split], model: str) -> None:
    spec = spec_of(model=model, schedule="constant", n_updates=6)
    specs = [spec.replace(seed=s) for s in range(4)]
    feed = QueueFeed(slot_trials(specs), per_call=1)
    stats = train_slots(3, feed, splits["float64"])
    assert feed.calls == [([], 3, [0]), ([0], 3, [1]), ([1], 3, [2]), ([2], 3, [3]),
                          ([3], 3, [])]
    assert [feed.results[k].spec.data_offset for k in range(4)] == [0, 6, 12, 18]
    assert stats == SlotStats(size=3, steps=24, slot_updates=24, trials=4, full_steps=0,
                              full_slot_updates=0)
    assert stats.occupancy == pytest.approx(1 / 3)
    last = feed.results[3]  # joined an empty group at step 18
    assert_same(last, train(last.spec, splits["float64"]), rtol=1e-10)


def test_first_trials_fill_slots_and_the_feed_is_asked_for_the_rest(
        splits: dict[str, Split]) -> None:
    spec = spec_of(schedule="constant", n_updates=4)
    feed = QueueFeed([SlotTrial(9, spec.replace(seed=9))])
    train_slots(3, feed, splits["float64"], first=[SlotTrial(5, spec.replace(seed=5))])
    assert feed.calls[0] == ([], 2, [9])
    assert sorted(feed.results) == [5, 9]
    with pytest.raises(ValueError, match="free"):
        train_slots(1, QueueFeed([]), splits["float64"],
                    first=slot_trials([spec, spec.replace(seed=2)]))


def test_reports_come_at_each_trials_own_period_ends(splits: dict[str, Split]) -> None:
    spec = spec_of(schedule="constant", n_updates=13)  # epochs of 6 updates: ends 6, 12
    feed = QueueFeed(slot_trials([spec.replace(seed=s) for s in range(3)]), per_call=1)
    train_slots(2, feed, splits["float64"])
    # trial 0 at 0, trial 1 joins when trial 0 ends (13), trial 2 when trial 1 does (26)
    assert [[(k, own) for k, own, _ in r] for r in feed.reports] == [
        [(0, 6)], [(0, 12)], [(1, 6)], [(1, 12)], [(2, 6)], [(2, 12)]]
    val = {c.step: c.acc for c in feed.results[1].curves if c.split == "val"}
    assert [acc for k, _, acc in feed.reports[2] if k == 1] == [val[6]]


class Crash(Exception):
    """Stands for the process being killed."""


class CrashingFeed(QueueFeed):
    """A :class:`QueueFeed` that raises at its ``crash_at``-th refill call (0: the start)."""

    def __init__(self, trials: Sequence[SlotTrial], crash_at: int, **kwargs: Any) -> None:
        super().__init__(trials, **kwargs)
        self.crash_at = crash_at

    def refill(self, ended: Sequence[tuple[int, TrialResult]],
               free: int) -> Sequence[SlotTrial]:
        if len(self.calls) == self.crash_at:
            raise Crash
        return super().refill(ended, free)


def bits(result: TrialResult) -> str:
    """Everything a result holds but its seconds, exactly (NaN equal to NaN)."""
    import json

    from numsweep.engine.checkpoint import result_to_json

    values = result_to_json(result)
    del values["train_seconds"], values["eval_seconds"]
    return json.dumps(values)


def checkpoint_trials() -> list[SlotTrial]:
    spec = spec_of(model="convnet", optimizer="adam", eta_max=0.003, dropout=0.2,
                   flip=0.5, translate=1)
    specs = variants(spec, 6)
    specs[4] = specs[4].replace(eta_max=1e150, eta_min=1e149)  # diverges
    return slot_trials(specs)


PRUNE = {1, 3}


def test_a_killed_slot_group_resumes_from_its_checkpoint_bitwise(
        splits: dict[str, Split], tmp_path: Path) -> None:
    from numsweep.engine.checkpoint import load_slot_state

    split, path = splits["float64"], tmp_path / "slots.npz"
    whole = QueueFeed(checkpoint_trials(), prune=PRUNE)
    whole_stats = train_slots(3, whole, split)
    assert any(r.diverged for r in whole.results.values())
    killed = CrashingFeed(checkpoint_trials(), crash_at=2, prune=PRUNE)
    with pytest.raises(Crash):
        train_slots(3, killed, split, checkpoint=path)
    saved = load_slot_state(path, None)
    assert saved is not None and saved.group.step > 0
    members = [int(m["key"]) for m in saved.members]
    # killed at step 16's refill: the state of step 12, trial 3 (joined at 8) mid-run
    assert (saved.group.step, sorted(members)) == (12, [0, 2, 3])
    # the feed as it stood at that step: the trials it had not handed out yet
    offsets = {k: r.spec.data_offset for k, r in whole.results.items()}
    by_key = {t.key: t for t in checkpoint_trials()}
    rest = QueueFeed([by_key[k] for k in sorted(by_key) if offsets[k] > saved.group.step],
                     prune=PRUNE)
    resumed_stats = train_slots(3, rest, split, checkpoint=path,
                                first=[by_key[k] for k in members])
    merged = {**killed.results, **rest.results}
    assert sorted(merged) == sorted(whole.results)
    assert set(rest.results) >= set(members)
    for key, result in whole.results.items():
        assert bits(merged[key]) == bits(result), key
    assert resumed_stats == whole_stats


def test_a_checkpoint_of_other_members_is_not_resumed(splits: dict[str, Split],
                                                      tmp_path: Path) -> None:
    from numsweep.engine.checkpoint import CheckpointWarning

    split, path = splits["float64"], tmp_path / "slots.npz"
    with pytest.raises(Crash):
        train_slots(3, CrashingFeed(checkpoint_trials(), crash_at=2, prune=PRUNE), split,
                    checkpoint=path)
    trials = checkpoint_trials()
    fresh = QueueFeed(trials[3:], prune=PRUNE)
    fresh_stats = train_slots(3, fresh, split, first=trials[:3])
    again = QueueFeed(trials[3:], prune=PRUNE)
    with pytest.warns(CheckpointWarning, match="another group of trials"):
        again_stats = train_slots(3, again, split, checkpoint=path, first=trials[:3])
    assert again_stats == fresh_stats
    assert {k: bits(r) for k, r in again.results.items()} == {
        k: bits(r) for k, r in fresh.results.items()}


def test_a_group_checkpoint_is_never_a_slot_groups(splits: dict[str, Split],
                                                   tmp_path: Path) -> None:
    from numsweep.engine.checkpoint import CheckpointWarning, load_slot_state

    spec = spec_of(schedule="constant", n_updates=6)
    train(spec, splits["float64"], checkpoint=tmp_path / "one.npz")
    with pytest.warns(CheckpointWarning):
        assert load_slot_state(tmp_path / "one.npz", None) is None


@pytest.fixture
def fake_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in for CuPy (``fake_cupy``: arrays that refuse what device arrays refuse)."""
    import sys

    from tests.engine import fake_cupy

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.FakeCupy(devices=1))
    monkeypatch.setattr(fake_cupy, "COUNTS", fake_cupy.Counts())


def test_a_slot_group_on_the_device_reruns_alone_to_its_numbers(
        splits: dict[str, Split], fake_gpu: None) -> None:
    spec = spec_of(model="mlp", hidden=(10, 6), optimizer="adam", eta_max=0.003,
                   device="cuda", translate=1)
    results = prune_and_refill(spec, splits["float64"])
    # trial 2 drops out with the group's device masks; 0 and 3 (joined at T) draw none
    for key in (0, 3):
        assert_same(results[key], train(results[key].spec, splits["float64"]), rtol=1e-10)
    no_dropout = spec_of(model="mlp", hidden=(10, 6), optimizer="adam", eta_max=0.003,
                         device="cuda", translate=1, seed=8)
    feed = QueueFeed(slot_trials([spec, no_dropout.replace(lam=0.01), no_dropout]),
                     prune={0})
    train_slots(2, feed, splits["float64"])
    assert feed.results[2].spec.data_offset == first_period_end(spec)
    assert_same(feed.results[2], train(feed.results[2].spec, splits["float64"]), rtol=1e-10)


def test_a_trial_diverging_on_the_device_is_replaced_at_the_next_curve_point(
        splits: dict[str, Split], fake_gpu: None) -> None:
    spec = spec_of(model="convnet", schedule="constant", n_updates=10, eta_max=0.05,
                   device="cuda", curve_points=1)  # curve points at 6 and 10
    wild = spec.replace(seed=5, eta_max=1e150)
    feed = QueueFeed(slot_trials([spec, wild, spec.replace(seed=6)]))
    train_slots(2, feed, splits["float64"])
    diverged, late = feed.results[1], feed.results[2]
    cpu = train(diverged.spec.replace(device="cpu"), splits["float64"])
    assert diverged.diverged and (diverged.updates, diverged.message, diverged.epochs) == (
        cpu.updates, cpu.message, cpu.epochs)
    assert diverged.updates < 5 and late.spec.data_offset == 6  # acted on at update 6
    assert_same(late, train(late.spec, splits["float64"]), rtol=1e-10)


def test_slot_trials_keep_their_weights_and_tell_their_watchers(
        splits: dict[str, Split], tmp_path: Path) -> None:
    from numsweep.engine.checkpoint import load_weights

    spec = spec_of(model="convnet", schedule="constant", n_updates=8)
    heard: dict[int, list[Any]] = {0: [], 1: []}
    trials = [SlotTrial(k, spec.replace(seed=k), watcher=lambda points, total, k=k:
                        heard[k].append((points, total)), weights=tmp_path / f"{k}.npz")
              for k in (0, 1)]
    feed = QueueFeed(trials, prune={0})
    train_slots(1, feed, splits["float64"])
    late = feed.results[1]
    assert late.spec.data_offset == 6
    assert [p for points, _ in heard[1] for p in points] == list(late.curves)
    assert {total for _, total in heard[1]} == {8}
    alone = tmp_path / "alone.npz"
    train(late.spec, splits["float64"], weights=alone)
    kept, again = load_weights(tmp_path / "1.npz"), load_weights(alone)
    assert kept.spec == late.spec and kept.info["updates"] == 8
    for name, a in again.params.items():
        np.testing.assert_allclose(kept.params[name], a, rtol=1e-10)
    assert load_weights(tmp_path / "0.npz").info["updates"] == 6  # the pruned one's too


def test_a_slot_group_without_curves(splits: dict[str, Split]) -> None:
    spec = spec_of(schedule="constant", n_updates=5)
    feed = QueueFeed(slot_trials([spec.replace(seed=s) for s in range(3)]))
    stats = train_slots(2, feed, splits["float64"], curves=False)
    assert [feed.results[k].spec.data_offset for k in range(3)] == [0, 0, 5]
    assert all(not r.curves and np.isnan(r.test_acc) for r in feed.results.values())
    assert feed.reports == [] and stats.steps == 10


def test_a_trial_of_another_group_key_cannot_join(splits: dict[str, Split]) -> None:
    spec = spec_of(schedule="constant", n_updates=5)
    feed = QueueFeed(slot_trials([spec, spec.replace(hidden=(12,))]))
    with pytest.raises(ValueError, match="must share hidden"):
        train_slots(1, feed, splits["float64"])
