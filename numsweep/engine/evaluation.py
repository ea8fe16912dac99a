"""Measuring networks on a whole set: every trial of a fused network (a lone trial, or a kept
network, as a group of one) in one forward pass per chunk."""

from __future__ import annotations

import numpy as np

from numsweep.engine.backend import array_module, to_numpy
from numsweep.engine.fused import FusedNet
from numsweep.engine.losses import LOSSES, l2_penalty
from numsweep.engine.runplan import eval_chunk


def evaluate_group(net: FusedNet, x: np.ndarray, y: np.ndarray, lams: np.ndarray,
                   eps: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(loss, cost, accuracy) of every trial over a whole set, each (K,) NumPy float64: one
    fused forward pass and one fused data loss (the training loss, summed in float64) per
    chunk, on the set's device; three (K,) arrays come back to the host."""
    xp = array_module(x)
    k = net.k
    chunk = eval_chunk(k)
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
