"""Export stored trials to other tools: MLflow runs and TensorBoard event files.

Reads the result database only (through :mod:`numsweep.analysis.queries`). Both exports are
incremental and idempotent: what is already there is left alone, a trial is written once it
has finished (and again if it finished anew, say after a resume), and an export cut short is
completed by the next call. MLflow and TensorBoard are optional packages, imported on use
(``pip install 'numsweep[mlflow]'``, ``'numsweep[tensorboard]'``).
"""

from numsweep.export.common import ExportError, ExportSummary
from numsweep.export.mlflow_runs import export_mlflow
from numsweep.export.tensorboard_events import export_tensorboard

__all__ = ["ExportError", "ExportSummary", "export_mlflow", "export_tensorboard"]
