"""Data losses: softmax cross-entropy with label smoothing and the multiclass SVM loss.

Each loss is written for K trials at once, scores (K, N, C) of K networks against the
labels y (N,) they share, with per-trial label smoothing ``eps`` and gradient ``scale``
((K,) float64); a lone trial is K = 1:

- ``inplace(scores, y, eps, scale)``: the training step's loss; the scores are overwritten
  with scale_k times each trial's gradient and the K mean losses (K,) come back;
- ``sums(scores, y, eps)``: each trial's summed loss over a chunk, for the curves.

The ``reference`` of each loss (CS231n style: one score matrix (N, C) -> (mean loss,
dscores), allocating) is the one the gradient checks verify (``gradcheck.py``) and the one
the reference networks' ``loss`` uses; the trial-axis versions are tested against it.
:data:`LOSSES` holds all three of each loss by its ``loss`` parameter name.

The array functions come from the scores' module (NumPy, or CuPy on a GPU); the K losses
stay on the scores' device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from numsweep.engine.backend import array_module
from numsweep.engine.pertrial import hp_values, operand, trial_values


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


# ---------------------------------------------------------------- softmax cross-entropy

def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray,
                          eps: float = 0.0) -> tuple[float, np.ndarray]:
    """Reference: mean cross-entropy of softmax(scores) against label-smoothed targets.

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


def softmax_inplace(scores: Any, y: Any, eps: Any, scale: Any) -> Any:
    """:func:`softmax_cross_entropy` of K trials for the training step, without temporaries
    of (K, N, C): scores (K, N, C) is overwritten with scale_k (p - y_smooth_k) / N; eps and
    scale are (K,) float64. Returns the K mean losses (K,) float64 (on the host for K = 1,
    whose loss the 2-D form already brought back).

    The loss uses sum_j y_j log p_j = sum_j y_j s_j - log Z with the shifted scores s (their
    row maximum subtracted), so no log-probabilities are stored."""
    xp = array_module(scores)
    k, n, c = scores.shape
    if k == 1:
        return np.array([_softmax_rows_inplace(scores[0], y, float(eps[0]),
                                               float(scale[0]))])
    eps, scale = np.asarray(eps, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    flat = scores.reshape(k, n * c)
    picked_at = xp.arange(n) * c + y    # (row, label) as flat indices: one gather per trial
    scores -= scores.max(axis=2, keepdims=True)
    picked = flat[:, picked_at].sum(axis=1, dtype=np.float64)
    smooth = bool(np.any(eps))
    rest = scores.sum(axis=(1, 2), dtype=np.float64) - picked if smooth else 0.0
    xp.exp(scores, out=scores)
    z = scores.sum(axis=2, keepdims=True)
    log_z = xp.log(z).sum(axis=(1, 2), dtype=np.float64)
    off = eps / (c - 1)
    eps_x, off_x = (eps, off) if xp is np else (xp.asarray(eps), xp.asarray(off))
    loss = -((1 - eps_x) * picked + off_x * rest - log_z) / n
    z = xp.divide(trial_values(scale / n, scores.dtype, xp), z, out=z)
    scores *= z
    if smooth:
        scores -= trial_values(off * scale / n, scores.dtype, xp)
    at = trial_values((1 - eps - off) * scale / n, scores.dtype, xp)
    flat[:, picked_at] -= at if k == 1 else at[:, :, 0]
    return loss


def _softmax_rows_inplace(scores: Any, y: Any, eps: float, scale: float) -> float:
    """:func:`softmax_inplace` of a lone trial, on its (N, C) scores with Python floats:
    the same computation without the trial axis's per-call arrays and 3-D reductions
    (measured on (100, 10) float32 scores: 127 us per call here, 213 us in the trial-axis
    form, one busy machine's runs; the course ConvNet's whole update takes ~1 ms)."""
    xp = array_module(scores)
    n, c = scores.shape
    rows = xp.arange(n)
    scores -= scores.max(axis=1, keepdims=True)
    picked = float(scores[rows, y].sum(dtype=np.float64))
    total = float(scores.sum(dtype=np.float64)) if eps else 0.0
    xp.exp(scores, out=scores)
    z = scores.sum(axis=1, keepdims=True)
    log_z = float(xp.log(z).sum(dtype=np.float64))
    off = eps / (c - 1)
    loss = -((1 - eps) * picked + off * (total - picked) - log_z) / n
    z = (scale / n) / z
    scores *= z
    if eps:
        scores -= off * scale / n
    scores[rows, y] -= (1 - eps - off) * scale / n
    return loss


def softmax_sums(scores: Any, y: Any, eps: Any) -> Any:
    """Each trial's summed label-smoothed cross-entropy over a chunk, (K,) float64 on the
    scores' device: scores (K, N, C), y (N,), eps (K,) float64 there too."""
    xp = array_module(scores)
    _, n, c = scores.shape
    shifted = scores - scores.max(axis=2, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=2))                          # (K, N)
    picked = (shifted[:, xp.arange(n), y] - log_z).sum(axis=1, dtype=np.float64)
    every = (shifted.sum(axis=2) - c * log_z).sum(axis=1, dtype=np.float64)
    off = eps / (c - 1)
    return -((1 - eps - off) * picked + off * every)


