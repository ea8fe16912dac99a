"""A run's inputs: the split turned into a network's inputs (:class:`Prepared`), on the
run's device, and the mini-batches drawn from them (:class:`BatchDrawer`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from numsweep.engine.augment import Augmenter
from numsweep.engine.backend import device_copy
from numsweep.engine.batch_schedules import BatchSampler, BatchSchedule
from numsweep.engine.data import Split


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


def prepare_inputs(net: Any, split: Split, augment: Augmenter, eval_train: int, xp: Any, *,
                   prepared: Prepared | None = None, eval_sets: bool = True) -> Prepared:
    """The inputs of ``net`` (its ``prepare``) on ``xp``'s device: ``prepared`` copied there
    when given, else made from ``split`` (copied there once per process). With augmentation
    only the images of the training curve are prepared (batches are prepared as drawn);
    without ``eval_sets`` (a run that measures no curves) the validation and test sets are
    left out."""
    if prepared is not None:
        if xp is np:
            return prepared
        return Prepared(*(device_copy(getattr(prepared, f.name), xp)
                          for f in dataclasses.fields(prepared)))
    images = {name: device_copy(getattr(split, name), xp)
              for name in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")}
    train_part = images["x_train"][:eval_train] if augment.active else images["x_train"]
    if not eval_sets:
        return Prepared(net.prepare(train_part), images["y_train"], images["x_val"][:0],
                        images["y_val"][:0], images["x_test"][:0], images["y_test"][:0])
    return Prepared(net.prepare(train_part), images["y_train"], net.prepare(images["x_val"]),
                    images["y_val"], net.prepare(images["x_test"]), images["y_test"])


class BatchDrawer:
    """Each update's batch from the data stream (``sampler``): gathered into reused buffers
    (on a device by the indices the CPU draws), or, with augmentation, augmented from the
    split's images and prepared for the network."""

    def __init__(self, prepared: Prepared, split: Split, augment: Augmenter, net: Any,
                 sampler: BatchSampler, batches: BatchSchedule, b_max: int, xp: Any) -> None:
        self.x, self.y = prepared.x_train, prepared.y_train
        self.images = device_copy(split.x_train, xp) if augment.active else None
        self.augment, self.net, self.sampler, self.batches, self.xp = (
            augment, net, sampler, batches, xp)
        self.x_buf = (xp.empty((b_max, *self.x.shape[1:]), self.x.dtype)
                      if self.images is None else None)
        self.y_buf = xp.empty(b_max, self.y.dtype)

    def skip(self, steps: range) -> None:
        """Draw the batches of updates ``steps`` from the data stream without making them
        (indices and augmentation draws: the stream then stands where those updates leave
        it)."""
        for step in steps:
            idx = self.sampler.next(self.batches.size(step))
            if self.images is not None:
                self.augment.skip(len(idx), self.images.shape[1:], self.sampler.rng)

    def draw(self, step: int) -> tuple[Any, Any]:
        """(inputs, labels) of update ``step``'s batch (buffers: valid until the next)."""
        xp = self.xp
        idx: Any = self.sampler.next(self.batches.size(step))
        yb = self.y_buf[:len(idx)]
        if xp is np:
            np.take(self.y, idx, out=yb, mode="clip")
        else:  # the host's indices (the data stream) gather the batch on the device
            idx = xp.asarray(idx)
            xp.take(self.y, idx, out=yb)
        if self.x_buf is None:
            assert self.images is not None
            xa, yb = self.augment(self.images[idx], yb, self.sampler.rng)
            return self.net.prepare(xa), yb
        xb = self.x_buf[:len(idx)]
        if xp is np:
            np.take(self.x, idx, axis=0, out=xb, mode="clip")
        else:
            xp.take(self.x, idx, axis=0, out=xb)
        return xb, yb
