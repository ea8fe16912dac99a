"""numsweep: hyperparameter sweeps for small NumPy image classifiers, with a result database."""

__version__ = "0.1.0"