# ---------------------------------------------------------------- multiclass SVM

def _no_smoothing(eps: Any) -> None:
    if np.any(np.asarray(eps)):
        raise ValueError(f"eps={eps} is label smoothing, which only the softmax loss uses")


def svm_loss(scores: np.ndarray, y: np.ndarray, eps: float = 0.0,
             delta: float = 1.0) -> tuple[float, np.ndarray]:
    """Reference: mean multiclass SVM (hinge) loss, sum over j != y of max(0, s_j - s_y +
    delta).

    scores (N, K), y (N,) integer labels -> (loss, dscores (N, K)). Label smoothing does not
    apply to this loss: ``eps`` must be 0 (it is accepted so every loss has one signature).
    """
    _no_smoothing(eps)
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


def _margins(scores: Any, y: Any, delta: float) -> Any:
    """max(0, s_j - s_y + delta) of K trials (K, N, C), 0 at the true class."""
    xp = array_module(scores)
    rows = xp.arange(scores.shape[1])
    margins = scores - scores[:, rows, y][:, :, None]
    margins += delta
    margins[:, rows, y] = 0
    xp.maximum(margins, 0, out=margins)
    return margins


def svm_inplace(scores: Any, y: Any, eps: Any, scale: Any, delta: float = 1.0) -> Any:
    """:func:`svm_loss` of K trials: scores (K, N, C) overwritten with scale_k times the
    gradient; returns the K mean losses (K,) float64. ``eps`` must be 0."""
    _no_smoothing(eps)
    xp = array_module(scores)
    n = scores.shape[1]
    rows = xp.arange(n)
    margins = _margins(scores, y, delta)
    loss = margins.sum(axis=(1, 2)).astype(np.float64) / n
    dscores = (margins > 0).astype(scores.dtype)
    dscores[:, rows, y] = -dscores.sum(axis=2)
    dscores /= n
    xp.multiply(dscores, trial_values(scale, scores.dtype, xp), out=scores)
    return loss


def svm_sums(scores: Any, y: Any, eps: Any, delta: float = 1.0) -> Any:
    """Each trial's summed hinge loss over a chunk, (K,) float64 on the scores' device."""
    return _margins(scores, y, delta).sum(axis=(1, 2), dtype=np.float64)


# ---------------------------------------------------------------- the L2 term

def l2_penalty(params: dict[str, Any], names: Sequence[str], *, trials: bool = False) -> Any:
    """sum ||W||^2 over the weights ``names`` (summed in float64): a float, or with
    ``trials`` (every parameter's leading axis the trial axis) each trial's, (K,) float64 on
    the parameters' device. The cost is the data loss plus lam times this."""
    k = len(params[names[0]]) if trials else 1
    total: Any = 0.0
    for name in names:
        p = params[name]
        total = total + (p * p).reshape(k, -1).sum(axis=1, dtype=np.float64)
    return total if trials else float(total[0])


def add_l2_gradient(grads: dict[str, Any], params: dict[str, Any], names: Sequence[str],
                    lam: Any) -> None:
    """The L2 term's gradient, grads[W] += 2 lam W, for the weights ``names``: ``lam`` a
    float, or per-trial values (:class:`pertrial.PerTrial`) for trial-stacked parameters."""
    if not (lam if isinstance(lam, float) else np.any(hp_values(lam))):
        return
    two_lam = 2 * lam
    for name in names:
        g = grads[name]
        g += operand(two_lam, g) * params[name]


# ---------------------------------------------------------------- the registry

@dataclass(frozen=True)
class Loss:
    """One data loss: its reference (N, C) form and its two trial-axis forms."""

    reference: Callable[..., tuple[float, np.ndarray]]
    inplace: Callable[..., Any]
    sums: Callable[..., Any]


LOSSES = {"softmax": Loss(softmax_cross_entropy, softmax_inplace, softmax_sums),
          "svm": Loss(svm_loss, svm_inplace, svm_sums)}
"""Data losses by their ``loss`` parameter name."""


def get_loss(name: str) -> Loss:
    """The loss called ``name`` (``softmax`` or ``svm``); a ValueError naming the known ones."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r} (known: {', '.join(LOSSES)})") from None
