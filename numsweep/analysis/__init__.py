"""Analysis: DataFrames of trials and curves from the database, and the charts drawn from them.

Modules:

- ``queries``: :func:`load_trials`, :func:`load_curves`, :func:`load_stages`,
  :func:`load_slot_groups` (the database as pandas DataFrames); ``find_trials`` and its
  ``--where`` conditions (``parse_where``).
- ``formatting``: how values, metrics and quantities are written (table cells, axis labels);
  used by the charts, the report and the CLI.
- ``tables``: trial tables that fit a terminal width (columns dropped by priority).
- ``selection``: parameter and result columns, configuration labels, trials by id or best.
- ``figures``: a new Axes, the file-only backend, saving a figure.
- ``bars``, ``curves``, ``lambda_search``, ``optimizers``, ``range_tests``, ``importance``,
  ``pareto``: one chart family each, a ``*_data`` function that collects what to draw and a
  ``draw_*`` function that draws it onto a given (or new) matplotlib Axes.
- ``charts``: every chart's pair gathered in one namespace.
- ``plots``: the data of each ``numsweep plot`` chart, collected from the database.
- ``filters``: a kept network's first-layer filters drawn as images.
- ``report``: a sweep's HTML and Markdown report.

Nothing here changes global state at import (no matplotlib backend, no log level).
"""

from numsweep.analysis.bars import bar_data, draw_bars
from numsweep.analysis.curves import curve_data, draw_curve_panels, draw_curves
from numsweep.analysis.figures import save
from numsweep.analysis.importance import draw_importance, importance_data
from numsweep.analysis.lambda_search import draw_lambda, lambda_data
from numsweep.analysis.optimizers import draw_optimizers, optimizer_data
from numsweep.analysis.pareto import draw_pareto, pareto_data
from numsweep.analysis.queries import load_curves, load_slot_groups, load_stages, load_trials
from numsweep.analysis.range_tests import draw_range_test, range_test_data
from numsweep.analysis.selection import ChartError

__all__ = [
    "ChartError",
    "bar_data",
    "curve_data",
    "draw_bars",
    "draw_curve_panels",
    "draw_curves",
    "draw_importance",
    "draw_lambda",
    "draw_optimizers",
    "draw_pareto",
    "draw_range_test",
    "importance_data",
    "lambda_data",
    "load_curves",
    "load_slot_groups",
    "load_stages",
    "load_trials",
    "optimizer_data",
    "pareto_data",
    "range_test_data",
    "save",
]
