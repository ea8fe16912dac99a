"""Analysis: DataFrames of trials and curves from the database, and the charts drawn from them."""

from numsweep.analysis.charts import ChartError, bar_data, draw_bars, save
from numsweep.analysis.queries import load_curves, load_trials

__all__ = ["ChartError", "bar_data", "draw_bars", "load_curves", "load_trials", "save"]
