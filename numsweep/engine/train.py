"""Training: one TrialSpec and a dataset in, one TrialResult out.

The MLP and the patchify ConvNet train through the fused path of ``group.py`` as a group of
one (one training path for lone and grouped trials); the loop here trains the other models
on the reference layers.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from numsweep.engine.augment import Augmenter
from numsweep.engine.batch_schedules import BatchSampler, largest_batch, make_batch_schedule
from numsweep.engine.data import Dataset, Split, make_split
from numsweep.engine.losses import l2_penalty
from numsweep.engine.networks import MLP, Network, PatchConvNet, param_count
from numsweep.engine.optimizers import make_optimizer
from numsweep.engine.schedules import CYCLIC, make_schedule
from numsweep.engine.spec import CurvePoint, TrialResult, TrialSpec

Reporter = Callable[[int, float], bool]
"""Called with (update step, validation accuracy) at the end of every period (a cycle, or an
epoch for the schedules without cycles); returning True stops training (a pruned trial)."""

PointWatcher = Callable[[tuple[CurvePoint, ...], int], None]
"""Called with the curve points a trial has just measured (one per split, at one update
step) and its planned number of updates, as they are measured, so that a running trial can be
shown; a run resumed from a checkpoint first passes the points restored from it (all at
once). Called at curve points only: training pays nothing between them."""

EVAL_CHUNK = 1000
"""Images per forward pass when measuring a set: small enough that a chunk's activations stay
in the cache, large enough that the products are BLAS-sized."""


@dataclass(frozen=True)
class Prepared:
    """A split turned into a network's inputs, ready to train on.

    ``y_train`` holds every training label; ``x_train`` may hold only the first images (at
    least ``eval_train``, for the training curve) when the run augments, since augmented
    batches are prepared from the split's images as they are drawn.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def resolve_n_s(spec: TrialSpec, n_train: int) -> int:
    return spec.n_s if spec.n_s is not None else 2 * (n_train // spec.batch_size)


def build_network(spec: TrialSpec, image_shape: tuple[int, int, int], num_classes: int,
                  rng: np.random.Generator) -> Network:
    """The network of ``spec.model``; a ValueError when its shapes do not fit the images."""
    from numsweep.engine.networks import ConvNet3

    common = dict(rng=rng, init=spec.init, dropout=spec.dropout,
                  dropout_input=spec.dropout_input, activation=spec.activation,
                  leaky_slope=spec.leaky_slope, loss=spec.loss, dtype=np.dtype(spec.dtype))
    if spec.model == "mlp":
        return MLP(int(np.prod(image_shape)), spec.hidden, num_classes, **common)
    if spec.model == "convnet3":
        return ConvNet3(image_shape, spec.nf, spec.filter_size, spec.nh, num_classes,
                        stride=spec.conv_stride, pad=spec.conv_pad, **common)
    return PatchConvNet(image_shape, spec.f, spec.nf, spec.nh, num_classes, **common)


def evaluate(net: Network, x: np.ndarray, y: np.ndarray, lam: float,
             eps: float) -> tuple[float, float, float]:
    """(loss, cost, accuracy) over a whole set, in chunks to bound memory.

    The loss is the network's own data loss (softmax cross-entropy with label smoothing
    ``eps``, or the SVM loss); the cost adds lam times the sum of squared weights.
    """
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), EVAL_CHUNK):
        scores = net.scores(x[start:start + EVAL_CHUNK])
        yb = y[start:start + EVAL_CHUNK]
        loss, _ = net.data_loss(scores, yb, eps)
        loss_sum += loss * len(yb)
        correct += int((scores.argmax(axis=1) == yb).sum())
    loss = loss_sum / len(x)
    cost = loss + lam * l2_penalty(net.params, net.weight_names)
    return loss, cost, correct / len(x)


def curve_steps(ends: tuple[int, ...], points: int) -> tuple[int, ...]:
    """The update steps curves are measured at: ``points`` evenly spaced in each period
    (cycle or epoch) whose ends are ``ends``, the last at the period's end."""
    steps: set[int] = set()
    start = 0
    for end in ends:
        steps.update(start + round(k * (end - start) / points) for k in range(1, points + 1))
        start = end
    steps.discard(0)
    return tuple(sorted(steps))


def check_batch_sizes(spec: TrialSpec, n: int) -> None:
    if largest_batch(spec) > n:
        name = "batch_size" if spec.batch_schedule == "constant" else "b_max"
        raise ValueError(f"{name}={largest_batch(spec)} exceeds n_train={n}")


