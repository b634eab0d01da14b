"""The Pareto plot: accuracy against peak host memory, computed once and rendered twice.

:func:`pareto_plot_data` turns :func:`search.report.trials_frame` output into plain data;
:func:`render_matplotlib` draws it as a static image (PNG, SVG, PDF) and :func:`render_plotly` as
an interactive figure (a self-contained HTML file, or a notebook cell). Both draw the same layers:
the front joined by a step line, the dominated trials faded, the trials over the memory limit marked
'x' (at accuracy 0 when they have none), and the limit as a vertical dashed line.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from search.errors import InputError
from search.studyfile import ACCURACY_OBJECTIVES
from search.units import format_bytes, format_seconds

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "ACCURACY_NAMES",
    "POINT_COLUMNS",
    "ParetoPlotData",
    "pareto_plot_data",
    "render_matplotlib",
    "render_plotly",
    "write_plot",
]

GIB = 1024**3
ACCURACY_NAMES = {"map50_95": "mAP50-95", "map50": "mAP50", "fitness": "fitness"}
POINT_COLUMNS = [
    "number", "accuracy", "y", "peak_host_bytes", "peak_gib", "status", "feasible", "pareto",
    "dominated", "infeasible", "label", "config", "hover",
]  # fmt: skip
_MATPLOTLIB_SUFFIXES = (".png", ".svg", ".pdf")
_PLOTTED_STATES = ("COMPLETE",)
_FRONT_COLOR = "#1f77b4"
_DOMINATED_COLOR = "#7f7f7f"
_INFEASIBLE_COLOR = "#d62728"
_LIMIT_COLOR = "#444444"


@dataclasses.dataclass(frozen=True, eq=False)
class ParetoPlotData:
    """Everything a Pareto plot shows, renderer-independent.

    Attributes:
        points: One row per plotted trial (columns :data:`POINT_COLUMNS`), by trial number.
            ``accuracy`` is the measured value (NaN when none), ``y`` where the point is drawn
            (0 for a trial over the limit without accuracy); exactly one of ``pareto`` (on the
            feasible front), ``dominated`` and ``infeasible`` is true.
        step_x: Peak memory (GiB) of the front's step line, least memory first.
        step_y: Accuracy of the step line: it stays at a front point's level until the next
            point's memory, then rises to that point.
        memory_limit_bytes: The study's host memory limit.
        memory_limit_gib: The same in GiB.
        x_title: Axis title for peak memory.
        y_title: Axis title for accuracy.
        accuracy_name: The accuracy's display name, e.g. ``mAP50-95``.
        study_name: The study's name.
        title: The plot title (says so when no trial is feasible).
        caption: What was plotted and what was not (failed, timed-out trials; duplicates).
        not_plotted: Trials not drawn, by status (duplicates not counted).
        duplicates: Duplicate proposals skipped.
    """

    points: pd.DataFrame
    step_x: list[float]
    step_y: list[float]
    memory_limit_bytes: int
    memory_limit_gib: float
    x_title: str
    y_title: str
    accuracy_name: str
    study_name: str
    title: str
    caption: str
    not_plotted: dict[str, int]
    duplicates: int

    @property
    def front(self) -> pd.DataFrame:
        """The front's points, least memory first."""
        return _front(self.points)


def _front(points: pd.DataFrame) -> pd.DataFrame:
    return points[points["pareto"]].sort_values(["peak_gib", "y"], kind="stable")


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _short_label(row: pd.Series) -> str:
    parts = [f"b{row['batch']}", f"s{row['imgsz']}", str(row["cache"]), f"w{row['workers']}"]
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


def _point(row: pd.Series, *, accuracy: str, accuracy_name: str, memory_limit: int) -> dict[str, Any]:
    value = row[accuracy]
    measured = float("nan") if _is_missing(value) else float(value)
    peak = row["peak_host_bytes"]
    peak_bytes = memory_limit if _is_missing(peak) else int(peak)
    feasible = bool(row["feasible"])
    pareto = feasible and bool(row["pareto"])
    config = _config_text(row)
    shown = "n/a" if math.isnan(measured) else f"{measured:.3f}"
    verdict = "on the front" if pareto else ("dominated" if feasible else f"over the limit ({row['status']})")
    hover = (
        f"trial {int(row['number'])}: {verdict}<br>{accuracy_name} {shown}, "
        f"peak host {format_bytes(peak_bytes)}<br>{config}"
    )
    return {
        "number": int(row["number"]),
        "accuracy": measured,
        "y": 0.0 if math.isnan(measured) else measured,
        "peak_host_bytes": peak_bytes,
        "peak_gib": peak_bytes / GIB,
        "status": str(row["status"]),
        "feasible": feasible,
        "pareto": pareto,
        "dominated": feasible and not pareto,
        "infeasible": not feasible,
        "label": _short_label(row),
        "config": config,
        "hover": hover,
    }


