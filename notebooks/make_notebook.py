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
image size, image cache, dataloader workers, AMP) and measured its accuracy and its peak memory (host,
and GPU on a CUDA device; the front ranks the study's memory objective).
A short training's accuracy is noisy, so accuracy belongs to an *accuracy config* (batch, imgsz,
AMP): the mean over its replicates (other seeds), with a 95% interval from the study's pooled noise.
This notebook shows the trade-off: the **Pareto front** (a config leaves it only when another is more
accurate beyond noise and shown to need no more memory), the other trainings, the trials that crossed
the memory limit, and how each knob drives peak memory. It ends by picking the best configuration for
a budget.

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

# optuna imports tqdm.auto, which warns in a notebook without ipywidgets: its progress bars are
# not used here.
warnings.filterwarnings("ignore", message="IProgress not found")

import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.io as pio  # noqa: E402

ROOT = Path.cwd().parent
if (ROOT / "search").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # a checkout that is not pip-installed

import search  # noqa: E402

pio.renderers.default = "plotly_mimetype"  # JupyterLab, VS Code, Notebook 7: offline, no JS in the file
# Each plot is one output with two forms: the interactive plotly figure where Jupyter can draw it,
# and a PNG drawn by matplotlib where it cannot (GitHub, nbviewer), which would show nothing.
GIB = 1024**3

results = search.load_study(STUDY, storage=STORAGE)  # relative to this notebook's folder; read-only
spec, frame = results.spec, results.trials
ACCURACY = results.accuracy
ACCURACY_NAME = results.accuracy_name
FRONT_GPU = results.front_memory == "GPU"  # a peak_gpu study: the front ranks GPU memory
duplicates = int(frame["duplicate_of"].notna().sum())
print(f"study {spec.name}: {len(frame) - duplicates} trials (and {duplicates} duplicate proposals)")
print(f"memory limit {spec.memory_limit / GIB:.2f} GiB; the front ranks {results.front_memory} memory")
if results.memory_note:
    print(results.memory_note)
print("by status:", results.status_counts())
noise = results.estimates.noise
print(f"accuracy noise: {noise.text()}")
if results.accuracy_note():
    print(results.accuracy_note())
"""

PLOT_MD = """\
## The Pareto front

Each front point is an accuracy config's mean with its 95% interval (error bars) and replicate
count (`n=`), at its leanest measured system setting; `≈` marks a point not better beyond noise than
a leaner one. Faded dots are single trainings. Hover a point for its configuration. Trials over
the memory limit have no accuracy and are drawn
at 0 with an ×; the dashed line is the limit. The memory axis is zoomed to the trials: a limit far
from them is named in the legend instead, and a trial far over it is drawn on the axis's edge as a
triangle, its peak in its label. Labels that would overlap are left out (hover shows them). Failed
and timed-out trials are not drawn (they have no figures) and are counted under the title.
"""

PLOT = """\
results.show()  # results.figure() is the plotly figure alone; results.plot_data() what it draws
"""

OPTUNA_MD = """\
Optuna's own view of the same study (`optuna.visualization.plot_pareto_front`), with the constraint
(peak minus limit) marking infeasible trials. It ranks single trainings on their own values, noise
and all: the front above is the one memfront reports.
"""

OPTUNA_PLOT = """\
UNITS = {
    "peak_host": "peak host memory (GiB)",
    "peak_gpu": "peak GPU memory (GiB)",
    "epoch_seconds": "epoch (s)",
}


def memory_first(trial: optuna.trial.FrozenTrial) -> list[float]:
    # Memory on the x axis and accuracy last, as memfront's own plot draws them; memory in GiB.
    values = dict(zip(spec.objectives, trial.values, strict=True))
    costs = [values[n] / GIB if n in ("peak_host", "peak_gpu") else values[n] for n in spec.objectives[1:]]
    return [*costs, values[spec.objectives[0]]]


# The memory constraint is each trial's own (Trial.set_constraint): Optuna's plot reads it as it is.
optuna_arguments = {
    "target_names": [*(UNITS[name] for name in spec.objectives[1:]), ACCURACY_NAME],
    "targets": memory_first,
}
optuna_front = optuna.visualization.plot_pareto_front(results.study, **optuna_arguments)
with warnings.catch_warnings():
    # Optuna's matplotlib twin, for the PNG; it is experimental, which is no news here. It switches
    # pyplot to its own style, which rc_context keeps from leaking into the later plots.
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    with plt.rc_context():
        optuna_axes = optuna.visualization.matplotlib.plot_pareto_front(results.study, **optuna_arguments)
optuna_image = optuna_axes.figure
plt.close(optuna_image)  # a pyplot figure: shown once, in the output below, not again by the backend
search.WithImage(optuna_front, optuna_image)
"""

TABLE_MD = "## The front, least memory first"

TABLE = """\
# A point's memory and speed are those of its leanest system setting (config_cache, config_workers),
# which may be a probe's rather than its first trial's own cache and workers.
knobs = ["batch", "imgsz", "config_cache", "config_workers", "amp"]
columns = ["number", *knobs, "accuracy_mean", "accuracy_low", "accuracy_high", "replicates"]
# A peak_gpu study ranks the front on each config's GPU peak: that column comes first.
memory = ["config_peak_gpu_bytes", "config_peak_host_bytes"] if FRONT_GPU else ["config_peak_host_bytes"]
columns += [*memory, "config_epoch_seconds", "equivalent_to", "memory_tie"]
table = results.front()[columns].copy()
for column in ("accuracy_mean", "accuracy_low", "accuracy_high"):
    table[column] = table[column].map(lambda v: "unknown" if pd.isna(v) else f"{v:.3f}")
