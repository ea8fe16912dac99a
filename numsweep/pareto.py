"""Objectives, Pareto fronts of points scored on several objectives, and the point chosen on
a front.

Shared by the sweeps (narrowing, the ``best`` stage, multi-objective pruning) and the
analysis (the report's front): plain NumPy on an (n, m) array of values, with one
``maximize`` flag per column. A point dominates another when it is at least as good in every
objective and better in one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COST_METRIC = "cost_seconds"
"""The stored metric the time objective ``train_seconds`` is scored on."""


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str = "maximize"  # or "minimize"

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    @property
    def column(self) -> str:
        """The stored metric the objective's value is read from."""
        return COST_METRIC if self.metric == "train_seconds" else self.metric

    @property
    def text(self) -> str:
        return f"{self.metric}:{'max' if self.maximize else 'min'}"

    @classmethod
    def from_text(cls, text: str) -> Objective:
        """An objective as :attr:`text` writes it (``val_acc:max``), as specs are stored."""
        metric, _, way = text.partition(":")
        return cls(metric, "minimize" if way == "min" else "maximize")


PICKS = ("accuracy", "knee")
"""How a point of a front is chosen: ``accuracy``, the most accurate point (the best in the
first column given to :func:`choose`; :func:`choose_point` puts the accuracy first);
``knee``, the point nearest the ideal point (every objective at its best over the front)
once each objective is scaled to [0, 1] over the front."""


def _gains(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """The values with every column turned into larger-is-better."""
    points = np.asarray(values, dtype=float).reshape(len(values), len(maximize))
    return points * np.where(np.asarray(maximize, dtype=bool), 1.0, -1.0)


def dominated_by(values: np.ndarray, maximize: Sequence[bool], point: Sequence[float]
                 ) -> np.ndarray:
    """For each row of ``values``, whether it dominates ``point``."""
    gains = _gains(values, maximize)
    own = _gains(np.asarray([point], dtype=float), maximize)[0]
    return (gains >= own).all(axis=1) & (gains > own).any(axis=1)


def front_mask(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Which rows no other row dominates (equal rows are all on the front)."""
    gains = _gains(values, maximize)
    n = len(gains)
    on = np.ones(n, dtype=bool)
    for i in range(n):
        beats = (gains >= gains[i]).all(axis=1) & (gains > gains[i]).any(axis=1)
        on[i] = not beats.any()
    return on


def pareto_ranks(values: np.ndarray, maximize: Sequence[bool]) -> np.ndarray:
    """Non-dominated sorting: 0 for the front, 1 for the front of the rest, and so on."""
    gains = _gains(values, maximize)
    ranks = np.full(len(gains), -1, dtype=int)
    rank = 0
    while (ranks < 0).any():
        left = np.flatnonzero(ranks < 0)
        on = front_mask(gains[left], [True] * gains.shape[1])
        ranks[left[on]] = rank
        rank += 1
    return ranks


def choose(values: np.ndarray, maximize: Sequence[bool], pick: str = "accuracy") -> int:
    """The row chosen on the front of ``values`` (see :data:`PICKS`); ties go to the first
    row."""
    if pick not in PICKS:
        raise ValueError(f"pick={pick!r} must be one of {', '.join(PICKS)}")
    gains = _gains(values, maximize)
    front = np.flatnonzero(front_mask(gains, [True] * gains.shape[1]))
    if pick == "accuracy":
        best = gains[front, 0].max()
        return int(front[np.flatnonzero(gains[front, 0] == best)[0]])
    span = gains[front].max(axis=0) - gains[front].min(axis=0)
    scaled = (gains[front] - gains[front].min(axis=0)) / np.where(span > 0, span, 1.0)
    distance = np.sqrt(((1.0 - scaled) ** 2).sum(axis=1))
    return int(front[int(np.argmin(distance))])


def accuracy_index(objectives: Sequence[Objective]) -> int:
    """Which objective ``pick = "accuracy"`` takes the best of: the first accuracy, else the
    validation loss, else the first objective."""
    for names in (("val_acc", "test_acc", "train_acc"), ("val_loss",)):
        for i, o in enumerate(objectives):
            if o.metric in names:
                return i
    return 0


def choose_point(values: np.ndarray, objectives: Sequence[Objective],
                 pick: str = "accuracy") -> int:
    """The row of ``values`` (one column per objective) a ``best`` stage retrains: with
    ``pick = "accuracy"`` the most accurate point of the front (:func:`accuracy_index`),
    with ``knee`` the knee (see :data:`PICKS`)."""
    first = accuracy_index(objectives)
    order = [first] + [i for i in range(len(objectives)) if i != first]
    table = np.asarray(values, dtype=float).reshape(len(values), len(objectives))[:, order]
    return choose(table, [objectives[i].maximize for i in order], pick)
