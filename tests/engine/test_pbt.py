"""Population-based training in one fused group (``pbt.py``): an exploit copies exactly
the source's rows, explore stays in its bounds, the ranking and its counts, divergence,
determinism, checkpoint kill and resume, replay of a member's lineage alone, and the
``hp_changes`` a replay trains with (float64 where results are compared)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from numsweep.engine import (
    Bound,
    ExploitEvent,
    PBTSettings,
    SlotTrial,
    SpecError,
    TrialSpec,
    lineage_changes,
    lineage_root,
    train,
    train_group,
    train_population,
    train_slots,
)
from numsweep.engine.build import build_network
from numsweep.engine.checkpoint import load_weights
from numsweep.engine.data import Split, load_dataset, make_split
from numsweep.engine.fused import fuse
from numsweep.engine.group import RULE_VALUES as RULE_FIELDS
from numsweep.engine.group import group_key, start_run
from numsweep.engine.optimizers import make_optimizer
from numsweep.engine.pbt import (
    Population,
    choose_members,
    explore_values,
)
from numsweep.engine.pertrial import PerTrial
from numsweep.engine.spec import RULE_PARAMETERS
from tests.conftest import for_model

BASE = {"n_train": 120, "n_val": 40, "batch_size": 20, "n_s": 4, "cycles": 2,
        "curve_points": 2, "eval_train": 60, "f": 4, "nf": 3, "nh": 8, "hidden": (10,),
        "dtype": "float64", "data_seed": 0, "optimizer": "momentum"}
BOUNDS = (Bound("eta_max", 1e-3, 0.5), Bound("lam", 1e-5, 0.1),
          Bound("momentum", 0.5, 0.95, log=False))


@pytest.fixture(scope="module")
def split(tiny_npz: Path) -> Split:
    return make_split(load_dataset(tiny_npz), BASE["n_train"], BASE["n_val"],
                      np.dtype("float64"))


def population(p: int = 8, **values: Any) -> list[TrialSpec]:
    base = TrialSpec.from_mapping(for_model({**BASE, **values}))
    return [base.replace(seed=i, eta_max=0.01 * (i + 1), lam=0.001 * i) for i in range(p)]


def same_results(a: Any, b: Any) -> None:
    """Two populations' results: the same events, curves and metrics, bitwise."""
    assert repr(a.events) == repr(b.events)
    for x, y in zip(a.results, b.results, strict=True):
        assert x.spec == y.spec and x.curves == y.curves
        assert repr((x.val_acc, x.test_acc, x.train_acc, x.updates, x.diverged)) == repr(
            (y.val_acc, y.test_acc, y.train_acc, y.updates, y.diverged))


def test_a_population_trains_and_its_results_hold_the_final_values(split: Split,
                                                                   tmp_path: Path) -> None:
    specs = population()
    settings = PBTSettings(interval=3, bounds=BOUNDS)
    heard: list[ExploitEvent] = []
    paths = [tmp_path / f"{i}.npz" for i in range(8)]
    result = train_population(specs, split, settings, on_exploit=heard.append, weights=paths)
    assert len(result.results) == 8 and result.events and list(result.events) == heard
    assert {e.update for e in result.events} == {3, 6, 9, 12, 15}  # total 16
    assert result.exploit_seconds > 0 and 0 < result.exploit_share() < 1
    for i, r in enumerate(result.results):
        last = [e.after for e in result.events if e.member == i]
        want = last[-1] if last else {b.name: getattr(specs[i], b.name) for b in BOUNDS}
        assert {b.name: getattr(r.spec, b.name) for b in BOUNDS} == want
        assert r.updates == 16 and not r.diverged and r.spec.seed == i
        assert load_weights(paths[i]).spec == r.spec  # the kept network names its values


@pytest.mark.parametrize("model, optimizer", [("mlp", "momentum"), ("mlp", "adam"),
                                              ("convnet", "nesterov")])
