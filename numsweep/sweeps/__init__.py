"""Sweeps: TOML specs, Optuna samplers, and stages run in parallel worker processes."""

from numsweep.sweeps.runner import (
    Rerun,
    StageSummary,
    SweepInterrupted,
    TrialEvent,
    create_sweep,
    narrow_space,
    rerun_trial,
    resume_sweep,
    run_single,
    run_sweep,
    trial_seed,
)
from numsweep.sweeps.spec import (
    SweepSpec,
    SweepSpecError,
    load_spec,
    parse_spec,
    preset_names,
    resolve_spec_path,
)

__all__ = [
    "Rerun",
    "StageSummary",
    "SweepInterrupted",
    "SweepSpec",
    "SweepSpecError",
    "TrialEvent",
    "create_sweep",
    "load_spec",
    "narrow_space",
    "parse_spec",
    "preset_names",
    "rerun_trial",
    "resolve_spec_path",
    "resume_sweep",
    "run_single",
    "run_sweep",
    "trial_seed",
]
