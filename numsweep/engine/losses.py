"""Losses: each returns the mean loss over the batch and its gradient w.r.t. the scores.

The array functions come from the scores' module (NumPy, or CuPy on a GPU); the mean loss
comes back as a Python float.
"""

from __future__ import annotations

import numpy as np

from numsweep.engine.backend import array_module


def smooth_targets(y: np.ndarray, num_classes: int, eps: float, dtype: np.dtype) -> np.ndarray:
    """One-hot rows (N, K) with 1 - eps on the true class and eps / (K - 1) elsewhere."""
    xp = array_module(y)
    targets = xp.full((len(y), num_classes), eps / (num_classes - 1), dtype=dtype)
    targets[xp.arange(len(y)), y] = 1 - eps
    return targets


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax of scores (N, K), stable for large scores."""
    z = scores - scores.max(axis=1, keepdims=True)
    array_module(z).exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray,
                          eps: float = 0.0) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(scores) against label-smoothed targets.

    scores (N, K), y (N,) integer labels -> (loss, dscores (N, K)); dscores = (p - y_smooth) / N.
    """
    xp = array_module(scores)
    n, k = scores.shape
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_z
    targets = smooth_targets(y, k, eps, scores.dtype)
    loss = float(-(targets * log_p).sum() / n)
    dscores = xp.exp(log_p)
    dscores -= targets
    dscores /= n
    return loss, dscores


def softmax_cross_entropy_inplace(scores: np.ndarray, y: np.ndarray, eps: float,
                                  scale: float = 1.0) -> float:
    """:func:`softmax_cross_entropy` for the training step, without temporaries of (N, K).

    scores (N, K) is overwritten with ``scale`` times its gradient, scale (p - y_smooth) / N;
    returns the mean loss. The loss uses sum_j y_j log p_j = sum_j y_j s_j - log Z with the
    shifted scores s (their row maximum subtracted), so no log-probabilities are stored.
    """
    xp = array_module(scores)
    n, k = scores.shape
    rows = xp.arange(n)
    scores -= scores.max(axis=1, keepdims=True)
    picked = float(scores[rows, y].sum(dtype=np.float64))
    total = float(scores.sum(dtype=np.float64)) if eps else 0.0
    xp.exp(scores, out=scores)
    z = scores.sum(axis=1, keepdims=True)
    log_z = float(xp.log(z).sum(dtype=np.float64))
    off = eps / (k - 1)
    loss = -((1 - eps) * picked + off * (total - picked) - log_z) / n
    z = (scale / n) / z
    scores *= z
    if eps:
        scores -= off * scale / n
    scores[rows, y] -= (1 - eps - off) * scale / n
    return loss


def svm_loss(scores: np.ndarray, y: np.ndarray, eps: float = 0.0,
             delta: float = 1.0) -> tuple[float, np.ndarray]:
    """Mean multiclass SVM (hinge) loss: sum over j != y of max(0, s_j - s_y + delta).

    scores (N, K), y (N,) integer labels -> (loss, dscores (N, K)). Label smoothing does not
    apply to this loss: ``eps`` must be 0 (it is accepted so every loss has one signature).
    """
    if eps:
        raise ValueError(f"eps={eps} is label smoothing, which only the softmax loss uses")
    xp = array_module(scores)
    n = len(y)
    rows = xp.arange(n)
    margins = scores - scores[rows, y][:, None]
    margins += delta
    margins[rows, y] = 0
    xp.maximum(margins, 0, out=margins)
    loss = float(margins.sum() / n)
    dscores = (margins > 0).astype(scores.dtype)
    dscores[rows, y] = -dscores.sum(axis=1)
    dscores /= n
    return loss, dscores


LOSSES = {"softmax": softmax_cross_entropy, "svm": svm_loss}
"""Data losses by their ``loss`` parameter name; each is ``(scores, y, eps) -> (loss, dscores)``."""


def data_loss(name: str, scores: np.ndarray, y: np.ndarray,
              eps: float = 0.0) -> tuple[float, np.ndarray]:
    """The loss called ``name`` (``softmax`` or ``svm``) of scores (N, K) against labels y (N,)."""
    try:
        fn = LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})") from None
    return fn(scores, y, eps)