def test_an_exploit_copies_exactly_the_source_rows_and_nothing_else(
        split: Split, model: str, optimizer: str) -> None:
    """After an exploit step a replaced member's parameters and optimizer state are the
    source's bitwise (the fused layouts: the MLP's wide first layer, the feature-major
    ConvNet); every other row is untouched; its values are the source's explored."""
    extra = {"momentum": 0.9} if optimizer != "adam" else {}
    specs = population(6, model=model, optimizer=optimizer, **extra)
    bounds = (Bound("eta_max", 1e-3, 0.5), Bound("lam", 1e-5, 0.1))
    run = start_run(list(specs), split, prepared=None)
    pop = Population(run, PBTSettings(interval=3, bounds=bounds, quantile=0.5), None)
    for _ in range(3):
        run.update()
    before = {name: p.copy() for name, p in run.net.params.items()}
    state = {name: {k: a.copy() for k, a in s.items() if k != "buf"}
             for name, s in run.optimizer.state.items()}
    events = pop.exploit()
    assert len(events) == 3
    moved = {e.member: e.source for e in events}
    for i in range(6):
        row = moved.get(i, i)
        for name, p in run.net.params.items():
            assert np.array_equal(p[i], before[name][row]), (i, name)
        for name, slots in state.items():
            for k, a in slots.items():
                assert np.array_equal(run.optimizer.state[name][k][i], a[row]), (i, name, k)
    for e in events:
        assert e.before == {b.name: getattr(specs[e.member], b.name) for b in bounds}
        assert {b.name: getattr(run.specs[e.member], b.name) for b in bounds} == e.after
        assert e.metric_source >= e.metric_member


def test_choose_members_quantile_counts_and_direction() -> None:
    acc = np.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6])
    replaced, top = choose_members(acc, set(), 2, higher_better=True)
    assert replaced == [2, 6] and top == [1, 5]
    loss = acc  # as a loss: lower is better, the same numbers rank the other way
    replaced, top = choose_members(loss, set(), 2, higher_better=False)
    assert replaced == [1, 5] and top == [2, 6]
    # diverged members first, always replaced (here more than the quantile)
    nan = acc.copy()
    nan[3] = np.nan
    replaced, top = choose_members(nan, {0, 4}, 2, higher_better=True)
    assert replaced == [0, 3, 4] and top == [1, 5]
    replaced, top = choose_members(acc, {7}, 2, higher_better=True)
    assert replaced == [7, 2] and top == [1, 5]


def test_explore_values_are_a_factor_of_the_source_or_resampled_within_bounds() -> None:
    settings = PBTSettings(interval=1, factors=(0.8, 1.2), resample_probability=0.3,
                           bounds=BOUNDS)
    kinds = {"factor": 0, "resampled": 0, "clipped": 0}
    for seed in range(300):
        rng = np.random.default_rng(seed)
        source = {b.name: float(v) for b, v in zip(BOUNDS, rng.uniform(
            [b.low for b in BOUNDS], [b.high for b in BOUNDS]), strict=True)}
        out = explore_values(source, settings, rng)
        assert set(out) == {b.name for b in BOUNDS}
        for b in BOUNDS:
            v = out[b.name]
            assert b.low <= v <= b.high
            scaled = [min(max(source[b.name] * f, b.low), b.high) for f in (0.8, 1.2)]
            if v in scaled:
                kinds["clipped" if v in (b.low, b.high) else "factor"] += 1
            else:
                kinds["resampled"] += 1
    assert all(kinds.values()), kinds  # every path taken
    share = kinds["resampled"] / sum(kinds.values())
    assert 0.2 < share < 0.4


def test_the_same_settings_twice_give_the_same_events_and_results(split: Split) -> None:
    specs = population()
    settings = PBTSettings(interval=3, bounds=BOUNDS, seed=4)
    first = train_population(specs, split, settings)
    same_results(first, train_population(specs, split, settings))
    other = train_population(specs, split, dataclasses.replace(settings, seed=5))
    assert repr(other.events) != repr(first.events)  # the decisions are the generator's


def test_val_loss_ranks_lower_first(split: Split) -> None:
    specs = population()
    for metric in ("val_acc", "val_loss"):
        result = train_population(specs, split, PBTSettings(interval=4, bounds=BOUNDS,
                                                            metric=metric, metric_subset=20))
        for e in result.events:
            if metric == "val_acc":
                assert e.metric_source >= e.metric_member
            else:
                assert e.metric_source <= e.metric_member


