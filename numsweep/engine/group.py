"""Fused trials: train K specs of the same structure together and get K TrialResults.

:func:`train_group` trains a group of specs that share a :func:`group_key` as one fused
network (``fused.py``): their weights stacked along a leading trial axis, one shared batch
per update, one product where K lone trials would run K. Each result is what
:func:`~numsweep.engine.train.train` gives for that spec alone (the same curves and metrics;
float64 to rounding, float32 to the rounding of a different summation order), except that
``train_seconds`` and ``eval_seconds`` are the group's time shared out evenly among the
trials training at the time.

Randomness comes in two explicit streams. The data stream (batch order, augmentation draws)
is seeded by ``data_seed`` (``seed`` when unset) and shared by the group, so every trial of a
group sees the same batches: comparing them is a paired comparison (common random numbers).
Each trial's own stream (initialisation, dropout masks) is seeded by its ``seed``.

Per-trial values (:data:`PER_TRIAL`) are (K,)-shaped arrays inside the group; everything
else is the group key. A trial whose loss becomes NaN or inf leaves the group with its
result marked diverged; a trial its reporter stops (a pruned trial) leaves it too; the
others train on unchanged, as they would without it.

``train`` trains every groupable spec as a group of one (``train_group([spec])``): one
training path. A group of one keeps the lone trial's Python floats for its hyperparameters
and takes plain 2-D products; measured side by side in one process against the former lone
fast path (``FastNetwork.train_step``, 1 BLAS thread, CPU time, 7 alternating runs each on
this project's busy 2-core machine) it took 1-7% more per update (medians; the course
ConvNet with SGD, Adam, Nesterov + dropout and the MLP), within the run-to-run spread
there. Specs that cannot be grouped (``convnet3``) train on the reference layers in
``train.py``.

Devices: ``device`` is part of the group key. With ``device=cuda`` the same code runs on
CuPy arrays (every array function is taken from the arrays, ``backend.array_module``): the
data is copied to the GPU once per process, the data stream's indices (host) gather each
batch there, dropout masks are drawn there (one generator per group, so they differ from
the CPU's), and nothing comes back per update (divergence is marked on the device and
acted on at the next curve point). ``sizing.max_group_size`` says how many trials fit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine.augment import Augmenter
from numsweep.engine.backend import array_module, device_copy, device_module, to_numpy
from numsweep.engine.batch_schedules import BatchSampler, largest_batch, make_batch_schedule
from numsweep.engine.checkpoint import (
    SCRATCH_SLOTS,
    CheckpointWriter,
    GroupState,
    keep_weights,
    load_state,
    state_digest,
)
from numsweep.engine.data import Dataset, Split, make_split
from numsweep.engine.fused import FusedNet, fuse
from numsweep.engine.losses import LOSSES, l2_penalty
from numsweep.engine.networks import Network, param_count
from numsweep.engine.optimizers import Optimizer, make_optimizer
from numsweep.engine.schedules import CYCLIC, make_schedule
from numsweep.engine.spec import CurvePoint, TrialResult, TrialSpec

PER_TRIAL = ("lam", "eps", "eta_min", "eta_max", "eta_decay", "gamma", "momentum", "beta1",
             "beta2", "rho", "opt_eps", "dropout", "dropout_input", "seed")
"""The parameters that may differ inside a group: none changes an array's shape, the batches
or the kind of computation."""

GROUPABLE_MODELS = ("mlp", "convnet")

EVAL_CHUNK_MIN = 100
"""A group of K measures a set EVAL_CHUNK // K images per forward pass (at least this many;
EVAL_CHUNK of ``train.py`` for one trial), so its activations stay about as large."""


def resolve_data_seed(spec: TrialSpec) -> int:
    """The seed of the data stream: ``data_seed``, or ``seed`` when unset."""
    return spec.seed if spec.data_seed is None else spec.data_seed


def data_rng(data_seed: int) -> np.random.Generator:
    """The data stream's generator: independent of the trial stream's even for equal seeds."""
    return np.random.default_rng(np.random.SeedSequence(data_seed, spawn_key=(1,)))


def trial_rng(spec: TrialSpec) -> np.random.Generator:
    """The trial's own generator (initialisation, then dropout masks)."""
    return np.random.default_rng(spec.seed)


