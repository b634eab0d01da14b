"""The Pareto plot: accuracy against peak memory, computed once and rendered twice.

:func:`pareto_plot_data` turns :func:`search.results._frame.trials_frame` output into plain data;
:mod:`search.results._render` draws it as a static image (PNG, SVG, PDF) or an interactive plotly
figure (a self-contained HTML file, or a notebook cell). Both draw the same layers: the front's
means with their intervals joined by a step line, the other trainings faded, the trials over the
memory limit marked 'x' (at accuracy 0 when they have none), and the limit as a vertical dashed
line. The memory is the front's (host, or GPU for a ``peak_gpu`` study). The memory axis is zoomed
to the trials (:func:`search.results._plot_layout.memory_axis`): a limit far from them is named
instead of drawn, and a trial far over it sits on the axis's edge as a triangle. The labels are laid
out once, in the data (:func:`search.results._plot_layout.place_labels`), so that none overlaps
another.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import pandas as pd

from search.errors import InputError
from search.results import _plot_layout as plot_layout
from search.study._spec import ACCURACY_OBJECTIVES, MemoryAxis
from search.units import format_bytes, format_seconds, plural

if TYPE_CHECKING:
    pass

__all__ = ["ACCURACY_NAMES", "POINT_COLUMNS", "ParetoPlotData", "pareto_plot_data"]

GIB = 1024**3
ACCURACY_NAMES = {"map50_95": "mAP50-95", "map50": "mAP50", "fitness": "fitness"}
POINT_COLUMNS = [
    "number", "accuracy", "y", "peak_bytes", "peak_gib", "status", "feasible", "pareto",
    "dominated", "infeasible", "label", "config", "hover", "x", "clipped", "label_position",
    "low", "high", "replicates", "equivalent", "memory_tie",
]  # fmt: skip
_PLOTTED_STATES = ("COMPLETE",)


@dataclasses.dataclass(frozen=True, eq=False)
class ParetoPlotData:
    """Everything a Pareto plot shows, renderer-independent.

    Attributes:
        points: One row per plotted trial (columns :data:`POINT_COLUMNS`), by trial number.
            ``accuracy`` is the measured value (NaN when none), ``y`` where the point is drawn
            (0 for a trial over the limit without accuracy), ``x`` where on the memory axis (its
            edge for a trial beyond it: ``clipped``); exactly one of ``pareto`` (on the feasible
            front), ``dominated`` and ``infeasible`` is true. ``label_position`` places ``label``
            (a plotly textposition, see :data:`search.results._plot_layout.POSITIONS`), ``""`` when the
            point gets none because it would overlap another.
        step_x: Peak memory (GiB) of the front's step line, least memory first.
        step_y: Accuracy of the step line: it stays at a front point's level until the next
            point's memory, then rises to that point.
        memory_limit_bytes: The limit of the memory plotted (the study's host memory limit, or for
            a GPU front its GPU limit, else the GPU's own memory).
        memory_limit_gib: The same in GiB.
        x_range: The memory axis (GiB), zoomed to the trials.
        y_range: The accuracy axis.
        limit_shown: Whether the limit lies on the memory axis (and is drawn as a line).
        limit_text: The limit's name in the legend; it says which side it is when off the axis.
        x_title: Axis title for peak memory (host or GPU).
        y_title: Axis title for accuracy.
        accuracy_name: The accuracy's display name, e.g. ``mAP50-95``.
        study_name: The study's name.
        title: The plot title (says so when no trial is feasible).
        caption: What was plotted and what was not (failed, timed-out trials; duplicates).
        not_plotted: Trials not drawn, by status (duplicates not counted; on a GPU axis, the
            trainings without a GPU figure under ``without a GPU figure``).
        duplicates: Duplicate proposals skipped.
        interval_name: What the front's error bars are, for the legend (``Noise.interval_text``).
    """

    points: pd.DataFrame
    step_x: list[float]
    step_y: list[float]
    memory_limit_bytes: int
    memory_limit_gib: float
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    limit_shown: bool
    limit_text: str
    x_title: str
    y_title: str
    accuracy_name: str
    study_name: str
    title: str
    caption: str
    not_plotted: dict[str, int]
    duplicates: int
    interval_name: str = "95% interval of the mean"

    @property
    def front(self) -> pd.DataFrame:
        """The front's points, least memory first."""
        return _front(self.points)


def _front(points: pd.DataFrame) -> pd.DataFrame:
    return points[points["pareto"]].sort_values(["peak_gib", "y"], kind="stable")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _short_label(row: pd.Series) -> str:
    # A front point's figures are of its leanest system setting, which may not be its row's own.
    own = _is_missing(row.get("config_cache")) or not bool(row.get("pareto"))
    cache, workers = (row["cache"], row["workers"]) if own else (row["config_cache"], row["config_workers"])
    parts = [f"b{row['batch']}", f"s{row['imgsz']}", str(cache), f"w{workers}"]
    if bool(row["amp"]) and not _is_missing(row["amp"]):
        parts.append("amp")
    return " ".join(parts)


def _config_text(row: pd.Series) -> str:
    amp = "n/a" if _is_missing(row["amp"]) else ("on" if bool(row["amp"]) else "off")
    epoch = row["epoch_seconds"]
    return (
        f"batch {row['batch']}, imgsz {row['imgsz']}, cache {row['cache']}, workers {row['workers']}, "
        f"amp {amp}, epoch {'n/a' if _is_missing(epoch) else format_seconds(float(epoch))}"
    )


def _point(
    row: pd.Series, *, accuracy: str, accuracy_name: str, memory_limit: int, memory: MemoryAxis
) -> dict[str, Any]:
    feasible = bool(row["feasible"])
    pareto = feasible and bool(row["pareto"])
    # A front point is its accuracy config's mean at the memory the front ranks it on. On host memory,
    # that is its system setting's peak on the whole dataset, and any other training is drawn where it
    # measured, or, when it trained on a subset, where its full config was probed or predicted for the
    # whole dataset (the axis is the whole dataset's). A GPU peak does not grow with the dataset: a
    # training's own is drawn.
    value = row["accuracy_mean"] if pareto else row[accuracy]
    measured = float("nan") if _is_missing(value) else float(value)
    whole = feasible and row.get("memory_source") in ("probe", "model") and memory == "host"
    own = "peak_host_bytes" if memory == "host" else "peak_gpu_bytes"
    peak = row["front_memory_bytes"] if pareto else row["config_peak_host_bytes"] if whole else row[own]
    peak_bytes = memory_limit if _is_missing(peak) else int(peak)
    config = _config_text(row)
    shown = "n/a" if math.isnan(measured) else f"{measured:.3f}"
    low, high = row.get("accuracy_low"), row.get("accuracy_high")
    replicates = int(row.get("replicates") or 0)
    equivalent = pareto and not _is_missing(row.get("equivalent_to"))
    memory_tie = pareto and not _is_missing(row.get("memory_tie"))
    # On the GPU axis, a trial over a limit may have crossed the host one (drawn at its GPU peak).
    over = f"over {'the' if memory == 'host' else 'a'} memory limit ({row['status']})"
    verdict = "on the front" if pareto else ("a training" if feasible else over)
    if pareto:
        interval = "interval unknown" if _is_missing(low) else f"interval {low:.3f}-{high:.3f}"
        shown = f"mean {shown} over {replicates} replicates ({interval})"
        if equivalent:
            verdict += f", equivalent within noise to trial {int(row['equivalent_to'])} (less memory)"
        if memory_tie:
            verdict += (
                f", less accurate than trial {int(row['memory_tie'])}, whose memory figure is no higher but "
                "not shown lower (within memory's spread, or this config is leaner by construction)"
            )
    elif feasible and not _is_missing(row.get("accuracy_mean")):
        shown += f" (its config's mean {float(row['accuracy_mean']):.3f} over {replicates})"
    hover = (
        f"trial {int(row['number'])}: {verdict}<br>{accuracy_name} {shown}, "
        f"peak {'host' if memory == 'host' else 'GPU'} {format_bytes(peak_bytes)}<br>{config}"
    )
    label = _short_label(row) + (f" n={replicates}" if pareto else "") + (" ≈" if equivalent else "")
    label += " ≈mem" if memory_tie else ""
    return {
        "number": int(row["number"]),
        "accuracy": measured,
        "y": 0.0 if math.isnan(measured) else measured,
        "peak_bytes": peak_bytes,
        "peak_gib": peak_bytes / GIB,
        "status": str(row["status"]),
        "feasible": feasible,
        "pareto": pareto,
        "dominated": feasible and not pareto,
        "infeasible": not feasible,
        "label": label,
        "config": config,
        "hover": hover,
        "x": peak_bytes / GIB,  # until the axis is known
        "clipped": False,
        "label_position": "",
        "low": float(low) if pareto and not _is_missing(low) else math.nan,
        "high": float(high) if pareto and not _is_missing(high) else math.nan,
        "replicates": replicates,
        "equivalent": equivalent,
        "memory_tie": memory_tie,
    }


def _step_line(front: pd.DataFrame) -> tuple[list[float], list[float]]:
    """The best mean reached with at most each front point's memory: the hypervolume's boundary.

    A front point below it is kept only because it is within noise of the better one (marked ≈), or
    because the better one is not shown to need less memory (marked ≈mem).
    """
    xs: list[float] = []
    ys: list[float] = []
    for peak, acc in zip(front["peak_gib"], front["y"], strict=False):
        level = max(float(acc), ys[-1]) if ys else float(acc)
        if xs:
            xs.append(float(peak))
            ys.append(ys[-1])
        xs.append(float(peak))
        ys.append(level)
    return xs, ys


def _caption(points: pd.DataFrame, not_plotted: dict[str, int], duplicates: int, noise: str) -> str:
    text = (
        f"front: {plural(int(points['pareto'].sum()), 'accuracy config')}, mean and interval over their "
        "replicates "
        f"({int(points['equivalent'].sum())} marked ≈: within noise of a leaner one"
        + (
            f"; {ties} ≈mem: kept, a more accurate one not shown to need less memory"
            if (ties := int(points["memory_tie"].sum()))
            else ""
        )
        + "); "
        f"{plural(int(points['dominated'].sum()), 'other training')} faded; "
        f"{int(points['infeasible'].sum())} over the memory limit"
    )
    if clipped := int(points["clipped"].sum()):
        text += f" ({clipped} beyond the memory axis, drawn on its edge as a triangle)"
    if not_plotted:
        text += "; not plotted: " + ", ".join(f"{n} {status}" for status, n in sorted(not_plotted.items()))
    if duplicates:
        text += f"; {plural(duplicates, 'duplicate proposal')} skipped"
    return f"{text}\n{noise}"


def pareto_plot_data(
    frame: pd.DataFrame,
    *,
    accuracy: str,
    memory_limit: int,
    study_name: str,
    noise: str = "",
    interval_name: str = "95% interval of the mean",
    memory: MemoryAxis = "host",
    limit_name: str | None = None,
) -> ParetoPlotData:
    """Computes what the Pareto plot shows.

    Args:
        frame: :func:`search.results._frame.trials_frame` output.
        accuracy: The accuracy column, one of ``map50_95``, ``map50``, ``fitness``.
        memory_limit: The limit of the memory the front ranks, in bytes (the study's host memory
            limit, or on GPU memory its GPU limit, else the GPU's own memory).
        study_name: Shown in the title.
        noise: The study's accuracy noise in words, shown in the caption.
        interval_name: What the front's intervals are (:attr:`search.accuracy.Noise.interval_text`).
        memory: The memory the front ranks (:attr:`search.study.StudySpec.memory_axis`): the axis.
        limit_name: What the limit is, for the legend (default: ``memory limit``, ``GPU memory
            limit``); a GPU study without a GPU limit draws the GPU's own memory.

    Returns:
        The plot's data. Duplicate proposals are skipped; failed, timed-out and interrupted
        trials are not plotted (they have no figures) but counted in the caption.

    Raises:
        InputError: For an unknown accuracy name.
    """
    if accuracy not in ACCURACY_OBJECTIVES:
        raise InputError(f"accuracy must be one of {', '.join(ACCURACY_OBJECTIVES)}, not {accuracy!r}")
    accuracy_name = ACCURACY_NAMES[accuracy]
    originals = frame[frame["duplicate_of"].isna()]
    duplicates = len(frame) - len(originals)
    plotted = originals["state"].isin(_PLOTTED_STATES)
    # A training without a GPU figure (it did not use CUDA) has no place on a GPU axis.
    no_gpu = plotted & originals["feasible"].astype(bool) & originals["peak_gpu_bytes"].isna()
    no_gpu = no_gpu & (memory == "gpu")
    plotted = plotted & ~no_gpu
    on_front = originals[originals["pareto"].astype(bool)]
    front_configs = {tuple(r[k] for k in ("batch", "imgsz", "amp")) for _, r in on_front.iterrows()}
    rows, labelled = [], set()
    for _, row in originals[plotted].iterrows():
        point = _point(
            row, accuracy=accuracy, accuracy_name=accuracy_name, memory_limit=memory_limit, memory=memory
        )
        config = tuple(row[k] for k in ("batch", "imgsz", "amp"))
        if point["dominated"] and (config in front_configs or point["label"] in labelled):
            point["label"] = ""  # another training of a labelled config: hover says which
        labelled.add(point["label"])
        rows.append(point)
    points = pd.DataFrame(rows, columns=POINT_COLUMNS)
    for column in ("feasible", "pareto", "dominated", "infeasible", "clipped", "equivalent", "memory_tie"):
        points[column] = points[column].astype(bool)
    points = points.sort_values("number").reset_index(drop=True)
    not_plotted = {str(k): int(v) for k, v in originals[~plotted & ~no_gpu]["status"].value_counts().items()}
    if no_gpu.any():
        not_plotted["without a GPU figure"] = int(no_gpu.sum())
    front = _front(points)
    step_x, step_y = _step_line(front)
    limit_gib = memory_limit / GIB
    core = points[points["feasible"]] if points["feasible"].any() else points
    axis = plot_layout.memory_axis(
        core["peak_gib"].tolist(), points.loc[points["infeasible"], "peak_gib"].tolist(), limit_gib
    )
    points["x"] = points["peak_gib"].clip(axis.low, axis.high)
    points["clipped"] = points["x"] != points["peak_gib"]
    # A point on the edge is not where its peak is: its label says the peak.
    points.loc[points["clipped"], "label"] += points["peak_bytes"].map(lambda b: f" ({format_bytes(b)})")
    x_range = (axis.low, axis.high)
    bars = [v for v in [*points["low"].tolist(), *points["high"].tolist()] if not math.isnan(v)]
    y_range = plot_layout.value_range([*points["y"].tolist(), *step_y, *bars])
    limit_drawn = None if axis.limit_side else limit_gib
    points["label_position"] = plot_layout.label_positions(
        points, (step_x, step_y), x_range, y_range, limit_drawn
    )
    kind = "host" if memory == "host" else "GPU"
    limit_name = limit_name or ("memory limit" if memory == "host" else "GPU memory limit")
    limit_text = f"{limit_name} {format_bytes(memory_limit)}"
    if axis.limit_side:
        limit_text += f" (off the chart, {axis.limit_side})"
    if front.empty:
        title = f"{study_name}: no feasible trial under the {format_bytes(memory_limit)} memory limit"
        if memory == "gpu":
            title = f"{study_name}: no feasible trial with a GPU peak"
    else:
        title = f"{study_name}: {accuracy_name} vs peak {kind} memory ({len(front)} on the Pareto front)"
    return ParetoPlotData(
        points=points,
        step_x=step_x,
        step_y=step_y,
        memory_limit_bytes=int(memory_limit),
        memory_limit_gib=limit_gib,
        x_range=x_range,
        y_range=y_range,
        limit_shown=not axis.limit_side,
        limit_text=limit_text,
        x_title=f"peak {kind} memory (GiB)",
        y_title=accuracy_name,
        accuracy_name=accuracy_name,
        study_name=study_name,
        title=title,
        caption=_caption(points, not_plotted, duplicates, noise),
        interval_name=interval_name,
        not_plotted=not_plotted,
        duplicates=duplicates,
    )