def _step_line(front: pd.DataFrame) -> tuple[list[float], list[float]]:
    xs: list[float] = []
    ys: list[float] = []
    for peak, acc in zip(front["peak_gib"], front["y"], strict=False):
        if xs:
            xs.append(float(peak))
            ys.append(ys[-1])
        xs.append(float(peak))
        ys.append(float(acc))
    return xs, ys


def _caption(points: pd.DataFrame, not_plotted: dict[str, int], duplicates: int) -> str:
    text = (
        f"{len(points)} trials plotted: {int(points['pareto'].sum())} on the front, "
        f"{int(points['dominated'].sum())} dominated, {int(points['infeasible'].sum())} over the memory limit"
    )
    if not_plotted:
        text += "; not plotted: " + ", ".join(f"{n} {status}" for status, n in sorted(not_plotted.items()))
    if duplicates:
        text += f"; {duplicates} duplicate proposals skipped"
    return text


def pareto_plot_data(
    frame: pd.DataFrame, *, accuracy: str, memory_limit: int, study_name: str
) -> ParetoPlotData:
    """Computes what the Pareto plot shows.

    Args:
        frame: :func:`search.report.trials_frame` output.
        accuracy: The accuracy column, one of ``map50_95``, ``map50``, ``fitness``.
        memory_limit: The study's host memory limit in bytes.
        study_name: Shown in the title.

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
    rows = [
        _point(row, accuracy=accuracy, accuracy_name=accuracy_name, memory_limit=memory_limit)
        for _, row in originals[plotted].iterrows()
    ]
    points = pd.DataFrame(rows, columns=POINT_COLUMNS)
    for column in ("feasible", "pareto", "dominated", "infeasible"):
        points[column] = points[column].astype(bool)
    points = points.sort_values("number").reset_index(drop=True)
    not_plotted = {str(k): int(v) for k, v in originals[~plotted]["status"].value_counts().items()}
    front = _front(points)
    step_x, step_y = _step_line(front)
    limit_gib = memory_limit / GIB
    if front.empty:
        title = f"{study_name}: no feasible trial under the {format_bytes(memory_limit)} memory limit"
    else:
        title = f"{study_name}: {accuracy_name} vs peak host memory ({len(front)} on the Pareto front)"
    return ParetoPlotData(
        points=points,
        step_x=step_x,
        step_y=step_y,
        memory_limit_bytes=int(memory_limit),
        memory_limit_gib=limit_gib,
        x_title="peak host memory (GiB)",
        y_title=accuracy_name,
        accuracy_name=accuracy_name,
        study_name=study_name,
        title=title,
        caption=_caption(points, not_plotted, duplicates),
        not_plotted=not_plotted,
        duplicates=duplicates,
    )


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One group of points, drawn alike by both renderers."""

    name: str
    points: pd.DataFrame
    color: str
    marker: str  # matplotlib marker; plotly gets the matching symbol
    size: float
    opacity: float


def _layers(data: ParetoPlotData) -> list[_Layer]:
    points = data.points
    dominated, infeasible = points[points["dominated"]], points[points["infeasible"]]
    layers = [
        _Layer(f"dominated ({len(dominated)})", dominated, _DOMINATED_COLOR, "o", 9, 0.4),
        _Layer(f"over the memory limit ({len(infeasible)})", infeasible, _INFEASIBLE_COLOR, "x", 11, 1.0),
        _Layer(f"Pareto front ({len(data.front)})", data.front, _FRONT_COLOR, "o", 12, 1.0),
    ]
    return [layer for layer in layers if not layer.points.empty]


def _x_range(data: ParetoPlotData) -> tuple[float, float]:
    top = max([data.memory_limit_gib, *data.points["peak_gib"].tolist()])
    return 0.0, top * 1.1


def _y_range(data: ParetoPlotData) -> tuple[float, float] | None:
    """Autoscale, except that points placed at 0 (over the limit, no accuracy) stay in view."""
    if not data.points["infeasible"].any():
        return None
    top = float(data.points["y"].max()) or 1.0
    return -0.05 * top, 1.1 * top


def _limit_text(data: ParetoPlotData) -> str:
    return f"memory limit {format_bytes(data.memory_limit_bytes)}"


