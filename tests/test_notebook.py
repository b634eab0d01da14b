"""The Pareto notebook runs headless against a real study and shows its plots."""

from __future__ import annotations

import base64
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest
from PIL import Image

# Real YOLOv5 trials, worker processes or a PostgreSQL server: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
kernelspec = pytest.importorskip("jupyter_client.kernelspec")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PLOTLY_MIME = "application/vnd.plotly.v1+json"


def _python3_kernel_runs_this_python() -> bool:
    """The ``python3`` kernelspec starts ``python`` (jupyter_client swaps in ``sys.executable``) or us."""
    try:
        argv = kernelspec.get_kernel_spec("python3").argv
    except kernelspec.NoSuchKernel:
        return False
    return argv[0] in (
        "python",
        "python3",
        f"python{sys.version_info[0]}.{sys.version_info[1]}",
        sys.executable,
    )


def _make_notebook() -> ModuleType:
    sys.path.insert(0, str(NOTEBOOKS))
    try:
        import make_notebook
    finally:
        sys.path.remove(str(NOTEBOOKS))
    return make_notebook


def test_notebook_is_generated_from_the_script(tmp_path: Path) -> None:
    make_notebook = _make_notebook()
    assert make_notebook.main([str(tmp_path / "pareto.ipynb")]) == 0
    generated = nbformat.read(tmp_path / "pareto.ipynb", as_version=4)
    saved = nbformat.read(NOTEBOOKS / "pareto.ipynb", as_version=4)
    # The saved copy carries the outputs of a real demo study; its cells must be the script's.
    assert [(c.cell_type, c.source) for c in saved.cells] == [
        (c.cell_type, c.source) for c in generated.cells
    ], "notebooks/pareto.ipynb is stale: run python notebooks/make_notebook.py --execute"


def test_notebook_runs_against_the_tiny_study(tiny_study: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not _python3_kernel_runs_this_python():
        pytest.skip(f"the python3 kernelspec does not run {sys.executable}")
    monkeypatch.setenv("MEMFRONT_STUDY", str(tiny_study))  # the kernel inherits this environment
    monkeypatch.delenv("MEMFRONT_STORAGE", raising=False)
    # The script's cells, which the saved copy must match (the test above): this runs them even
    # while the saved copy waits to be regenerated against the demo study.
    notebook = _make_notebook().build()
    client = nbclient.NotebookClient(
        notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}
    )
    client.execute()  # raises CellExecutionError naming the cell if any cell raised

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    # Only the public API: `import search`, never its modules.
    assert not [c.source for c in code if "from search" in c.source or "search._" in c.source]
    outputs = [output for cell in code for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    plots = [o["data"] for o in outputs if PLOTLY_MIME in o.get("data", {})]
    figures = [data[PLOTLY_MIME] for data in plots]
    # Ours, Optuna's, and the two knob plots.
    assert len(figures) == 4
    # Each with a PNG in the same output, for viewers that cannot run plotly (GitHub, nbviewer).
    for data in plots:
        with Image.open(io.BytesIO(base64.b64decode(data["image/png"]))) as image:
            assert image.format == "PNG" and image.size[0] >= 500 and image.size[1] >= 300
        assert data["text/plain"].startswith("<plot: ")
    # No other image: the pyplot figure behind Optuna's PNG is not shown a second time.
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4
    ours = figures[0]
    names = [trace.get("name") for trace in ours["data"]]
    assert any(name.startswith("Pareto front (") for name in names if name)
    assert any("memory limit" in a.get("text", "") for a in ours["layout"].get("annotations", []))
    assert "Pareto-front" in str(figures[1]["layout"]["title"])  # Optuna's title
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "Warning" not in text, text
    assert "study tiny: " in text
    assert "best configuration within 6.00 GiB: trial " in text
    table = next(
        o for o in outputs if "text/html" in o.get("data", {}) and "peak host (GiB)" in o["data"]["text/html"]
    )
    assert "mAP50-95" in table["data"]["text/html"]
