"""The two random streams of a run, each an explicit seeded generator.

The data stream (batch order, augmentation draws) is seeded by ``data_seed`` (``seed`` when
unset) and shared by a group, so every trial of a group sees the same batches. Each trial's
own stream (initialisation, dropout masks) is seeded by its ``seed``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from numsweep.engine.spec import TrialSpec


def resolve_data_seed(spec: TrialSpec) -> int:
    """The seed of the data stream: ``data_seed``, or ``seed`` when unset."""
    return spec.seed if spec.data_seed is None else spec.data_seed


def data_rng(data_seed: int) -> np.random.Generator:
    """The data stream's generator: independent of the trial stream's even for equal seeds."""
    return np.random.default_rng(np.random.SeedSequence(data_seed, spawn_key=(1,)))


def trial_rng(spec: TrialSpec) -> np.random.Generator:
    """The trial's own generator (initialisation, then dropout masks)."""
    return np.random.default_rng(spec.seed)


def device_seed(specs: Sequence[TrialSpec]) -> int:
    """The seed of a group's device generator (dropout masks on a GPU), from its trials'
    seeds: the same group draws the same masks."""
    seq = np.random.SeedSequence([s.seed for s in specs], spawn_key=(2,))
    return int(seq.generate_state(1, dtype=np.uint64)[0])
