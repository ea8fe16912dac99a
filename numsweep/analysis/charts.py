"""Every chart's ``*_data`` and ``draw_*`` pair in one namespace (``charts.draw_bars``).

The charts live in one module per family (bars, curves, lambda_search, optimizers,
range_tests, importance, pareto); this module only gathers their names for callers that want
them all, such as the report.
"""

from numsweep.analysis.bars import bar_data, draw_bars
from numsweep.analysis.curves import curve_data, draw_curve_panels, draw_curves
from numsweep.analysis.figures import new_axes, save, use_file_backend
from numsweep.analysis.formatting import (
    CURVE_LABELS,
    CURVE_QUANTITIES,
    LOWER_IS_BETTER,
    METRIC_LABELS,
    PERCENT_METRICS,
    format_cell,
    format_value,
    metric_label,
)
from numsweep.analysis.importance import draw_importance, importance_data
from numsweep.analysis.lambda_search import draw_lambda, lambda_data
from numsweep.analysis.lineage import draw_lineage, lineage_points
from numsweep.analysis.optimizers import draw_optimizers, optimizer_data
from numsweep.analysis.pareto import (
    draw_pareto,
    objective_front_data,
    pareto_data,
    spec_objectives,
    spec_pick,
)
from numsweep.analysis.range_tests import draw_range_test, range_test_data
from numsweep.analysis.selection import (
    ChartError,
    best_trials,
    check_metric,
    config_labels,
    metric_columns,
    parameter_columns,
    per_stage_counts,
    select_trials,
    varying_parameters,
)

__all__ = [
    "CURVE_LABELS",
    "CURVE_QUANTITIES",
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "PERCENT_METRICS",
    "ChartError",
    "bar_data",
    "best_trials",
    "check_metric",
    "config_labels",
    "curve_data",
    "draw_bars",
    "draw_curve_panels",
    "draw_curves",
    "draw_importance",
    "draw_lambda",
    "draw_lineage",
    "draw_optimizers",
    "draw_pareto",
    "draw_range_test",
    "format_cell",
    "format_value",
    "importance_data",
    "lambda_data",
    "lineage_points",
    "metric_columns",
    "metric_label",
    "new_axes",
    "objective_front_data",
    "optimizer_data",
    "parameter_columns",
    "pareto_data",
    "per_stage_counts",
    "range_test_data",
    "save",
    "select_trials",
    "spec_objectives",
    "spec_pick",
    "use_file_backend",
    "varying_parameters",
]
