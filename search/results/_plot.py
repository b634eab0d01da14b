"""The Pareto plot: accuracy against peak host memory, computed once and rendered twice.

:func:`pareto_plot_data` turns :func:`search.results._frame.trials_frame` output into plain data;
:func:`render_matplotlib` draws it as a static image (PNG, SVG, PDF) and :func:`render_plotly` as
an interactive figure (a self-contained HTML file, or a notebook cell). Both draw the same layers:
the front joined by a step line, the dominated trials faded, the trials over the memory limit marked
'x' (at accuracy 0 when they have none), and the limit as a vertical dashed line. The memory axis is
zoomed to the trials (:func:`search.results._plot_layout.memory_axis`): a limit far from them is named
instead of drawn, and a trial far over it sits on the axis's edge as a triangle. The labels are laid
out once, in the data (:func:`search.results._plot_layout.place_labels`), so that none overlaps another.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from search.errors import InputError
from search.results import _plot_layout as plot_layout
from search.study._spec import ACCURACY_OBJECTIVES
from search.units import format_bytes, format_seconds

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

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
    "dominated", "infeasible", "label", "config", "hover", "x", "clipped", "label_position",
    "low", "high", "replicates", "equivalent",
]  # fmt: skip
_MATPLOTLIB_SUFFIXES = (".png", ".svg", ".pdf")
_PLOTTED_STATES = ("COMPLETE",)
_FRONT_COLOR = "#1f77b4"
_DOMINATED_COLOR = "#7f7f7f"
_INFEASIBLE_COLOR = "#d62728"
_LIMIT_COLOR = "#444444"
_PLOTLY_SCALE = 1.35  # plotly pixels per nominal canvas point (see plot_layout): a plot area of ~650x400


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
        memory_limit_bytes: The study's host memory limit.
        memory_limit_gib: The same in GiB.
        x_range: The memory axis (GiB), zoomed to the trials.
        y_range: The accuracy axis.
        limit_shown: Whether the limit lies on the memory axis (and is drawn as a line).
        limit_text: The limit's name in the legend; it says which side it is when off the axis.
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
    feasible = bool(row["feasible"])
    pareto = feasible and bool(row["pareto"])
    # A front point is its accuracy config's mean at its system setting's median peak; any other
    # training is drawn where it measured.
    value = row["accuracy_mean"] if pareto else row[accuracy]
    measured = float("nan") if _is_missing(value) else float(value)
    peak = row["config_peak_host_bytes"] if pareto else row["peak_host_bytes"]
    peak_bytes = memory_limit if _is_missing(peak) else int(peak)
    config = _config_text(row)
    shown = "n/a" if math.isnan(measured) else f"{measured:.3f}"
    low, high = row.get("accuracy_low"), row.get("accuracy_high")
    replicates = int(row.get("replicates") or 0)
    equivalent = pareto and not _is_missing(row.get("equivalent_to"))
    verdict = (
        "on the front" if pareto else ("a training" if feasible else f"over the limit ({row['status']})")
    )
    if pareto:
        interval = "interval unknown" if _is_missing(low) else f"interval {low:.3f}-{high:.3f}"
        shown = f"mean {shown} over {replicates} replicates ({interval})"
        if equivalent:
            verdict += f", equivalent within noise to trial {int(row['equivalent_to'])} (less memory)"
    elif feasible and not _is_missing(row.get("accuracy_mean")):
        shown += f" (its config's mean {float(row['accuracy_mean']):.3f} over {replicates})"
    hover = (
        f"trial {int(row['number'])}: {verdict}<br>{accuracy_name} {shown}, "
        f"peak host {format_bytes(peak_bytes)}<br>{config}"
    )
    label = _short_label(row) + (f" n={replicates}" if pareto else "") + (" ≈" if equivalent else "")
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


def _caption(points: pd.DataFrame, not_plotted: dict[str, int], duplicates: int, noise: str) -> str:
    text = (
        f"front: {int(points['pareto'].sum())} accuracy configs, mean and interval over their replicates "
        f"({int(points['equivalent'].sum())} marked ≈: within noise of a leaner one); "
        f"{int(points['dominated'].sum())} other trainings faded; {int(points['infeasible'].sum())} over "
        f"the memory limit"
    )
    if clipped := int(points["clipped"].sum()):
        text += f" ({clipped} beyond the memory axis, drawn on its edge as a triangle)"
    if not_plotted:
        text += "; not plotted: " + ", ".join(f"{n} {status}" for status, n in sorted(not_plotted.items()))
    if duplicates:
        text += f"; {duplicates} duplicate proposals skipped"
    return f"{text}\n{noise}"


def pareto_plot_data(
    frame: pd.DataFrame, *, accuracy: str, memory_limit: int, study_name: str, noise: str = ""
) -> ParetoPlotData:
    """Computes what the Pareto plot shows.

    Args:
        frame: :func:`search.results._frame.trials_frame` output.
        accuracy: The accuracy column, one of ``map50_95``, ``map50``, ``fitness``.
        memory_limit: The study's host memory limit in bytes.
        study_name: Shown in the title.
        noise: The study's accuracy noise in words, shown in the caption.

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
    on_front = originals[originals["pareto"].astype(bool)]
    front_configs = {tuple(r[k] for k in ("batch", "imgsz", "amp")) for _, r in on_front.iterrows()}
    rows, labelled = [], set()
    for _, row in originals[plotted].iterrows():
        point = _point(row, accuracy=accuracy, accuracy_name=accuracy_name, memory_limit=memory_limit)
        config = tuple(row[k] for k in ("batch", "imgsz", "amp"))
        if point["dominated"] and (config in front_configs or point["label"] in labelled):
            point["label"] = ""  # another training of a labelled config: hover says which
        labelled.add(point["label"])
        rows.append(point)
    points = pd.DataFrame(rows, columns=POINT_COLUMNS)
    for column in ("feasible", "pareto", "dominated", "infeasible", "clipped", "equivalent"):
        points[column] = points[column].astype(bool)
    points = points.sort_values("number").reset_index(drop=True)
    not_plotted = {str(k): int(v) for k, v in originals[~plotted]["status"].value_counts().items()}
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
    points.loc[points["clipped"], "label"] += points["peak_host_bytes"].map(lambda b: f" ({format_bytes(b)})")
    x_range = (axis.low, axis.high)
    bars = [v for v in [*points["low"].tolist(), *points["high"].tolist()] if not math.isnan(v)]
    y_range = plot_layout.value_range([*points["y"].tolist(), *step_y, *bars])
    limit_drawn = None if axis.limit_side else limit_gib
    points["label_position"] = plot_layout.label_positions(
        points, (step_x, step_y), x_range, y_range, limit_drawn
    )
    limit_text = f"memory limit {format_bytes(memory_limit)}"
    if axis.limit_side:
        limit_text += f" (off the chart, {axis.limit_side})"
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
        x_range=x_range,
        y_range=y_range,
        limit_shown=not axis.limit_side,
        limit_text=limit_text,
        x_title="peak host memory (GiB)",
        y_title=accuracy_name,
        accuracy_name=accuracy_name,
        study_name=study_name,
        title=title,
        caption=_caption(points, not_plotted, duplicates, noise),
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
        _Layer(f"other trainings ({len(dominated)})", dominated, _DOMINATED_COLOR, "o", 9, 0.4),
        _Layer(f"over the memory limit ({len(infeasible)})", infeasible, _INFEASIBLE_COLOR, "x", 11, 1.0),
        _Layer(f"Pareto front ({len(data.front)})", data.front, _FRONT_COLOR, "o", 12, 1.0),
    ]
    return [layer for layer in layers if not layer.points.empty]