def test_a_diverged_member_is_replaced_at_the_next_exploit_step(split: Split) -> None:
    """A member with a huge eta_max diverges at once; it stays in the group, marked, and
    the first exploit step copies a healthy member into it; the population goes on."""
    specs = population()
    specs[3] = specs[3].replace(eta_max=1e150, eta_min=1e149)
    result = train_population(specs, split, PBTSettings(interval=3, bounds=BOUNDS))
    first = [e for e in result.events if e.update == 3]
    assert first[0].member == 3 and np.isnan(first[0].metric_member)
    assert first[0].before["eta_max"] == 1e150 and first[0].after["eta_max"] <= 0.5
    assert not any(r.diverged for r in result.results)
    assert np.isfinite(result.results[3].val_acc)
    # without an exploit step ahead it leaves the group, diverged; the others go on
    alone = train_population(specs, split, PBTSettings(interval=100, bounds=BOUNDS))
    assert not alone.events
    assert [r.diverged for r in alone.results] == [i == 3 for i in range(8)]
    assert "loss diverged" in alone.results[3].message
    plain = train_group(specs, split)
    for a, b in zip(alone.results, plain, strict=True):
        assert a.curves == b.curves and a.updates == b.updates
    # every member diverged at an exploit step: nothing to copy from, all end diverged
    wild = [s.replace(eta_max=1e150, eta_min=1e149) for s in specs[:2]]
    lost = train_population(wild, split, PBTSettings(interval=3, bounds=BOUNDS))
    assert not lost.events and all(r.diverged and r.updates == 3 for r in lost.results)
    assert all("loss diverged" in r.message for r in lost.results)


class Stop(Exception):
    pass


def test_a_population_killed_and_resumed_from_its_checkpoint_ends_as_one_run(
        split: Split, tmp_path: Path) -> None:
    specs = population()
    settings = PBTSettings(interval=3, bounds=BOUNDS, seed=2)
    whole = train_population(specs, split, settings)
    path = tmp_path / "pop.npz"

    def stop_at_9(event: ExploitEvent) -> None:
        if event.update == 9:
            raise Stop

    with pytest.raises(Stop):
        train_population(specs, split, settings, checkpoint=path, on_exploit=stop_at_9)
    assert path.exists()
    heard: dict[int, list[Any]] = {}
    watchers = [lambda pts, total, i=i: heard.setdefault(i, []).extend(pts)
                for i in range(8)]
    resumed = train_population(specs, split, settings, checkpoint=path, on_points=watchers)
    assert resumed.results[0].message == "resumed from its checkpoint at update 9"
    same_results(whole, resumed)
    assert heard[0] == list(whole.results[0].curves)  # restored points first, then the rest
    # another population's settings do not resume from it, nor does a damaged file
    with pytest.warns(UserWarning, match="another population"):
        train_population(specs, split, dataclasses.replace(settings, seed=3), checkpoint=path)
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unreadable"):
        same_results(whole, train_population(specs, split, settings, checkpoint=path))


def test_replay_alone_equals_the_population_member(split: Split) -> None:
    """A member never replaced, trained alone, is its population result (float64 to
    1e-10); the best member's lineage replayed alone from its root ancestor's spec
    (hp_changes) ends with the member's final network."""
    specs = population()
    result = train_population(specs, split, PBTSettings(interval=3, bounds=BOUNDS))
    untouched = [i for i in range(8) if all(e.member != i for e in result.events)]
    assert untouched
    for i in untouched:
        assert lineage_changes(result.events, i, specs) == () and lineage_root(
            result.events, i) == i
        alone = train(specs[i], split)
        close(alone, result.results[i], curves=True)
    best = max(range(8), key=lambda i: result.results[i].val_acc)
    replaced = [i for i in range(8) if lineage_changes(result.events, i, specs)]
    for i in {best, *replaced[:2]}:
        root = lineage_root(result.events, i)
        replay = train(specs[root].replace(
            hp_changes=[list(c) for c in lineage_changes(result.events, i, specs)]), split)
        close(replay, result.results[i], curves=False)


def close(a: Any, b: Any, *, curves: bool) -> None:
    np.testing.assert_allclose([a.val_acc, a.test_acc, a.train_acc],
                               [b.val_acc, b.test_acc, b.train_acc], rtol=1e-10)
    np.testing.assert_allclose(a.curves[-1].loss, b.curves[-1].loss, rtol=1e-10)
    if curves:
        np.testing.assert_allclose([c.loss for c in a.curves], [c.loss for c in b.curves],
                                   rtol=1e-10)
        assert [c.lr for c in a.curves] == [c.lr for c in b.curves]


