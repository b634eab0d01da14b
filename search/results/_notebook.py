"""Notebook output that shows on a code host too: a plotly figure with a PNG of the same plot."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.errors import InputError

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go
    from matplotlib.figure import Figure

__all__ = ["WithImage", "knob_plot"]

GIB = 1024**3


class WithImage:
    """A plotly figure and a PNG of the same plot, shown as one notebook output.

    A notebook front end draws the richest form it can: the interactive figure where plotly's
    renderer is installed (JupyterLab, Notebook 7, VS Code), the PNG where it is not (GitHub,
    nbviewer, nbconvert's HTML), which would otherwise show nothing. Plotly's own
    ``"plotly_mimetype+png"`` renderer does the same, but needs kaleido and a Chrome.

    Args:
        figure: The interactive figure.
        image: PNG bytes, or a matplotlib figure to save as PNG.
    """

    def __init__(self, figure: go.Figure, image: bytes | Figure) -> None:
        self.figure = figure
        if isinstance(image, bytes):
            self.png = image
        else:
            buffer = io.BytesIO()
            image.savefig(buffer, format="png")
            self.png = buffer.getvalue()

    def save(self, path: str | Path) -> Path:
        """Writes the plot to ``path``: the PNG (``.png``) or the interactive figure as a
        self-contained HTML page (``.html``, plotly's script inside: it opens offline).

        Returns:
            The path written.

        Raises:
            InputError: For another suffix (``.figure`` is the plotly figure for other formats).
        """
        target = Path(path)
        suffix = target.suffix.lower()
        if suffix == ".png":
            target.write_bytes(self.png)
        elif suffix in (".html", ".htm"):
            self.figure.write_html(target, include_plotlyjs=True, full_html=True)
        else:
            raise InputError(
                f"save a plot as .png or .html, not {target.name!r} (.figure is the plotly figure)"
            )
        return target

    def __repr__(self) -> str:
        # IPython adds this as the text/plain form: no object address, so regenerating is stable.
        title = str(self.figure.layout.title.text or "untitled").split("<br>")[0]
        return f"<plot: {title}>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        bundle = dict(self.figure._repr_mimebundle_(include, exclude))
        bundle["image/png"] = base64.b64encode(self.png).decode("ascii")
        return bundle


def knob_plot(frame: pd.DataFrame, *, memory_limit: int, x: str, colour: str, title: str) -> WithImage:
    """Peak host memory of each measured trial (ended ``ok`` or at its ``memory_limit``) against knob
    ``x``, coloured by knob ``colour``.

    The limit is a dashed line when it is near the peaks, else the title names it (the same rule as
    the Pareto plot's memory axis: a far limit would squeeze the peaks into a line).
    """
    import plotly.express as px
    from matplotlib.figure import Figure

    from search.results._plot_layout import memory_axis

    # A training that ended before its verdict (interrupted, failed, cut by a time limit) peaked
    # lower than its config would: its partial peak is not what the knob costs.
    ended = frame["status"].isin(["ok", "memory_limit"])
    measured = frame[ended & frame["duplicate_of"].isna() & frame["peak_host_bytes"].notna()].copy()
    measured["peak host (GiB)"] = measured["peak_host_bytes"].astype(float) / GIB
    measured["workers"] = measured["workers"].astype(str)
    limit_gib = memory_limit / GIB
    limit_shown = memory_axis(measured["peak host (GiB)"].tolist(), [], limit_gib).limit_side == ""
    note = "" if limit_shown else f"memory limit {limit_gib:.2f} GiB: off the chart"
    figure = px.scatter(
        measured,
        x=x,
        y="peak host (GiB)",
        color=colour,
        symbol="status",
        hover_data=["number", "batch", "imgsz", "cache", "workers", "amp", "status"],
        title=f"{title}<br><sup>{note}</sup>" if note else title,
    )
    image = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    axes = image.add_subplot()
    markers = dict(zip(sorted(measured["status"].unique()), "os^Dv<>", strict=False))
    for (value, status), group in measured.groupby([colour, "status"]):
        axes.scatter(group[x], group["peak host (GiB)"], marker=markers[status], label=f"{value}, {status}")
    if limit_shown:
        figure.add_hline(y=limit_gib, line_dash="dash", annotation_text="memory limit")
        axes.axhline(limit_gib, linestyle="--", color="#444444", label="memory limit")
    axes.set(xlabel=x, ylabel="peak host (GiB)", title=f"{title}\n{note}" if note else title)
    axes.grid(True, alpha=0.3)
    axes.legend(title=f"{colour}, status", fontsize=8)
    return WithImage(figure, image)