_PLOTLY_SYMBOLS = {"o": "circle", "x": "x", ">": "triangle-right", "<": "triangle-left"}


def _markers(layer: _Layer, data: ParetoPlotData) -> pd.Series:
    """Each point's matplotlib marker: the layer's, or a triangle pointing off the axis's edge."""
    edge = layer.points["x"].map(lambda x: ">" if x >= data.x_range[1] else "<")
    return edge.where(layer.points["clipped"], layer.marker)


def matplotlib_figure(data: ParetoPlotData) -> Figure:
    """Draws the plot on a matplotlib figure (no pyplot: nothing is shown or kept by a backend)."""
    from matplotlib.figure import Figure
    from matplotlib.layout_engine import ConstrainedLayoutEngine

    # The layout leaves room below for the caption, and on the right for a triangle on the axis's edge.
    layout = ConstrainedLayoutEngine(rect=(0, 0.06, 0.985, 0.93))  # (left, bottom, width, height)
    fig = Figure(figsize=(9, 6), dpi=110, layout=layout)
    ax = fig.add_subplot()
    if data.step_x:
        ax.plot(data.step_x, data.step_y, color=_FRONT_COLOR, linewidth=1.8, zorder=3)
    bars = data.front[data.front["low"].notna()]
    if not bars.empty:
        ax.errorbar(
            bars["x"], bars["y"], yerr=[bars["y"] - bars["low"], bars["high"] - bars["y"]], fmt="none",
            ecolor=_FRONT_COLOR, elinewidth=1.4, capsize=5, zorder=4, label="95% interval of the mean",
        )  # fmt: skip
    for zorder, layer in enumerate(_layers(data), start=2):
        front = layer.color == _FRONT_COLOR
        markers = _markers(layer, data)
        label = layer.name  # on the first part only: one legend entry per layer
        for marker in sorted(set(markers), key=lambda m: m != layer.marker):
            part = layer.points[markers == marker]
            ax.scatter(
                part["x"],
                part["y"],
                s=layer.size**2 / 2,
                marker=marker,
                color=layer.color,
                alpha=layer.opacity,
                label=label,
                zorder=zorder,
                edgecolors="black" if front else None,
                linewidths=0.8 if front else 1.5,
                clip_on=False,  # a point on the axis's edge stays whole
            )
            label = "_nolegend_"
    limit: dict[str, Any] = {"color": _LIMIT_COLOR, "linestyle": "--", "linewidth": 1.2}
    if data.limit_shown:
        ax.axvline(data.memory_limit_gib, label=data.limit_text, **limit)
    else:
        ax.plot([], [], label=data.limit_text, **limit)  # a legend entry that says where the limit is
    for _, row in data.points[data.points["label_position"] != ""].iterrows():
        dx, dy, ha, va = plot_layout.POSITIONS[row["label_position"]]
        ax.annotate(
            row["label"],
            (row["x"], row["y"]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            va=va,
            fontsize=plot_layout.FONT_SIZE,
            alpha=0.55 if row["dominated"] else 0.9,
            annotation_clip=False,
        )
    ax.set_xlim(*data.x_range)
    ax.set_ylim(*data.y_range)
    ax.set_xlabel(data.x_title)
    ax.set_ylabel(data.y_title)
    ax.set_title(data.title, fontsize=11)
    ax.grid(True, alpha=0.3)
    # Below the axis title, where it cannot hide a point or a label; constrained layout makes room.
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=8, frameon=False)
    fig.text(0.01, 0.005, data.caption, fontsize=7, ha="left", va="bottom", color="#555555")
    return fig


