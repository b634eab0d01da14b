"""A study's results: the trials table, the front, plots, export (``search.load_study`` and the CLI)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.results._export import ExportChoice, choose_config
    from search.results._frame import front, hypervolume, trials_frame
    from search.results._load import load_study
    from search.results._notebook import WithImage
    from search.results._plot import ParetoPlotData, pareto_plot_data
    from search.results._render import render_matplotlib, render_plotly, write_plot
    from search.results._results import StudyResults

__all__ = [
    "ExportChoice",
    "ParetoPlotData",
    "StudyResults",
    "WithImage",
    "choose_config",
    "front",
    "hypervolume",
    "load_study",
    "pareto_plot_data",
    "render_matplotlib",
    "render_plotly",
    "trials_frame",
    "write_plot",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ExportChoice": "search.results._export",
        "choose_config": "search.results._export",
        "front": "search.results._frame",
        "hypervolume": "search.results._frame",
        "trials_frame": "search.results._frame",
        "WithImage": "search.results._notebook",
        "ParetoPlotData": "search.results._plot",
        "pareto_plot_data": "search.results._plot",
        "render_matplotlib": "search.results._render",
        "render_plotly": "search.results._render",
        "write_plot": "search.results._render",
        "StudyResults": "search.results._results",
        "load_study": "search.results._load",
    },
)
