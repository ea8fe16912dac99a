"""Training one spec: a lone trial is a group of one (:func:`group.train_group`)."""

from __future__ import annotations

from pathlib import Path

from numsweep.engine.data import Dataset, Split
from numsweep.engine.group import PointWatcher, Reporter, train_group
from numsweep.engine.inputs import Prepared
from numsweep.engine.spec import TrialResult, TrialSpec


def train(spec: TrialSpec, data: Dataset | Split, *, reporter: Reporter | None = None,
          prepared: Prepared | None = None, checkpoint: str | Path | None = None,
          weights: str | Path | None = None,
          on_points: PointWatcher | None = None) -> TrialResult:
    """Train ``spec`` on ``data`` and measure it: ``train_group([spec], ...)[0]`` (see
    :func:`group.train_group` for the curves, the reporter, the checkpoint, the weights
    file and the point watcher)."""
    return train_group([spec], data, reporters=[reporter], prepared=prepared,
                       checkpoint=checkpoint, weights=[weights], on_points=[on_points])[0]