def train(spec: TrialSpec, data: Dataset | Split, *, reporter: Reporter | None = None,
          prepared: Prepared | None = None, checkpoint: str | Path | None = None,
          weights: str | Path | None = None,
          on_points: PointWatcher | None = None) -> TrialResult:
    """Train ``spec`` on ``data`` and measure it.

    Curves hold the loss, cost and accuracy on the first ``eval_train`` training images and
    on the validation set, ``curve_points`` times per period plus once before training; a
    period is a cycle of the cyclic schedules (``cyclic``, ``exp_range``) and an epoch of
    ``n_train // batch_size`` updates for the others. ``reporter`` is called at the end of
    every period. With augmentation on, each batch is augmented and then turned into the
    network's input (``net.prepare``); without, the inputs are prepared once up front.

    The MLP and the patchify ConvNet train as a group of one (:func:`group.train_group`,
    the fused path, which costs a lone trial no speed); other models (``convnet3``) train
    on the reference layers, their ``loss`` and the optimizer's generic step.

    ``checkpoint`` and ``weights`` are files as :func:`group.train_group` takes them: the
    run's checkpoint (resumed from when it is this run's) and where its network is saved.
    ``on_points`` hears each curve point as it is measured (:data:`PointWatcher`).
    """
    from numsweep.engine.checkpoint import CheckpointWriter, keep_weights, load_state, state_digest
    from numsweep.engine.group import (
        data_rng,
        groupable,
        replay_reports,
        resolve_data_seed,
        train_group,
        trial_rng,
    )

    if groupable(spec):
        return train_group([spec], data, reporters=[reporter], prepared=prepared,
                           checkpoint=checkpoint, weights=[weights], on_points=[on_points])[0]
    split = data if isinstance(data, Split) else make_split(data, spec.n_train, spec.n_val,
                                                             np.dtype(spec.dtype))
    rng = trial_rng(spec)
    net = build_network(spec, split.x_train.shape[1:], split.num_classes, rng)
    augment = Augmenter.from_spec(spec)
    if prepared is None:
        # With augmentation the batches are prepared as they are drawn: of the training set
        # only the images of the training curve are needed prepared.
        train_part = split.x_train[: spec.eval_train] if augment.active else split.x_train
        prepared = Prepared(net.prepare(train_part), split.y_train, net.prepare(split.x_val),
                            split.y_val, net.prepare(split.x_test), split.y_test)
    x_tr, y_tr = prepared.x_train, prepared.y_train
    n = len(y_tr)
    check_batch_sizes(spec, n)
    n_s = resolve_n_s(spec, n)
    if n_s < 1:
        raise ValueError(f"n_s resolves to {n_s}: n_train={n} is smaller than 2 batches")
    plan = make_schedule(spec, n_s, n // spec.batch_size)
    schedule, total = plan.schedule, plan.total
    batches = make_batch_schedule(spec, n_s, total)
    optimizer = make_optimizer(spec)
    images = split.x_train if augment.active else None
    checkpoints = set(curve_steps(plan.ends, spec.curve_points))
    period_ends = set(plan.ends)
    x_ev, y_ev = x_tr[: spec.eval_train], y_tr[: spec.eval_train]
    digest = state_digest([spec], y_tr, split.x_train.shape[1:], split.num_classes)
    saved = load_state(checkpoint, digest)
    writer = CheckpointWriter(checkpoint, digest) if checkpoint is not None else None

    curves: list[CurvePoint] = []
    eval_seconds = 0.0

    def record(step: int, lr: float) -> float:
        nonlocal eval_seconds
        t0 = time.perf_counter()
        for split_name, x, y in (("train", x_ev, y_ev), ("val", prepared.x_val, prepared.y_val)):
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's inf/NaN
                loss, cost, acc = evaluate(net, x, y, spec.lam, spec.eps)
            curves.append(CurvePoint(step, split_name, loss, cost, acc, lr))
        eval_seconds += time.perf_counter() - t0
        if on_points is not None:
            on_points(tuple(curves[-2:]), total)
        return curves[-1].acc

    sampler = BatchSampler(n, data_rng(resolve_data_seed(spec)))
    train_seconds = 0.0
    diverged = stopped = False
    message = ""
    step = 0
    if saved is None:
        record(0, schedule.lr(0))
    else:
        step, curves = saved.step, saved.curves[0]
        train_seconds, eval_seconds = saved.train_seconds[0], saved.eval_seconds[0]
        _restore_lone(saved, net, optimizer, rng, sampler)
        replay_reports([reporter], [curves], {}, sorted(period_ends), total, step)
        if on_points is not None and curves:
            on_points(tuple(curves), total)
    while step < total:
        t0 = time.perf_counter()
        idx = sampler.next(batches.size(step))
        lr = schedule.lr(step)
        yb = y_tr[idx]
        if images is None:
            xb = x_tr[idx]
        else:
            xa, yb = augment(images[idx], yb, sampler.rng)
            xb = net.prepare(xa)
        with np.errstate(over="ignore", invalid="ignore"):  # divergence is checked just below
            loss, _, grads = net.loss(xb, yb, lam=spec.lam, eps=spec.eps, rng=rng)
        if not np.isfinite(loss):
            train_seconds += time.perf_counter() - t0
            diverged = True
            message = f"loss diverged ({loss}) at update {step} with learning rate {lr:.3g}"
            break
        optimizer.step(net.params, grads, lr)
        step += 1
        train_seconds += time.perf_counter() - t0
        if step in checkpoints:
            val_acc = record(step, schedule.lr(step))
            if (step in period_ends and reporter is not None and step < total
                    and reporter(step, val_acc)):
                stopped = True
                message = f"stopped by the pruner at update {step}"
                break
            if writer is not None:
                writer.save(partial(_lone_state, step, net, optimizer, rng, sampler, curves,
                                    train_seconds, eval_seconds))

    if writer is not None:
        writer.close()
    if diverged:
        val_acc = test_acc = train_acc = float("nan")
    else:
        t0 = time.perf_counter()
        _, _, test_acc = evaluate(net, prepared.x_test, prepared.y_test, spec.lam, spec.eps)
        eval_seconds += time.perf_counter() - t0
        train_acc = next(c.acc for c in reversed(curves) if c.split == "train")
        val_acc = next(c.acc for c in reversed(curves) if c.split == "val")
        if weights is not None:
            unkept = keep_weights(weights, spec, net.params, test_acc=test_acc,
                                  val_acc=val_acc, updates=step,
                                  image_shape=list(split.x_train.shape[1:]))
            message = "; ".join(m for m in (message, unkept) if m)
    if saved is not None:
        message = "; ".join(m for m in (message, f"resumed from its checkpoint at update "
                                                 f"{saved.step}") if m)
    resolved = dataclasses.replace(
        spec, n_s=n_s, n_train=n, data_seed=resolve_data_seed(spec),
        n_updates=None if spec.n_updates is None and spec.schedule in CYCLIC else total)
    return TrialResult(
        spec=resolved, val_acc=val_acc, test_acc=test_acc, train_acc=train_acc,
        train_seconds=train_seconds, eval_seconds=eval_seconds, updates=step,
        param_count=param_count(net), epochs=sampler.epochs, diverged=diverged,
        stopped=stopped, message=message, curves=tuple(curves),
    )


def _lone_state(step: int, net: Network, optimizer: Any, rng: np.random.Generator,
                sampler: BatchSampler, curves: list[CurvePoint], train_seconds: float,
                eval_seconds: float) -> Any:
    """The reference loop's state as a group of one's (``checkpoint.GroupState``)."""
    from numsweep.engine.checkpoint import SCRATCH_SLOTS, GroupState

    return GroupState(
        step=step, active=[0], params=[{k: v.copy() for k, v in net.params.items()}],
        slots=[{name: {slot: a.copy() for slot, a in named.items() if slot not in SCRATCH_SLOTS}
                for name, named in optimizer.state.items()}],
        opt_t=getattr(optimizer, "t", None), trial_rngs=[rng.bit_generator.state],
        data_rng=sampler.rng.bit_generator.state, sampler_order=sampler.order.copy(),
        sampler_cursor=sampler.cursor, sampler_drawn=sampler.drawn, curves=[list(curves)],
        train_seconds=[train_seconds], eval_seconds=[eval_seconds])


def _restore_lone(state: Any, net: Network, optimizer: Any, rng: np.random.Generator,
                  sampler: BatchSampler) -> None:
    """Put a saved state (a group of one's) into the reference loop's objects."""
    for name, p in net.params.items():
        p[...] = state.params[0][name]
    optimizer.state = {name: {slot: a.astype(net.params[name].dtype, copy=True)
                              for slot, a in named.items()}
                       for name, named in state.slots[0].items()}
    if state.opt_t is not None:
        optimizer.t = state.opt_t
    rng.bit_generator.state = state.trial_rngs[0]
    sampler.rng.bit_generator.state = state.data_rng
    sampler.order = np.asarray(state.sampler_order)
    sampler.cursor, sampler.drawn = state.sampler_cursor, state.sampler_drawn
