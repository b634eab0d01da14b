"""Writes ``notebooks/pareto.ipynb``: run ``python notebooks/make_notebook.py`` after editing the cells here.

The notebook is generated so that it can be reviewed as code and regenerated; ``--execute`` saves it
with the outputs of the demo study (``memfront run studies/demo.yaml`` first).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "pareto.ipynb"

INTRO = """\
# memfront: accuracy against memory

Every trial of a memfront study trained YOLOv5 with one setting of the memory knobs (batch size,
image size, image cache, dataloader workers, AMP) and measured its accuracy and its peak host memory.
This notebook shows the trade-off: the **Pareto front** (no other trial is both more accurate and
leaner), the trials it dominates, the trials that crossed the memory limit, and how each knob
drives peak memory. It ends by picking the best configuration for a memory budget.

Choose the study with environment variables before starting Jupyter, or edit the next cell:
`MEMFRONT_STUDY` (a study yaml, relative to this folder) and `MEMFRONT_STORAGE` (an Optuna storage
URL, when the study is not in the SQLite file beside its yaml). Run the study first:
`memfront run studies/demo.yaml`.
"""

PARAMETERS = """\
import os

STUDY = os.environ.get("MEMFRONT_STUDY", "../studies/demo.yaml")
STORAGE = os.environ.get("MEMFRONT_STORAGE")
"""

LOAD = """\
import sys
import warnings
from pathlib import Path

import optuna
import pandas as pd
import plotly.express as px
import plotly.io as pio

ROOT = Path.cwd().parent
if (ROOT / "search").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # a checkout that is not pip-installed

from search.plot import ACCURACY_NAMES, pareto_plot_data, render_plotly  # noqa: E402
from search.report import front, status_counts, trials_frame  # noqa: E402
from search.study import open_study, storage_url  # noqa: E402
from search.studyfile import load_study_spec  # noqa: E402

pio.renderers.default = "plotly_mimetype"  # JupyterLab, VS Code, Notebook 7: offline, no JS in the file
GIB = 1024**3

spec_path = Path(STUDY)  # relative paths are relative to this notebook's folder
spec = load_study_spec(spec_path)
study = open_study(spec, storage_url(spec, spec_path, STORAGE), create=False)
frame = trials_frame(study)
ACCURACY = spec.objectives[0]
ACCURACY_NAME = ACCURACY_NAMES[ACCURACY]
duplicates = int(frame["duplicate_of"].notna().sum())
print(f"study {spec.name}: {len(frame) - duplicates} trials (and {duplicates} duplicate proposals)")
print(f"memory limit {spec.memory_limit / GIB:.2f} GiB")
print("by status:", status_counts(frame))
"""

PLOT_MD = """\
## The Pareto front

Hover a point for its configuration. Trials over the memory limit have no accuracy and are drawn
at 0 with an ×; the dashed line is the limit. Failed and timed-out trials are not drawn (they have
no figures) and are counted under the title.
"""

PLOT = """\
plot_data = pareto_plot_data(frame, accuracy=ACCURACY, memory_limit=spec.memory_limit, study_name=spec.name)
render_plotly(plot_data)
"""

OPTUNA_MD = """\
The same front as Optuna draws it (`optuna.visualization.plot_pareto_front`), with the constraint
(peak minus limit) marking infeasible trials: a cross-check that both agree.
"""

OPTUNA_PLOT = """\
UNITS = {
    "peak_host": "peak host memory (GiB)",
    "peak_gpu": "peak GPU memory (GiB)",
    "epoch_seconds": "epoch (s)",
}


def in_gib(trial: optuna.trial.FrozenTrial) -> list[float]:
    pairs = zip(spec.objectives, trial.values, strict=True)
    return [value / GIB if name in ("peak_host", "peak_gpu") else value for name, value in pairs]


with warnings.catch_warnings():
    # memfront stores the constraint as a user attribute, which only constraints_func can read;
    # Optuna deprecates that argument (removed in Optuna 6, which memfront does not support yet).
    warnings.simplefilter("ignore", FutureWarning)
    optuna_front = optuna.visualization.plot_pareto_front(
        study,
        target_names=[ACCURACY_NAME, *(UNITS[name] for name in spec.objectives[1:])],
        targets=in_gib,
        constraints_func=lambda trial: trial.user_attrs.get("constraint", [0.0]),
    )
