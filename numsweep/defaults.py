"""Defaults the command line shows in its options, kept in a module without imports so that
``numsweep --help`` does not load the database, the engine or the charts to show them."""

DEFAULT_URL = "sqlite:///numsweep.db"
"""The result database when neither ``--db`` nor ``NUMSWEEP_DB`` names one."""
DEFAULT_DB_WAIT = 300.0
"""Seconds a process waits for a database that went away before it gives up (--db-wait)."""
DEFAULT_GRACE = 60.0
"""Seconds without a heartbeat after which a RUNNING trial is taken for lost (its process was
killed or its machine went away) and runs again."""
DEVICES = ("cpu", "cuda")
"""What ``device`` may be: NumPy on the CPU, or CuPy on an NVIDIA GPU."""
GROUPINGS = ("slots", "batch")
"""How a stage's groups form (--grouping): slot groups refill a slot as soon as its trial
ends; batch groups start their trials together and end with the last."""
DEFAULT_GROUPING = "slots"
"""How a new stage's groups form unless --grouping says otherwise."""
