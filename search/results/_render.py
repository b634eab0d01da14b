"""The Pareto plot's renderers: matplotlib (PNG, SVG, PDF) and plotly (HTML, notebooks).

Both draw :class:`search.results._plot.ParetoPlotData` as it is, the same layers in the same
colours: the front's means with their intervals joined by a step line, the other trainings faded,
the trials over the memory limit marked 'x', and the limit as a vertical dashed line.
"""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from search.errors import InputError
from search.results import _plot_layout as plot_layout
from search.results._plot import ParetoPlotData

if TYPE_CHECKING:
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

__all__ = ["PLOT_FORMATS", "matplotlib_figure", "render_matplotlib", "render_plotly", "write_plot"]

_MATPLOTLIB_SUFFIXES = (".png", ".svg", ".pdf")
_PLOTLY_SUFFIX = ".html"
PLOT_FORMATS = f"{_PLOTLY_SUFFIX} (plotly, interactive) or {', '.join(_MATPLOTLIB_SUFFIXES)} (matplotlib)"
"""The plot files :func:`write_plot` writes, by suffix, as ``memfront plot --help`` lists them."""
_FRONT_COLOR = "#1f77b4"
_DOMINATED_COLOR = "#7f7f7f"
_INFEASIBLE_COLOR = "#d62728"
_LIMIT_COLOR = "#444444"
_PLOTLY_SCALE = 1.35  # plotly pixels per nominal canvas point (see plot_layout): a plot area of ~650x400


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
    layout = ConstrainedLayoutEngine(rect=(0, 0.075, 0.985, 0.915))  # (left, bottom, width, height)
    fig = Figure(figsize=(9, 6), dpi=110, layout=layout)
    ax = fig.add_subplot()
    if data.step_x:
        ax.plot(data.step_x, data.step_y, color=_FRONT_COLOR, linewidth=1.8, zorder=3)
    bars = data.front[data.front["low"].notna()]
    if not bars.empty:
        ax.errorbar(
            bars["x"], bars["y"], yerr=[bars["y"] - bars["low"], bars["high"] - bars["y"]], fmt="none",
            ecolor=_FRONT_COLOR, elinewidth=1.4, capsize=5, zorder=4, label=data.interval_name,
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
    caption = "\n".join(textwrap.fill(line, 150) for line in data.caption.splitlines())
    fig.text(0.01, 0.005, caption, fontsize=7, ha="left", va="bottom", color="#555555")
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
    if suffix == _PLOTLY_SUFFIX:
        path.parent.mkdir(parents=True, exist_ok=True)
        render_plotly(data).write_html(path, include_plotlyjs=True, full_html=True)
        return path
    if suffix in _MATPLOTLIB_SUFFIXES:
        return render_matplotlib(data, path)
    raise InputError(f"{path}: unknown plot format {suffix or '(no suffix)'}: use {PLOT_FORMATS}")
