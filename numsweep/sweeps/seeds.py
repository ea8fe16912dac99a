"""Every seed of a sweep, drawn from the sweep seed and a place, never from worker timing:
a trial's, its stage's data stream's, and a stage's sampler's."""

from __future__ import annotations

import zlib

import numpy as np

DATA_SEED_NUMBER = 2**31 - 2
"""The place :func:`trial_seed` draws a stage's data seed from (no trial has it)."""
SAMPLER_SEED_NUMBER = 2**31 - 1
"""The place :func:`trial_seed` draws a stage's sampler seed from (no trial has it)."""


def trial_seed(sweep_seed: int, stage_index: int, number: int, replicate: int = 0) -> int:
    """A trial's seed depends only on the sweep seed and its place, never on worker timing."""
    entropy = [sweep_seed, stage_index, number] + ([replicate] if replicate else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def stage_data_seed(sweep_seed: int, stage_index: int, replicate: int = 0) -> int:
    """The seed of the data stream every trial of a stage shares (one per seed replicate):
    the same batches grouped or not, and paired comparisons inside the stage."""
    return trial_seed(sweep_seed, stage_index, DATA_SEED_NUMBER, replicate)


def sampler_seed(sweep_seed: int, stage_index: int, resume: bool, process: str) -> int:
    """The seed of the stage's sampler: the sweep's own for ``sweep run``; for each resume
    or worker process another one (drawn from the sweep seed and the process's name: host
    and pid), so that processes sharing a stage do not propose the same values."""
    if not resume:
        return trial_seed(sweep_seed, stage_index, SAMPLER_SEED_NUMBER)
    return trial_seed(sweep_seed, stage_index, SAMPLER_SEED_NUMBER,
                      zlib.crc32(process.encode()))
