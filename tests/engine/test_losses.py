"""The trial-axis losses (``inplace`` for training, ``sums`` for the curves) against each
loss's reference (one (N, C) score matrix, gradient-checked in test_gradients.py), for K = 1
and K = 3 trials with per-trial label smoothing and gradient scales."""

from __future__ import annotations

import numpy as np
import pytest

from numsweep.engine.losses import LOSSES, get_loss

EPS = {"softmax": [0.0, 0.1, 0.25], "svm": [0.0, 0.0, 0.0]}


def batch(k: int, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.normal(scale=5, size=(k, 7, 4)).astype(dtype), rng.integers(0, 4, size=7)


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("name", list(LOSSES))
def test_the_trial_axis_forms_match_the_reference(name: str, k: int) -> None:
    loss = LOSSES[name]
    scores, y = batch(k, np.float64)
    eps = np.array(EPS[name][:k])
    scale = np.array([0.5, 1.0, 0.125][:k])
    sums = loss.sums(scores, y, eps)
    work = scores.copy()
    means = loss.inplace(work, y, eps, scale)
    assert means.shape == sums.shape == (k,)
    for j in range(k):
        ref, dscores = loss.reference(scores[j], y, float(eps[j]))
        assert means[j] == pytest.approx(ref, rel=1e-12)
        assert sums[j] == pytest.approx(ref * len(y), rel=1e-12)
        np.testing.assert_allclose(work[j], scale[j] * dscores, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", list(LOSSES))
def test_float32_scores_keep_their_dtype_and_round_alike(name: str) -> None:
    loss = LOSSES[name]
    scores, y = batch(3, np.float32)
    eps = np.array(EPS[name])
    work = scores.copy()
    means = loss.inplace(work, y, eps, np.ones(3))
    assert work.dtype == np.float32 and means.dtype == np.float64
    for j in range(3):
        ref, dscores = loss.reference(scores[j], y, float(eps[j]))
        assert means[j] == pytest.approx(ref, rel=1e-5)
        np.testing.assert_allclose(work[j], dscores, rtol=1e-5, atol=1e-7)


def test_svm_refuses_label_smoothing_in_every_form() -> None:
    scores, y = batch(2, np.float64)
    with pytest.raises(ValueError, match="only the softmax loss"):
        LOSSES["svm"].inplace(scores, y, np.array([0.0, 0.1]), np.ones(2))
    with pytest.raises(ValueError, match="only the softmax loss"):
        LOSSES["svm"].reference(scores[0], y, 0.1)


def test_an_unknown_loss_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown loss 'l1' \\(known: softmax, svm\\)"):
        get_loss("l1")
