"""The example notebook runs from top to bottom in a Jupyter kernel (nbclient)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).parents[1] / "examples" / "lambda-search.ipynb"


def test_example_notebook_runs_a_lambda_search_and_draws_its_charts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    root = str(Path(__file__).parents[1])
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(  # the kernel imports this checkout
        [root, *filter(None, [os.environ.get("PYTHONPATH")])]))
    started = time.monotonic()
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert time.monotonic() - started < 90
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # lambda + bars, curves, pareto
    progress = [o for o in outputs if "<progress" in o.get("data", {}).get("text/html", "")]
    assert progress  # the stage bars drawn as HTML in Jupyter
    text = "".join(o.get("text", "") for o in outputs)
    assert "report.html" in text
    assert "IProgress" not in text and "TqdmWarning" not in text  # no ipywidgets here