def render_matplotlib(data: ParetoPlotData, path: Path) -> Path:
    """Draws the plot as a static image; the format follows the suffix (``.png``, ``.svg``, ``.pdf``).

    Uses matplotlib's non-interactive canvases (no pyplot, no display) and its default fonts.

    Returns:
        ``path``.

    Raises:
        InputError: For another suffix.
    """
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    path = Path(path)
    if path.suffix.lower() not in _MATPLOTLIB_SUFFIXES:
        raise InputError(f"{path}: a static plot is {', '.join(_MATPLOTLIB_SUFFIXES)}")
    fig = Figure(figsize=(9, 6), dpi=110, layout=ConstrainedLayoutEngine(rect=(0, 0.035, 1, 0.965)))
    ax = fig.add_subplot()
    if data.step_x:
        ax.plot(data.step_x, data.step_y, color=_FRONT_COLOR, linewidth=1.8, zorder=3)
    for zorder, layer in enumerate(_layers(data), start=2):
        front = layer.color == _FRONT_COLOR
        ax.scatter(
            layer.points["peak_gib"],
            layer.points["y"],
            s=layer.size**2 / 2,
            marker=layer.marker,
            color=layer.color,
            alpha=layer.opacity,
            label=layer.name,
            zorder=zorder,
            edgecolors="black" if front else None,
            linewidths=0.8 if front else 1.5,
        )
    ax.axvline(
        data.memory_limit_gib, color=_LIMIT_COLOR, linestyle="--", linewidth=1.2, label=_limit_text(data)
    )
    ranks = data.points.groupby(["pareto", "dominated"])["peak_gib"].rank(method="first")
    for _, row in data.points.iterrows():
        # Neighbours on the front (or among the dominated) alternate labels above and below; points
        # over the limit often share accuracy 0, so theirs are slanted.
        below = ranks[row.name] % 2 == 0 and not row["infeasible"]
        ax.annotate(
            row["label"],
            (row["peak_gib"], row["y"]),
            xytext=(4, -11 if below else 6),
            textcoords="offset points",
            fontsize=7,
            alpha=0.45 if row["dominated"] else 0.9,
            rotation=40 if row["infeasible"] else 0,
            rotation_mode="anchor",
        )
    ax.margins(y=0.1)
    ax.set_xlim(*_x_range(data))
    if (y_range := _y_range(data)) is not None:
        ax.set_ylim(*y_range)
    ax.set_xlabel(data.x_title)
    ax.set_ylabel(data.y_title)
    ax.set_title(data.title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.text(0.01, 0.005, data.caption, fontsize=7, ha="left", va="bottom", color="#555555")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def render_plotly(data: ParetoPlotData) -> go.Figure:
    """Draws the plot as an interactive plotly figure; hovering a point shows its full configuration."""
    import plotly.graph_objects as go

    fig = go.Figure()
    step = go.Scatter(
        x=data.step_x,
        y=data.step_y,
        mode="lines",
        name="front step line",
        hoverinfo="skip",
        line={"color": _FRONT_COLOR, "width": 2},
        showlegend=False,
    )
    fig.add_trace(step)
    for layer in _layers(data):
        front = layer.color == _FRONT_COLOR
        marker: dict[str, Any] = {"color": layer.color, "size": layer.size, "opacity": layer.opacity}
        marker["symbol"] = "x" if layer.marker == "x" else "circle"
        if front:
            marker["line"] = {"color": "black", "width": 1}
        fig.add_trace(
            go.Scatter(
                x=layer.points["peak_gib"].tolist(),
                y=layer.points["y"].tolist(),
                name=layer.name,
                mode="markers+text" if front else "markers",
                text=layer.points["label"].tolist(),
                textposition="top center",
                customdata=layer.points["hover"].tolist(),
                hovertemplate="%{customdata}<extra></extra>",
                marker=marker,
            )
        )
    limit = data.memory_limit_gib
    fig.add_shape(
        type="line",
        x0=limit,
        x1=limit,
        xref="x",
        y0=0,
        y1=1,
        yref="paper",
        line={"color": _LIMIT_COLOR, "dash": "dash", "width": 1.5},
    )
    fig.add_annotation(
        x=limit,
        y=1,
        xref="x",
        yref="paper",
        text=_limit_text(data),
        showarrow=False,
        xanchor="right",
        yanchor="bottom",
        font={"size": 11},
    )
    fig.update_layout(
        title={"text": f"{data.title}<br><sup>{data.caption}</sup>"},
        xaxis={"title": {"text": data.x_title}, "range": list(_x_range(data))},
        yaxis={"title": {"text": data.y_title}, "range": _y_range(data)},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.15},
        margin={"t": 90},
    )
    return fig


def write_plot(data: ParetoPlotData, path: str | Path) -> Path:
    """Writes the plot; ``.html`` is an interactive, self-contained page (works offline),
    ``.png``, ``.svg`` and ``.pdf`` a static image.

    Returns:
        The path written.

    Raises:
        InputError: For another suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".html":
        path.parent.mkdir(parents=True, exist_ok=True)
        render_plotly(data).write_html(path, include_plotlyjs=True, full_html=True)
        return path
    if suffix in _MATPLOTLIB_SUFFIXES:
        return render_matplotlib(data, path)
    raise InputError(f"{path}: unknown plot format {suffix or '(no suffix)'}: use .html, .png, .svg or .pdf")