def test_lineage_follows_the_ancestry() -> None:
    """Member 2 copied 0 at update 4, which had copied 1 at update 2; 1 was never replaced
    before: 2's final weights trained under 1's values (0..2), 0's after its exploit
    (2..4), then 2's own (4..end). An exploit gives the source's values (lam, eps too),
    the explored ones perturbed, eta_min capped at eta_max."""
    def ev(update: int, member: int, source: int, after: dict[str, float]) -> ExploitEvent:
        return ExploitEvent(update, member, source, 0.1, 0.9, {}, after)

    initial = [{"lam": 0.0, "eta_max": 0.1, "eps": 0.0, "eta_min": 0.01},
               {"lam": 0.1, "eta_max": 0.2, "eps": 0.1, "eta_min": 0.01},
               {"lam": 0.2, "eta_max": 0.3, "eps": 0.2, "eta_min": 0.01}]
    events = [ev(2, 0, 1, {"eta_max": 0.25}), ev(2, 2, 1, {"eta_max": 0.5}),
              ev(4, 2, 0, {"eta_max": 0.3}), ev(6, 1, 2, {"eta_max": 0.9}),
              ev(8, 0, 1, {"eta_max": 0.005})]
    assert [lineage_root(events, i) for i in range(3)] == [1, 1, 1]
    assert lineage_changes(events, 2, initial) == ((2, "eta_max", 0.25), (4, "eta_max", 0.3))
    assert lineage_changes(events, 1, initial) == (
        (2, "eta_max", 0.25), (4, "eta_max", 0.3), (6, "eta_max", 0.9))
    assert lineage_changes(events, 0, initial) == (
        (2, "eta_max", 0.25), (4, "eta_max", 0.3), (6, "eta_max", 0.9),
        (8, "eta_max", 0.005), (8, "eta_min", 0.005))
    # 2 never replaced: its own values, none changed; replaced at 2 only: root 1, 1's values
    assert lineage_changes(events[:1], 2, initial) == () and lineage_root(events[:1], 2) == 2
    assert lineage_changes(events[:2], 2, initial) == ((2, "eta_max", 0.5),)
    spec = TrialSpec(eta_min=0.01, eta_max=0.2, lam=0.1, eps=0.1).replace(
        hp_changes=[list(c) for c in lineage_changes(events, 0, initial)])
    assert spec.hp_changes[-1] == (8, "eta_min", 0.005)  # a valid spec, update by update


def test_settings_and_populations_that_cannot_run(split: Split) -> None:
    with pytest.raises(SpecError, match="quantile"):
        PBTSettings(interval=2, quantile=0.6)
    with pytest.raises(SpecError, match="interval"):
        PBTSettings(interval=0)
    with pytest.raises(SpecError, match="metric"):
        PBTSettings(interval=2, metric="test_acc")
    with pytest.raises(SpecError, match="bound 'seed'"):
        Bound("seed", 1, 2)
    with pytest.raises(SpecError, match="low > 0"):
        Bound("lam", 0.0, 1.0)
    specs = population(4)
    with pytest.raises(SpecError, match="momentum"):  # beyond what a spec takes
        train_population(specs, split, PBTSettings(interval=2, bounds=(
            Bound("momentum", 0.5, 1.5, log=False),)))
    with pytest.raises(SpecError, match="beta1"):  # not the population's update rule
        train_population(specs, split, PBTSettings(interval=2, bounds=(
            Bound("beta1", 0.5, 0.9),)))
    with pytest.raises(ValueError, match="at least 2"):
        train_population(specs[:1], split, PBTSettings(interval=2))
    with pytest.raises(ValueError, match="share"):
        train_population([specs[0], specs[1].replace(batch_size=10)], split,
                         PBTSettings(interval=2))


# -- hp_changes ------------------------------------------------------------------------------

def test_hp_changes_are_validated_stored_and_per_trial() -> None:
    spec = TrialSpec(hp_changes=((5, "lam", 0.01), (7, "eta_max", 0.2)))
    assert spec.to_dict()["hp_changes"] == [[5, "lam", 0.01], [7, "eta_max", 0.2]]
    assert TrialSpec.from_mapping(spec.to_dict()) == spec
    assert TrialSpec.from_mapping({"hp_changes": '[[5, "lam", 0.01]]'}).hp_changes == (
        (5, "lam", 0.01),)
    assert "hp_changes" not in TrialSpec().to_dict()  # specs without them as before
    assert group_key(spec) == group_key(TrialSpec())
    for bad, match in [([[0, "lam", 0.1]], "ascending, each > 0"),
                       ([[3, "seed", 1]], "a change of one of"),
                       ([[5, "lam", 0.1], [4, "eps", 0.2]], "an update >= 5"),
                       ([[5, "lam", 0.1], [5, "lam", 0.2]], "one change of lam"),
                       ([[3, "dropout", 1.5]], "dropout=1.5"),
                       ([[3, "momentum", 0.5]], "optimizer=sgd"),
                       ("x", "wrong type"), ([[3, "lam"]], "wrong type")]:
        with pytest.raises(SpecError, match=match):
            TrialSpec.from_mapping({"hp_changes": bad})


