"""Sweeps: TOML specs, Optuna samplers, and stages run in parallel worker processes."""

from numsweep.sweeps.runner import StageSummary, TrialEvent, run_single, run_sweep, trial_seed
from numsweep.sweeps.spec import SweepSpec, SweepSpecError, load_spec, parse_spec

__all__ = [
    "StageSummary",
    "SweepSpec",
    "SweepSpecError",
    "TrialEvent",
    "load_spec",
    "parse_spec",
    "run_single",
    "run_sweep",
    "trial_seed",
]