def render_matplotlib(data: ParetoPlotData, path: Path) -> Path:
    """Draws the plot as a static image; the format follows the suffix (``.png``, ``.svg``, ``.pdf``).

    Uses matplotlib's non-interactive canvases (no pyplot, no display) and its default fonts.

    Returns:
        ``path``.

    Raises:
        InputError: For another suffix.
    """
    path = Path(path)
    if path.suffix.lower() not in _MATPLOTLIB_SUFFIXES:
        raise InputError(f"{path}: a static plot is {', '.join(_MATPLOTLIB_SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib_figure(data).savefig(path)
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
        points = layer.points
        front = layer.color == _FRONT_COLOR
        marker: dict[str, Any] = {"color": layer.color, "size": layer.size, "opacity": layer.opacity}
        marker["symbol"] = [_PLOTLY_SYMBOLS[m] for m in _markers(layer, data)]
        error_y = None
        if front:
            marker["line"] = {"color": "black", "width": 1}
            known = points["low"].notna()
            error_y = {
                "type": "data", "symmetric": False, "color": _FRONT_COLOR, "width": 5,
                "array": (points["high"] - points["y"]).where(known, 0).tolist(),
                "arrayminus": (points["y"] - points["low"]).where(known, 0).tolist(),
            }  # fmt: skip
        labelled = points["label_position"] != ""
        fig.add_trace(
            go.Scatter(
                x=points["x"].tolist(),
                y=points["y"].tolist(),
                name=layer.name,
                mode="markers+text",
                text=points["label"].where(labelled, "").tolist(),
                textposition=points["label_position"].where(labelled, "top center").tolist(),
                textfont={
                    "size": plot_layout.FONT_SIZE * _PLOTLY_SCALE,
                    "color": "rgba(0,0,0,0.5)" if layer.color == _DOMINATED_COLOR else "rgba(0,0,0,0.85)",
                },
                cliponaxis=False,
                customdata=points["hover"].tolist(),
                hovertemplate="%{customdata}<extra></extra>",
                marker=marker,
                error_y=error_y,
            )
        )
    limit = data.memory_limit_gib
    if data.limit_shown:
        line = {"color": _LIMIT_COLOR, "dash": "dash", "width": 1.5}
        fig.add_shape(type="line", x0=limit, x1=limit, xref="x", y0=0, y1=1, yref="paper", line=line)
        where: dict[str, Any] = {"x": limit, "xref": "x", "xanchor": "right", "text": data.limit_text}
    else:
        right = limit > data.x_range[1]
        where = {
            "x": 1 if right else 0,
            "xref": "paper",
            "xanchor": "right" if right else "left",
            "text": f"{data.limit_text} →" if right else f"← {data.limit_text}",
        }
    fig.add_annotation(y=1, yref="paper", showarrow=False, yanchor="bottom", font={"size": 11}, **where)
    fig.update_layout(
        title={"text": f"{data.title}<br><sup>{data.caption.replace(chr(10), '<br>')}</sup>"},
        xaxis={"title": {"text": data.x_title}, "range": list(data.x_range)},
        yaxis={"title": {"text": data.y_title}, "range": list(data.y_range)},
        template="plotly_white",
        legend={"orientation": "h", "yanchor": "top", "y": -0.15},
        # A plot area of about the nominal canvas at _PLOTLY_SCALE, which the labels were laid out on.
        height=620,
        margin={"t": 90, "b": 120, "l": 70, "r": 40},
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
