"""Losses: each returns the mean loss over the batch and its gradient w.r.t. the scores."""

from __future__ import annotations

import numpy as np


def smooth_targets(y: np.ndarray, num_classes: int, eps: float, dtype: np.dtype) -> np.ndarray:
    """One-hot rows (N, K) with 1 - eps on the true class and eps / (K - 1) elsewhere."""
    targets = np.full((len(y), num_classes), eps / (num_classes - 1), dtype=dtype)
    targets[np.arange(len(y)), y] = 1 - eps
    return targets


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of scores (N, K), stable for large scores."""
    z = scores - scores.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray,
                          eps: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores) against label-smoothed targets.

    scores (N, K), y (N,) integer labels -> (loss, dscores (N, K)); dscores = (p - y_smooth) / N.
    """
    n, k = scores.shape
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    targets = smooth_targets(y, k, eps, scores.dtype)
    loss = float(-(targets * log_p).sum() / n)
    dscores = np.exp(log_p)
    dscores -= targets
    dscores /= n
    return loss, dscores
