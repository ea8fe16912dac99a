"""The NumPy training engine: networks, losses, schedules, optimizers, data and training."""

from numsweep.engine.data import DataError, Dataset, Split, load_dataset, make_split
from numsweep.engine.spec import CurvePoint, SpecError, TrialResult, TrialSpec, parameter_names
from numsweep.engine.train import train

__all__ = [
    "CurvePoint",
    "DataError",
    "Dataset",
    "SpecError",
    "Split",
    "TrialResult",
    "TrialSpec",
    "load_dataset",
    "make_split",
    "parameter_names",
    "train",
]
