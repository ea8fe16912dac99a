"""Measuring one lone network on a whole set (a group measures its trials with
:func:`group.evaluate_group`)."""

from __future__ import annotations

import numpy as np

from numsweep.engine.losses import l2_penalty
from numsweep.engine.networks import Network
from numsweep.engine.runplan import EVAL_CHUNK


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