def test_hp_changes_apply_just_before_their_update(split: Split, tmp_path: Path) -> None:
    """eta_max changed before update 5 of a constant schedule: the curves up to it are the
    unchanged run's, the rate from update 5 on is the new one; a change past the run's end
    is refused in one line."""
    base = TrialSpec.from_mapping(for_model({**BASE, "schedule": "constant", "n_updates": 12,
                                             "curve_points": 6, "eta_max": 0.05}))
    changed = base.replace(hp_changes=[[5, "eta_max", 0.2], [5, "lam", 0.01],
                                       [9, "momentum", 0.5]])
    plain, run = train(base, split), train(changed, split)
    assert run.spec == train_group([changed], split)[0].spec == changed.replace(
        n_s=4, n_train=120, n_updates=12)
    steps = [c.step for c in run.curves if c.split == "val"]
    assert steps == list(range(13))
    before = [c for c in run.curves if c.step <= 5]
    assert before == [c for c in plain.curves if c.step <= 5]
    assert all(c.lr == 0.2 for c in run.curves if c.step > 5)
    after = [(a.loss, b.loss) for a, b in zip(run.curves, plain.curves, strict=True)
             if a.step == 6]
    assert all(x != y for x, y in after)  # update 5 took the new values
    # killed after the change and resumed from its checkpoint: the changes before the
    # checkpoint's update are in force again
    path = tmp_path / "run.npz"

    def stop_at_8(points: Any, total: int) -> None:
        if points[0].step == 8:
            raise Stop

    with pytest.raises(Stop):
        train(changed, split, checkpoint=path, on_points=stop_at_8)
    resumed = train(changed, split, checkpoint=path)
    # update 7's checkpoint: the run stopped at 8 waited for its write
    assert resumed.message == "resumed from its checkpoint at update 7"
    assert resumed.curves == run.curves and resumed.test_acc == run.test_acc
    with pytest.raises(SpecError, match=r"an update in 1\.\.11"):
        train(base.replace(hp_changes=[[12, "lam", 0.1]]), split)


# -- the pieces an exploit and an explore use --------------------------------------------------

def three_nets(seed: int = 0) -> list[Any]:
    spec = TrialSpec(hidden=(6, 5), dtype="float64")
    return [build_network(spec.replace(seed=seed + i), (4, 4, 3), 10,
                          np.random.default_rng(seed + i)) for i in range(3)]


@pytest.mark.parametrize("layout", ["wide", "lone"])
def test_fused_net_copy_row_and_set_values(layout: str) -> None:
    """copy_row copies one trial's slice of every parameter (the wide layout's views
    included) and nothing else; set_values changes one trial's dropout rates: the next
    step is that of a net fused with those rates."""
    net = fuse(three_nets(), [0.0] * 3, [0.0] * 3, layout)
    before = {name: p.copy() for name, p in net.params.items()}
    net.copy_row(0, 2)
    for name, p in net.params.items():
        assert np.array_equal(p[0], before[name][2])
        assert np.array_equal(p[1:], before[name][1:])
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(8, 48)), rng.integers(0, 10, size=8)
    net = fuse(three_nets(), [0.0] * 3, [0.0] * 3, layout)
    net.train_step(x, y, eps=np.zeros(3), rngs=[np.random.default_rng(9)] * 3,
                   scale=np.ones(3))  # the per-trial rate caches filled
    net.set_values(1, dropout=0.5, dropout_input=0.2)
    want = fuse(three_nets(), [0.0, 0.5, 0.0], [0.0, 0.2, 0.0], layout)
    steps = []
    for fused in (net, want):
        rngs = [np.random.default_rng(i) for i in range(3)]
        loss, grads = fused.train_step(x, y, eps=np.zeros(3), rngs=rngs, scale=np.ones(3))
        steps.append((loss, {k: v.copy() for k, v in grads.items()}))
    assert np.array_equal(steps[0][0], steps[1][0])
    for name in steps[0][1]:
        assert np.array_equal(steps[0][1][name], steps[1][1][name])


