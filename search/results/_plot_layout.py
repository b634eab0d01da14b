"""Where the Pareto plot's axes end and which points get labels: decided once, for both renderers.

:func:`search.results._plot.pareto_plot_data` calls these so that the PNG and the plotly figure show the same
range, the same limit line and the same labels.

Labels are laid out on a nominal plot area, :data:`CANVAS` points (1/72 in) wide and high, with text
:data:`FONT_SIZE` points high. A greedy pass takes the points in priority order and gives each the
first of :data:`POSITIONS` whose text box stays inside the area and clear of the labels already
placed, of every marker and of the lines; a point with no such position gets no label (plotly's
hover text still names it). The nominal area is a little smaller than either renderer's, relative
to its font, so that the estimate errs towards fewer labels rather than overlapping ones.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CANVAS",
    "FONT_SIZE",
    "POSITIONS",
    "Box",
    "MemoryAxis",
    "label_positions",
    "line_boxes",
    "memory_axis",
    "place_labels",
    "to_canvas",
    "value_range",
]

Box = tuple[float, float, float, float]  # left, bottom, right, top, in canvas points

CANVAS = (480.0, 300.0)
FONT_SIZE = 7.0
_CHAR_WIDTH = 0.62  # of the font size: DejaVu Sans's digits are 0.64 em wide, most letters less
_LINE_HEIGHT = 1.3  # of the font size, descenders included
_GAP = 5.0  # from a point to the near edge of its label
_DIAGONAL = 3.5  # the same for the corner positions, along each axis
_MARKER = 4.5  # half the width of the largest marker
_CLEARANCE = 1.0  # kept between two boxes
_MIN_SPAN = 0.05  # of the axis's upper end: one trial, or several with the same peak, still get a range
_PAD = 0.08  # of the data's span, on each side of the memory axis
_VALUE_PAD = 0.12  # of the span, on each side of the accuracy axis: room for a label above the top point
_MIN_VALUE_SPAN = 0.05  # of the metric (0 to 1): ten times the default accuracy_resolution

# Plotly's textposition names; each is an offset from the point (points) and the text's alignment.
# The order is the preference: above and below read best, and the sides clear the front's step
# line less often (it leaves each point to the right and reaches it from below).
POSITIONS: dict[str, tuple[float, float, str, str]] = {
    "top center": (0.0, _GAP, "center", "bottom"),
    "bottom center": (0.0, -_GAP, "center", "top"),
    "top left": (-_DIAGONAL, _DIAGONAL, "right", "bottom"),
    "top right": (_DIAGONAL, _DIAGONAL, "left", "bottom"),
    "middle left": (-_GAP - 1.0, 0.0, "right", "center"),
    "middle right": (_GAP + 1.0, 0.0, "left", "center"),
    "bottom left": (-_DIAGONAL, -_DIAGONAL, "right", "top"),
    "bottom right": (_DIAGONAL, -_DIAGONAL, "left", "top"),
}


@dataclasses.dataclass(frozen=True)
class MemoryAxis:
    """The memory axis's range (GiB) and where the limit lies: ``limit_side`` is ``""`` when the
    limit is inside the range (and drawn), else ``"left"`` or ``"right"`` of it."""

    low: float
    high: float
    limit_side: str


def memory_axis(core: Sequence[float], others: Sequence[float], limit: float) -> MemoryAxis:
    """Zooms the memory axis to the data.

    A study's trials often use a small fraction of its limit (the demo's front lies between 1 and
    1.4 GiB under 6 GiB), and an axis from 0 to the limit draws them as one vertical line. So the
    range is fitted to ``core`` (the feasible trials' peaks; all the trials' when none is feasible),
    widened to take in the values of ``others`` (the peaks over the limit) and the limit itself
    that lie within one core span of it; farther ones stay off the axis.

    Args:
        core: Peaks (GiB) the axis must show.
        others: Peaks shown only when near.
        limit: The memory limit (GiB).

    Returns:
        The range, padded, never below 0, and the limit's side.
    """
    if not core:
        return MemoryAxis(0.0, max(limit, *others, 0.0) * 1.1 or 1.0, "")
    low, high = min(core), max(core)
    reach = max(high - low, _MIN_SPAN * high)
    near = [value for value in [*others, limit] if low - reach <= value <= high + reach]
    low, high = min([low, *near]), max([high, *near])
    pad = max(_PAD * (high - low), _MIN_SPAN * high / 2) or 0.1
    low, high = max(0.0, low - pad), high + pad
    side = "" if low <= limit <= high else ("right" if limit > high else "left")
    return MemoryAxis(low, high, side)


def value_range(values: Sequence[float]) -> tuple[float, float]:
    """The accuracy axis: the values' range with a margin, for a label above the top point."""
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    if high == low == 0.0:
        low, high = 0.0, 1.0  # no trial has an accuracy
    elif high - low < _MIN_VALUE_SPAN:
        # Trainings that learned next to nothing (mAP 0.0002 against 0.0001) would fill the axis
        # with differences no study ranks; the span is never below what the eye should compare.
        middle = (low + high) / 2
        low, high = middle - _MIN_VALUE_SPAN / 2, middle + _MIN_VALUE_SPAN / 2
        if low < 0.0 <= min(values):
            low, high = 0.0, _MIN_VALUE_SPAN
    span = high - low
    bottom = low - _VALUE_PAD * span
    # Accuracy is never negative: an axis below 0 would show values no training can reach.
    return (max(bottom, 0.0) if low >= 0 else bottom), high + _VALUE_PAD * span