for column in memory:
    table[column] = (table[column].astype(float) / GIB).map("{:.2f}".format)
table["config_epoch_seconds"] = table["config_epoch_seconds"].map(
    lambda s: "n/a" if pd.isna(s) else f"{s:.1f}"
)
for column in ("equivalent_to", "memory_tie"):
    table[column] = table[column].map(lambda n: "" if n is None or pd.isna(n) else f"trial {int(n)}")
names = {
    "number": "trial",
    "config_cache": "cache",
    "config_workers": "workers",
    "accuracy_mean": f"{ACCURACY_NAME} mean",
    "accuracy_low": "95% low",
    "accuracy_high": "95% high",
    "replicates": "n",
    "config_peak_host_bytes": "peak host (GiB)",
    "config_peak_gpu_bytes": "peak GPU (GiB)",
    "config_epoch_seconds": "epoch (s)",
    "equivalent_to": "within noise of",
    "memory_tie": "memory not shown above",  # a more accurate point not shown to need less memory
}
table.rename(columns=names).set_index("trial")
"""

FULL_MD = """\
## The front over all five knobs

Accuracy from each accuracy config's replicates; memory and epoch time from each full config on the
whole dataset (`memory_source`: its trainings, a probe, or the memory model). A system setting stays
on it when it buys speed with memory, beyond the epoch time's 20% spread over seeds.
"""

FULL = """\
full = results.full_front()
full["peak_host_bytes"] = (full["peak_host_bytes"].astype(float) / GIB).map("{:.2f}".format)
for column in ("accuracy_mean", "accuracy_low", "accuracy_high"):
    full[column] = full[column].map(lambda v: "unknown" if pd.isna(v) else f"{v:.3f}")
full["epoch_seconds"] = full["epoch_seconds"].map(lambda s: "n/a" if pd.isna(s) else f"{s:.1f}")
for column in ("trial", "probe"):
    full[column] = full[column].map(lambda n: "" if n is None or pd.isna(n) else str(int(n)))
full.rename(
    columns={
        "accuracy_mean": f"{ACCURACY_NAME} mean", "accuracy_low": "95% low", "accuracy_high": "95% high",
        "replicates": "n", "peak_host_bytes": "peak host (GiB)", "epoch_seconds": "epoch (s)",
        "memory_source": "from",
    }
)
"""

KNOBS_MD = """\
## What drives peak memory

Each measured trial (duplicates left out): peak host memory against image size, coloured by the
image cache, and against batch size, coloured by the number of dataloader workers. The limit is a
dashed line when it is near the peaks; else the title names it.
"""

KNOBS = """\
results.knob_plot("imgsz", "cache")
"""

KNOBS_BATCH = """\
results.knob_plot("batch", "workers")
"""

EXPORT_MD = """\
## The best configuration for a budget

`results.choice(budget)` is what `memfront export --max-memory` exports, by one rule: among accuracy
configs with a measured system setting that fits, the best mean; among those within noise of it, the
leanest (ties: the fastest); then its leanest system setting that fits with memory's 4% spread to
spare, or one that costs more and cuts the epoch time by more than its 20% spread over seeds (a
smaller lead is noise; the fastest such setting is named, as is a faster one measured within the
memory spread of the budget, which is passed over). A
peak predicted for the whole dataset must fit too (trials may train on a subset; `check_prediction=False` is
export's `--ignore-prediction`). `results.explain(budget)` says why, as `export` prints it; for a
study that measured GPU memory, a GPU budget is `results.choice(max_gpu_memory="16GiB")`.
"""

EXPORT = """\
MAX_MEMORY = spec.memory_limit  # lower it to pick a leaner configuration, e.g. "1.2GiB"
budget_gib = search.parse_size(MAX_MEMORY) / GIB

choice = results.choice(MAX_MEMORY)
if choice.refused_by_prediction is not None:
    refused = choice.refused_by_prediction
    print(f"trial {int(refused['number'])} fits as measured, but not as predicted for the whole dataset")
chosen = choice.chosen
if chosen is None:
    print(f"no feasible front trial fits in {budget_gib:.2f} GiB")
else:
    # Its figures are a trial's, or a probe's where the chosen system setting was only probed.
    system = choice.system
    where = f"trial {system.trial}" if system.trial is not None else f"probe {system.probe}"
    print(f"best configuration within {budget_gib:.2f} GiB: {where}")
    print(chosen[["batch", "imgsz", "cache", "workers", "amp"]].to_string())
    print("\\n".join(results.explain(MAX_MEMORY)))
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
        (markdown, FULL_MD),
        (code, FULL),
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