@pytest.mark.parametrize("optimizer", ["momentum", "rmsprop_nesterov", "adam"])
def test_rule_copy_row_and_set_values(optimizer: str) -> None:
    """set_values gives trial 1 the values of another spec: steps then equal those of a
    rule made from the specs with those values; copy_row copies trial 2's state into 0
    (and a per-trial count)."""
    base = TrialSpec(optimizer=optimizer)
    names = [n for n in ("momentum", "rho", "beta1", "beta2", "opt_eps")
             if optimizer in RULE_PARAMETERS[n][1]]
    new = {"momentum": 0.5, "rho": 0.7, "beta1": 0.6, "beta2": 0.95, "opt_eps": 1e-4}
    specs = [base.replace(seed=i) for i in range(3)]
    changed = [specs[0], base.replace(**{n: new[n] for n in names}), specs[2]]
    rule, want = make_optimizer(specs), make_optimizer(changed)
    rule.set_values(1, **{RULE_FIELDS[n]: new[n] for n in names})
    rng = np.random.default_rng(0)
    params = {"W": rng.normal(size=(3, 4, 5))}
    other = {"W": params["W"].copy()}
    for _ in range(3):
        g = {"W": rng.normal(size=(3, 4, 5))}
        rule.step(params, {"W": g["W"].copy()}, PerTrial([0.1, 0.2, 0.3]))
        want.step(other, {"W": g["W"].copy()}, PerTrial([0.1, 0.2, 0.3]))
    assert np.array_equal(params["W"], other["W"])
    rule.per_trial(3)
    if optimizer == "adam":
        rule.t[2] = 9  # type: ignore[index, union-attr]
    state = {k: a.copy() for k, a in rule.state["W"].items()}
    rule.copy_row(0, 2)
    for k, a in rule.state["W"].items():
        assert np.array_equal(a[0], state[k][2]) and np.array_equal(a[1:], state[k][1:])
    if optimizer == "adam":
        assert list(rule.t) == [9, 3, 9]  # type: ignore[arg-type, union-attr]
    lone = make_optimizer(specs[0])
    lone.set_values(0, **{RULE_FIELDS[names[0]]: new[names[0]]})
    assert getattr(lone, RULE_FIELDS[names[0]]) == new[names[0]]


def test_a_slot_group_refuses_a_trial_with_hp_changes(split: Split) -> None:
    """A slot's values are its rows' for the whole run: hp_changes would be ignored."""
    class OneFeed:
        def refill(self, ended: Any, free: int) -> list[SlotTrial]:
            spec = population(1)[0].replace(hp_changes=[[3, "lam", 0.01]])
            return [SlotTrial(1, spec)] if not ended else []

        def report(self, reports: Any) -> list[int]:
            return []

    with pytest.raises(ValueError, match="hp_changes trains alone or in train_group"):
        train_slots(1, OneFeed(), split)


def test_a_population_on_the_device_is_the_cpu_population(
        split: Split, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the stand-in for CuPy (``fake_cupy``): the row copies and value edits work on
    device arrays; a member diverged there is marked at the exploit step (nothing comes
    back per update) and replaced as on the CPU: the same events, the same curves (float64
    to 1e-10)."""
    from tests.engine import fake_cupy

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy.FakeCupy(devices=1))
    specs = population(6)
    specs[2] = specs[2].replace(eta_max=1e150, eta_min=1e149)
    settings = PBTSettings(interval=3, bounds=BOUNDS)
    cpu = train_population(specs, split, settings)
    gpu = train_population([s.replace(device="cuda") for s in specs], split, settings)
    assert cpu.events[0].member == 2 and np.isnan(cpu.events[0].metric_member)
    assert [(e.update, e.member, e.source, e.after) for e in gpu.events] == [
        (e.update, e.member, e.source, e.after) for e in cpu.events]
    for a, b in zip(cpu.results, gpu.results, strict=True):
        assert not b.diverged and b.updates == a.updates
        np.testing.assert_allclose([c.loss for c in b.curves], [c.loss for c in a.curves],
                                   rtol=1e-10)