def to_canvas(
    x: float, y: float, x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[float, float]:
    """A data point's place on the nominal canvas."""
    width, height = CANVAS
    return (
        (x - x_range[0]) / (x_range[1] - x_range[0]) * width,
        (y - y_range[0]) / (y_range[1] - y_range[0]) * height,
    )


def line_boxes(points: Sequence[tuple[float, float]]) -> list[Box]:
    """Boxes around a polyline's segments (canvas points), so that labels keep off the line."""
    return [
        (min(x0, x1) - 0.5, min(y0, y1) - 0.5, max(x0, x1) + 0.5, max(y0, y1) + 0.5)
        for (x0, y0), (x1, y1) in itertools.pairwise(points)
    ]


def _text_box(anchor: tuple[float, float], text: str, position: str) -> Box:
    dx, dy, ha, va = POSITIONS[position]
    width, height = len(text) * _CHAR_WIDTH * FONT_SIZE, _LINE_HEIGHT * FONT_SIZE
    x, y = anchor[0] + dx, anchor[1] + dy
    left = x - {"left": 0.0, "center": width / 2, "right": width}[ha]
    bottom = y - {"bottom": 0.0, "center": height / 2, "top": height}[va]
    return left, bottom, left + width, bottom + height


def _overlaps(a: Box, b: Box) -> bool:
    return (
        a[0] < b[2] + _CLEARANCE
        and b[0] < a[2] + _CLEARANCE
        and a[1] < b[3] + _CLEARANCE
        and b[1] < a[3] + _CLEARANCE
    )


def place_labels(
    anchors: Sequence[tuple[float, float]],
    texts: Sequence[str],
    order: Sequence[int],
    obstacles: Sequence[Box] = (),
) -> list[str]:
    """Picks each point's label position, greedily.

    Args:
        anchors: The points, on the canvas (:func:`to_canvas`).
        texts: Each point's label.
        order: Indices into ``anchors``, the most wanted label first.
        obstacles: Lines to keep off (:func:`line_boxes`).

    Returns:
        Per point, a :data:`POSITIONS` name, or ``""`` for no label.
    """
    width, height = CANVAS
    markers = [(x - _MARKER, y - _MARKER, x + _MARKER, y + _MARKER) for x, y in anchors]
    placed: list[Box] = []
    chosen = [""] * len(anchors)
    for index in order:
        if not texts[index]:
            continue  # no label to place
        for position in POSITIONS:
            box = _text_box(anchors[index], texts[index], position)
            if box[0] < 0 or box[1] < 0 or box[2] > width or box[3] > height:
                continue
            others = [m for i, m in enumerate(markers) if i != index]
            if any(_overlaps(box, other) for other in [*placed, *others, *obstacles]):
                continue
            placed.append(box)
            chosen[index] = position
            break
    return chosen


def label_positions(
    points: pd.DataFrame,
    step: tuple[list[float], list[float]],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    limit: float | None,
) -> list[str]:
    """Lays out the Pareto plot's labels (:func:`place_labels`).

    The front's come first (least memory first), then those of points on the axis's edge (their
    position says least), then the dominated (most accurate first), then the rest over the limit.

    Args:
        points: :attr:`search.results._plot.ParetoPlotData.points`, ``label_position`` aside.
        step: The front's step line, kept clear.
        x_range: The memory axis.
        y_range: The accuracy axis.
        limit: The memory limit (GiB) when drawn, kept clear; else None.

    Returns:
        Per point, its ``label_position``.
    """

    def canvas(x: float, y: float) -> tuple[float, float]:
        return to_canvas(x, y, x_range, y_range)

    group = points["clipped"].map({True: 1, False: 3})
    group = group.mask(points["dominated"], 2).mask(points["pareto"], 0)
    ordered = points.assign(group=group, sort_x=points["x"].where(points["pareto"], 0), sort_y=-points["y"])
    ordered = ordered.sort_values(["group", "sort_x", "sort_y", "number"], kind="stable")
    order = [int(points.index.get_loc(i)) for i in ordered.index]
    anchors = [canvas(x, y) for x, y in zip(points["x"], points["y"], strict=True)]
    obstacles = line_boxes([canvas(x, y) for x, y in zip(*step, strict=True)])
    if limit is not None:
        obstacles += line_boxes([canvas(limit, y_range[0]), canvas(limit, y_range[1])])
    return place_labels(anchors, points["label"].tolist(), order, obstacles)