optuna_front
"""

TABLE_MD = "## The front, least memory first"

TABLE = """\
knobs = ["batch", "imgsz", "cache", "workers", "amp"]
columns = ["number", *knobs, ACCURACY, "peak_host_bytes", "epoch_seconds"]
table = front(frame, ACCURACY)[columns].copy()
table[ACCURACY] = table[ACCURACY].map("{:.3f}".format)
table["peak_host_bytes"] = (table["peak_host_bytes"].astype(float) / GIB).map("{:.2f}".format)
table["epoch_seconds"] = table["epoch_seconds"].map(lambda s: "n/a" if pd.isna(s) else f"{s:.1f}")
names = {
    "number": "trial",
    ACCURACY: ACCURACY_NAME,
    "peak_host_bytes": "peak host (GiB)",
    "epoch_seconds": "epoch (s)",
}
table.rename(columns=names).set_index("trial")
"""

KNOBS_MD = """\
## What drives peak memory

Each measured trial (duplicates left out): peak host memory against image size, coloured by the
image cache, and against batch size, coloured by the number of dataloader workers.
"""

KNOBS = """\
measured = frame[frame["duplicate_of"].isna() & frame["peak_host_bytes"].notna()].copy()
measured["peak host (GiB)"] = measured["peak_host_bytes"].astype(float) / GIB
measured["workers"] = measured["workers"].astype(str)
hover = ["number", "batch", "imgsz", "cache", "workers", "amp", "status"]
px.scatter(
    measured,
    x="imgsz",
    y="peak host (GiB)",
    color="cache",
    symbol="status",
    hover_data=hover,
    title="peak host memory vs image size, by cache mode",
).add_hline(y=spec.memory_limit / GIB, line_dash="dash", annotation_text="memory limit")
"""

KNOBS_BATCH = """\
px.scatter(
    measured,
    x="batch",
    y="peak host (GiB)",
    color="workers",
    symbol="status",
    hover_data=hover,
    title="peak host memory vs batch size, by dataloader workers",
).add_hline(y=spec.memory_limit / GIB, line_dash="dash", annotation_text="memory limit")
"""

EXPORT_MD = """\
## The best configuration for a budget

The most accurate front trial whose measured peak fits `MAX_MEMORY` (bytes). `memfront export`
prints the same choice as a ready-to-run command.
"""

EXPORT = """\
from search.export import best_config

MAX_MEMORY = spec.memory_limit  # lower it to pick a leaner configuration, e.g. 2 * GIB

chosen = best_config(frame, max_memory_bytes=MAX_MEMORY, accuracy=ACCURACY)
if chosen is None:
    print(f"no feasible front trial fits in {MAX_MEMORY / GIB:.2f} GiB")
else:
    print(f"best configuration within {MAX_MEMORY / GIB:.2f} GiB: trial {int(chosen['number'])}")
    print(chosen[["batch", "imgsz", "cache", "workers", "amp"]].to_string())
    print(f"{ACCURACY_NAME} {chosen[ACCURACY]:.3f}, peak host {chosen['peak_host_bytes'] / GIB:.2f} GiB")
"""


def build() -> nbformat.NotebookNode:
    """The notebook, cells in order, no outputs."""
    code, markdown = "code", "markdown"
    layout = [
        (markdown, INTRO),
        (code, PARAMETERS),
        (code, LOAD),
        (markdown, PLOT_MD),
        (code, PLOT),
        (markdown, OPTUNA_MD),
        (code, OPTUNA_PLOT),
        (markdown, TABLE_MD),
        (code, TABLE),
        (markdown, KNOBS_MD),
        (code, KNOBS),
        (code, KNOBS_BATCH),
        (markdown, EXPORT_MD),
        (code, EXPORT),
    ]
    cells = [
        new_code_cell(text.rstrip("\n")) if kind == code else new_markdown_cell(text.rstrip("\n"))
        for kind, text in layout
    ]
    cells[1].metadata["tags"] = ["parameters"]  # papermill's convention
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.metadata["language_info"] = {"name": "python"}
    for number, cell in enumerate(notebook.cells):
        cell["id"] = f"memfront-{number:02d}"  # stable ids: regenerating gives the same file
    return notebook


def main(argv: list[str] | None = None) -> int:
    """Writes the notebook (to the path given, else ``notebooks/pareto.ipynb``).

    With ``--execute``, runs it first against ``../studies/demo.yaml`` (or ``MEMFRONT_STUDY``) and
    saves it with its outputs: the copy in the repository shows a real demo study.
    """
    args = sys.argv[1:] if argv is None else argv
    execute = "--execute" in args
    paths = [a for a in args if a != "--execute"]
    target = Path(paths[0]) if paths else NOTEBOOK
    notebook = build()
    nbformat.validate(notebook)
    if execute:
        import nbclient

        client = nbclient.NotebookClient(
            notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(HERE)}}
        )
        client.execute()
    nbformat.write(notebook, target)
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