def device_seed(specs: Sequence[TrialSpec]) -> int:
    """The seed of a group's device generator (dropout masks on a GPU), from its trials'
    seeds: the same group draws the same masks."""
    seq = np.random.SeedSequence([s.seed for s in specs], spawn_key=(2,))
    return int(seq.generate_state(1, dtype=np.uint64)[0])


def groupable(spec: TrialSpec) -> bool:
    """Whether ``spec`` can train in a group (the MLP and the patchify ConvNet)."""
    return spec.model in GROUPABLE_MODELS


def group_key(spec: TrialSpec) -> tuple[tuple[str, Any], ...]:
    """What specs of one group must share: every parameter but :data:`PER_TRIAL`, with
    ``data_seed`` resolved. Specs with equal keys (and :func:`groupable`) train together."""
    values = dataclasses.asdict(spec)
    values["data_seed"] = resolve_data_seed(spec)
    return tuple((name, _hashable(value)) for name, value in values.items()
                 if name not in PER_TRIAL)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def evaluate_group(net: FusedNet, x: np.ndarray, y: np.ndarray, lams: np.ndarray,
                   eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loss, cost, accuracy) of every trial over a whole set, each (K,) NumPy float64: one
    fused forward pass and one fused data loss (the loss of :func:`train.evaluate`, summed
    in float64) per chunk, on the set's device; three (K,) arrays come back to the host."""
    from numsweep.engine.train import EVAL_CHUNK

    xp = array_module(x)
    k = net.k
    chunk = max(EVAL_CHUNK // k, EVAL_CHUNK_MIN) if k > 1 else EVAL_CHUNK
    eps_x = xp.asarray(np.asarray(eps, dtype=np.float64))
    loss_sum = xp.zeros(k)
    correct = xp.zeros(k, dtype=np.int64)
    for start in range(0, len(x), chunk):
        scores = net.scores(x[start:start + chunk])
        yb = y[start:start + chunk]
        loss_sum += LOSSES[net.loss_name].sums(scores, yb, eps_x)
        correct += (scores.argmax(axis=2) == yb).sum(axis=1)
    l2 = l2_penalty(net.params, net.weight_names, trials=True)
    loss = to_numpy(loss_sum) / len(x)
    return loss, loss + lams * to_numpy(l2), to_numpy(correct) / len(x)


def _unstack(net: FusedNet, j: int, lone: Network) -> Network:
    """Trial j's parameters copied into its lone network (same names and shapes; on the
    host, wherever the group trains)."""
    for name, p in lone.params.items():
        one = to_numpy(net.params[name][j:j + 1])
        p[...] = net.lone_param(name, one)[0].reshape(p.shape)
    return lone


def train_group(specs: Sequence[TrialSpec], data: Dataset | Split, *,
                reporters: Sequence[Any] | None = None,
                prepared: Any = None, checkpoint: str | Path | None = None,
                weights: Sequence[str | Path | None] | None = None,
                on_points: Sequence[Any] | None = None) -> list[TrialResult]:
    """Train the specs of one group together; one TrialResult per spec, in their order.

    The specs must share :func:`group_key` and be :func:`groupable`. ``reporters`` holds
    one reporter (or None) per spec, called as :func:`train.train` calls it; one that
    returns True stops its own trial only. ``prepared`` is the split turned into the
    network's inputs (:class:`train.Prepared`), shared by every trial of the group.

    ``checkpoint``: the group's checkpoint file (``checkpoint.py``), written at every curve
    point; when it holds a state of these specs the run continues from it (the reporters
    first hear again the reports made before it) and ends as an uninterrupted run would.
    ``weights``: one path (or None) per spec where a trial that ends without diverging
    saves its network (:func:`checkpoint.keep_weights`: a failed write is said in the
    trial's message, its result stands). ``on_points``: one :data:`train.PointWatcher` (or
    None) per spec, told each curve point of its trial.
    With ``device=cuda`` (CuPy) the split and ``prepared`` are copied to the GPU once per
    process (:func:`backend.device_copy`), the network's inputs prepared there, batches
    gathered there by the indices the CPU would draw (the same data stream), and the curves
    measured there; nothing comes back per update: a trial whose loss became NaN/inf is
    marked on the device and leaves at the next curve point, stored as diverged at the
    update it diverged (as on the CPU).
    """
    from numsweep.engine.train import (
        Prepared,
        build_network,
        check_batch_sizes,
        curve_steps,
        resolve_n_s,
    )

    specs = list(specs)
    if not specs:
        return []
    check_group(specs)
    reps = list(reporters) if reporters is not None else [None] * len(specs)
    if len(reps) != len(specs):
        raise ValueError(f"{len(reps)} reporters for {len(specs)} specs")
    watchers = list(on_points) if on_points is not None else [None] * len(specs)
    if len(watchers) != len(specs):
        raise ValueError(f"{len(watchers)} point watchers for {len(specs)} specs")
    spec0 = specs[0]
    xp = device_module(spec0.device)  # a one-line DeviceError before any work
    dtype = np.dtype(spec0.dtype)
    split = data if isinstance(data, Split) else make_split(data, spec0.n_train, spec0.n_val,
                                                             dtype)
    rngs = [trial_rng(s) for s in specs]
    lones = [build_network(s, split.x_train.shape[1:], split.num_classes, r)
             for s, r in zip(specs, rngs, strict=True)]
    counts = [param_count(lone) for lone in lones]
    net = fuse(lones, [s.dropout for s in specs], [s.dropout_input for s in specs])
    net.to_device(xp, device_seed(specs))
    augment = Augmenter.from_spec(spec0)
    if prepared is None:
        images = {name: device_copy(getattr(split, name), xp)
                  for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
        train_part = images["x_train"][: spec0.eval_train] if augment.active \
            else images["x_train"]
        prepared = Prepared(net.prepare(train_part), images["y_train"],
                            net.prepare(images["x_val"]), images["y_val"],
                            net.prepare(images["x_test"]), images["y_test"])
    elif xp is not np:
        prepared = Prepared(*(device_copy(getattr(prepared, f.name), xp)
                              for f in dataclasses.fields(prepared)))
    x_tr, y_tr = prepared.x_train, prepared.y_train
    n = len(y_tr)
    check_batch_sizes(spec0, n)
    n_s = resolve_n_s(spec0, n)
    if n_s < 1:
        raise ValueError(f"n_s resolves to {n_s}: n_train={n} is smaller than 2 batches")
    digest = state_digest(specs, y_tr, split.x_train.shape[1:], split.num_classes)
    saved = load_state(checkpoint, digest)
    writer = CheckpointWriter(checkpoint, digest) if checkpoint is not None else None
    plans = [make_schedule(s, n_s, n // s.batch_size) for s in specs]
    total, ends = plans[0].total, plans[0].ends
    schedules = [p.schedule for p in plans]
    batches = make_batch_schedule(spec0, n_s, total)
    fused_sgd = spec0.optimizer == "sgd"
    optimizer = make_optimizer(specs, prescaled=fused_sgd)
    images = device_copy(split.x_train, xp) if augment.active else None
    checkpoints = set(curve_steps(ends, spec0.curve_points))
    period_ends = set(ends)
    x_ev, y_ev = x_tr[: spec0.eval_train], y_tr[: spec0.eval_train]
    sampler = BatchSampler(n, data_rng(resolve_data_seed(spec0)))

    active = list(range(len(specs)))        # trials still training, in the group's order
    curves: list[list[CurvePoint]] = [[] for _ in specs]
    train_seconds = [0.0] * len(specs)
    eval_seconds = [0.0] * len(specs)
    results: dict[int, TrialResult] = {}

    def values(name: str) -> np.ndarray:
        return np.array([getattr(specs[i], name) for i in active], dtype=np.float64)

    def share(seconds: list[float], dt: float) -> None:
        for i in active:
            seconds[i] += dt / len(active)

    def record(step: int) -> np.ndarray:
        t0 = time.perf_counter()
        lams, eps = values("lam"), values("eps")
        accs = np.empty(len(active))
        for split_name, x, y in (("train", x_ev, y_ev), ("val", prepared.x_val, prepared.y_val)):
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's inf/NaN
                loss, cost, acc = evaluate_group(net, x, y, lams, eps)
            for j, i in enumerate(active):
                curves[i].append(CurvePoint(step, split_name, float(loss[j]), float(cost[j]),
                                            float(acc[j]), schedules[i].lr(step)))
            accs = acc
        share(eval_seconds, time.perf_counter() - t0)
        for i in active:
            if watchers[i] is not None:
                watchers[i](tuple(curves[i][-2:]), total)
        return accs

    def finish(i: int, step: int, *, diverged: bool = False, stopped: bool = False,
               message: str = "", test_acc: float = float("nan"),
               lone: Network | None = None, epochs: float | None = None) -> None:
        spec = specs[i]
        if saved is not None:
            message = "; ".join(m for m in (message, f"resumed from its checkpoint at update "
                                                     f"{saved.step}") if m)
        if diverged:
            val_acc = train_acc = float("nan")
        else:
            train_acc = next(c.acc for c in reversed(curves[i]) if c.split == "train")
            val_acc = next(c.acc for c in reversed(curves[i]) if c.split == "val")
        if lone is not None and weights is not None and weights[i] is not None:
            unkept = keep_weights(weights[i], specs[i], lone.params, test_acc=test_acc,
                                  val_acc=val_acc, updates=step,
                                  image_shape=list(split.x_train.shape[1:]))
            message = "; ".join(m for m in (message, unkept) if m)
        resolved = dataclasses.replace(
            spec, n_s=n_s, n_train=n, data_seed=resolve_data_seed(spec),
            n_updates=None if spec.n_updates is None and spec.schedule in CYCLIC else total)
        results[i] = TrialResult(
            spec=resolved, val_acc=val_acc, test_acc=test_acc, train_acc=train_acc,
            train_seconds=train_seconds[i], eval_seconds=eval_seconds[i], updates=step,
            param_count=counts[i], epochs=sampler.epochs if epochs is None else epochs,
            diverged=diverged,
            stopped=stopped, message=message, curves=tuple(curves[i]))

    def leave(gone: list[int]) -> None:
        """Trials (positions in ``active``) leave the group; the others keep their slices."""
        keep = np.array([j for j in range(len(active)) if j not in gone], dtype=np.intp)
        if len(keep):
            net.select(keep)
            optimizer.select(keep)
        active[:] = [active[j] for j in keep]

    # On a device the losses stay there: each update marks the trials whose loss became
    # NaN/inf (the first such update and its loss), and at the next curve point they leave
    # the group as they would have at that update (the rest are untouched by them meanwhile).
    watch: list[Any] = []             # [first bad update (K,), its loss (K,)], on the device
    epochs_at: list[float] = []       # the sampler's epochs after each update's batch

    def watch_step(losses: Any, step: int) -> None:
        if not watch:
            watch[:] = [xp.full(len(active), -1, dtype=np.int64), xp.zeros(len(active))]
        newly = ~xp.isfinite(losses) & (watch[0] < 0)
        watch[0] = xp.where(newly, step, watch[0])
        watch[1] = xp.where(newly, losses, watch[1])

    def flush_diverged() -> bool:
        """The trials marked by ``watch_step`` leave; whether any did."""
        if not watch:
            return False
        at, lost = to_numpy(watch[0]), to_numpy(watch[1])
        watch.clear()
        bad = [j for j in range(len(active)) if at[j] >= 0]
        for j in bad:
            first, i = int(at[j]), active[j]
            finish(i, first, diverged=True, epochs=epochs_at[first], message=(
                f"loss diverged ({lost[j]}) at update {first} with learning rate "
                f"{schedules[i].lr(first):.3g}"))
        if bad:
            leave(bad)
        return bool(bad)

    step = 0
    if saved is None:
        record(0)
    else:
        step = saved.step
        _restore_state(saved, net, optimizer, lones, rngs, sampler)
        active[:] = saved.active
        curves[:] = saved.curves
        results.update(saved.results)
        train_seconds[:], eval_seconds[:] = saved.train_seconds, saved.eval_seconds
        epochs_at[:] = [float("nan")] * step  # watch_step indexes it by update
        replay_reports(reps, curves, results, sorted(period_ends), total, step)
        for i, watcher in enumerate(watchers):
            if watcher is not None and curves[i]:
                watcher(tuple(curves[i]), total)
    b_max = largest_batch(spec0)
    x_buf = xp.empty((b_max, *x_tr.shape[1:]), x_tr.dtype) if images is None else None
    y_buf = xp.empty(b_max, y_tr.dtype)
    eps_arr, lam_arr = values("eps"), values("lam")
    ones = np.ones(len(specs))
    while step < total and active:
        t0 = time.perf_counter()
        idx = sampler.next(batches.size(step))
        if xp is not np:
            epochs_at.append(sampler.epochs)
        lrs = np.array([schedules[i].lr(step) for i in active])
        yb = y_buf[:len(idx)]
        if xp is np:
            np.take(y_tr, idx, out=yb, mode="clip")
        else:  # the host's indices (the data stream) gather the batch on the device
            idx = xp.asarray(idx)
            xp.take(y_tr, idx, out=yb)
        if x_buf is not None:
            xb = x_buf[:len(idx)]
            if xp is np:
                np.take(x_tr, idx, axis=0, out=xb, mode="clip")
            else:
                xp.take(x_tr, idx, axis=0, out=xb)
        else:
            assert images is not None
            xa, yb = augment(images[idx], yb, sampler.rng)
            xb = net.prepare(xa)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
            losses, grads = net.train_step(
                xb, yb, eps=eps_arr, rngs=[rngs[i] for i in active],
                scale=lrs if fused_sgd else ones[:len(active)])
        if array_module(losses) is not np:
            watch_step(losses, step)  # no copy back: checked at the next curve point
            losses = None
        bad = [] if losses is None or np.isfinite(losses).all() else [
            j for j in range(len(active)) if not np.isfinite(losses[j])]
        if bad:
            share(train_seconds, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for j in bad:
                finish(active[j], step, diverged=True, message=(
                    f"loss diverged ({losses[j]}) at update {step} with learning rate "
                    f"{lrs[j]:.3g}"))
            keep = [j for j in range(len(active)) if j not in bad]
            at = np.array(keep, dtype=np.intp)
            grads = {name: g[at if xp is np else xp.asarray(at)] for name, g in grads.items()}
            lrs = lrs[keep]
            leave(bad)
            if not active:
                break
            eps_arr, lam_arr = values("eps"), values("lam")
        optimizer.update(net.params, grads, lrs, lam_arr, net.weight_names)
        step += 1
        share(train_seconds, time.perf_counter() - t0)
        if step in checkpoints:
            if flush_diverged():
                if not active:
                    break
                eps_arr, lam_arr = values("eps"), values("lam")
            val_accs = record(step)
            if step in period_ends and step < total:
                stop = [j for j, i in enumerate(active)
                        if reps[i] is not None and reps[i](step, float(val_accs[j]))]
                for j in stop:
                    i = active[j]
                    t0 = time.perf_counter()
                    # alone on the group's device: its lone network fused as a group of one
                    lone = _unstack(net, j, lones[i])
                    alone = fuse([lone], [0.0], [0.0])
                    alone.to_device(xp, 0)
                    _, _, test_accs = evaluate_group(alone, prepared.x_test, prepared.y_test,
                                                     values("lam")[j:j + 1],
                                                     values("eps")[j:j + 1])
                    test_acc = float(test_accs[0])
                    eval_seconds[i] += time.perf_counter() - t0
                    finish(i, step, stopped=True, test_acc=test_acc, lone=lone,
                           message=f"stopped by the pruner at update {step}")
                if stop:
                    leave(stop)
                    eps_arr, lam_arr = values("eps"), values("lam")
            if writer is not None and active:
                writer.save(partial(_capture_state, step, net, optimizer, lones, active, rngs,
                                    sampler, curves, train_seconds, eval_seconds, results))

    flush_diverged()
    if writer is not None:
        writer.close()
    if active:
        t0 = time.perf_counter()
        _, _, test_accs = evaluate_group(net, prepared.x_test, prepared.y_test,
                                         values("lam"), values("eps"))
        share(eval_seconds, time.perf_counter() - t0)
        for j, i in enumerate(active):
            lone = _unstack(net, j, lones[i]) if weights is not None else None
            finish(i, step, test_acc=float(test_accs[j]), lone=lone)
    return [results[i] for i in range(len(specs))]


def check_group(specs: Sequence[TrialSpec]) -> None:
    """A ValueError naming the first parameter two specs of a would-be group differ in."""
    if not groupable(specs[0]):
        raise ValueError(f"model={specs[0].model} cannot train in a group (only "
                         f"{', '.join(GROUPABLE_MODELS)})")
    key0 = group_key(specs[0])
    for spec in specs[1:]:
        for (name, a), (_, b) in zip(key0, group_key(spec), strict=True):
            if a != b:
                raise ValueError(f"specs of one group must share {name} ({a!r} != {b!r})")


# -- checkpoints: the group's state out of and back into its arrays ----------------------------

def _lone_index(net: FusedNet, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """For each position of a trial's parameter ``name`` in the lone layout (flat), the flat
    position in the fused layout of shape ``shape`` (one trial's) it comes from."""
    idx = np.arange(int(np.prod(shape))).reshape(1, *shape)
    return np.asarray(net.lone_param(name, idx)[0]).reshape(-1)


def _capture_state(step: int, net: FusedNet, optimizer: Optimizer, lones: Sequence[Network],
                   active: Sequence[int], rngs: Sequence[np.random.Generator],
                   sampler: BatchSampler, curves: Sequence[Sequence[CurvePoint]],
                   train_seconds: Sequence[float], eval_seconds: Sequence[float],
                   results: dict[int, TrialResult]) -> GroupState:
    """The group's state after update ``step`` (host copies, in the lone layout)."""
    from numsweep.engine.backend import to_numpy

    def lone(name: str, a: Any, j: int, i: int) -> np.ndarray:
        shape = lones[i].params[name].shape  # a copy: the live arrays train on meanwhile
        return np.array(to_numpy(net.lone_param(name, a[j:j + 1])[0]).reshape(shape))

    params = [{name: lone(name, p, j, i) for name, p in net.params.items()}
              for j, i in enumerate(active)]
    slots = [{name: {slot: lone(name, a, j, i) for slot, a in named.items()
                     if slot not in SCRATCH_SLOTS}
              for name, named in optimizer.state.items()} for j, i in enumerate(active)]
    return GroupState(
        step=step, active=list(active), params=params, slots=slots,
        opt_t=getattr(optimizer, "t", None),
        trial_rngs=[r.bit_generator.state for r in rngs],
        data_rng=sampler.rng.bit_generator.state, sampler_order=np.array(sampler.order),
        sampler_cursor=sampler.cursor, sampler_drawn=sampler.drawn,
        curves=[list(c) for c in curves], train_seconds=list(train_seconds),
        eval_seconds=list(eval_seconds), results=dict(results))


def _restore_state(state: GroupState, net: FusedNet, optimizer: Optimizer,
                   lones: Sequence[Network], rngs: Sequence[np.random.Generator],
                   sampler: BatchSampler) -> None:
    """Put ``state`` into a freshly built group (all its trials): the trials that had left
    leave again, then parameters, optimizer state and random streams are set."""
    xp = array_module(next(iter(net.params.values())))
    keep = np.asarray(state.active, dtype=np.intp)
    if len(keep) < net.k:
        net.select(keep)
        optimizer.select(keep)

    def fused(name: str, per_trial_arrays: Sequence[np.ndarray], like: Any) -> Any:
        shape = like.shape[1:]
        out = np.empty((len(per_trial_arrays), int(np.prod(shape))), dtype=like.dtype)
        index = _lone_index(net, name, shape)
        for j, a in enumerate(per_trial_arrays):
            out[j, index] = np.asarray(a).reshape(-1)
        return xp.asarray(out.reshape(like.shape))

    for name, p in net.params.items():
        p[...] = fused(name, [params[name] for params in state.params], p)
    optimizer.state = {name: {slot: fused(name, [s[name][slot] for s in state.slots],
                                          net.params[name])
                              for slot in state.slots[0][name]}
                       for name in state.slots[0]} if state.slots else {}
    if state.opt_t is not None:
        optimizer.t = state.opt_t  # type: ignore[union-attr]
    for rng, rng_state in zip(rngs, state.trial_rngs, strict=True):
        rng.bit_generator.state = rng_state
    sampler.rng.bit_generator.state = state.data_rng
    sampler.order = np.asarray(state.sampler_order)
    sampler.cursor, sampler.drawn = state.sampler_cursor, state.sampler_drawn


def replay_reports(reporters: Sequence[Any], curves: Sequence[Sequence[CurvePoint]],
                    results: dict[int, TrialResult], period_ends: Sequence[int], total: int,
                    step: int) -> None:
    """Tell each trial's reporter again what it heard before the checkpoint (the validation
    accuracy at each period end a run reports), so its record is that of one run."""
    for i, reporter in enumerate(reporters):
        if reporter is None:
            continue
        last = results[i].updates if i in results else step
        val = {c.step: c.acc for c in curves[i] if c.split == "val"}
        for end in period_ends:
            if end < total and end <= last and end in val:
                reporter(end, val[end])
