"""The Pareto plot: its data, the PNG and the self-contained HTML."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from PIL import Image

from search.errors import InputError
from search.results._frame import trials_frame
from search.results._notebook import WithImage
from search.results._plot import ParetoPlotData, pareto_plot_data
from search.results._render import matplotlib_figure, render_plotly, write_plot
from search.study._prepare import open_study, storage_url
from search.study._spec import load_study_spec

from .synthetic import knobs

GIB = 1024**3


@pytest.fixture(scope="module")
def tiny_frame(tiny_study: Path) -> tuple[pd.DataFrame, int]:
    """The tiny study's trials and its memory limit."""
    spec = load_study_spec(tiny_study)
    study = open_study(spec, storage_url(spec, tiny_study), create=False)
    return trials_frame(study), spec.memory_limit


@pytest.fixture(scope="module")
def plot_data(tiny_frame: tuple[pd.DataFrame, int]) -> ParetoPlotData:
    frame, limit = tiny_frame
    return pareto_plot_data(frame, accuracy="map50_95", memory_limit=limit, study_name="tiny")


def _assert_image(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 10_000
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert width >= 600 and height >= 400
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 20


@pytest.mark.slow  # the plot of a real tiny study
def test_data_matches_the_frame(tiny_frame: tuple[pd.DataFrame, int], plot_data: ParetoPlotData) -> None:
    frame, limit = tiny_frame
    originals = frame[frame["duplicate_of"].isna()]
    expected_front = set(originals[originals["pareto"] & originals["feasible"]]["number"])
    points = plot_data.points
    assert set(points[points["pareto"]]["number"]) == expected_front
    assert expected_front, "the tiny study has at least one feasible trial"
    assert set(points["number"]) == set(originals[originals["state"] == "COMPLETE"]["number"])
    flags = points[["pareto", "dominated", "infeasible"]].astype(int).sum(axis=1)
    assert (flags == 1).all()
    # The step line starts and ends on front points and never goes down or left.
    front = plot_data.front
    assert plot_data.step_x[0] == front["peak_gib"].iloc[0]
    assert plot_data.step_x[-1] == front["peak_gib"].iloc[-1]
    assert len(plot_data.step_x) == 2 * len(front) - 1
    assert all(b >= a for a, b in zip(plot_data.step_x, plot_data.step_x[1:], strict=False))
    assert all(b >= a for a, b in zip(plot_data.step_y, plot_data.step_y[1:], strict=False))
    assert plot_data.memory_limit_bytes == limit
    assert plot_data.memory_limit_gib == pytest.approx(limit / GIB)
    assert plot_data.accuracy_name == "mAP50-95"
    for _, row in points.iterrows():
        assert row["peak_gib"] == pytest.approx(row["peak_bytes"] / GIB)
        assert "batch" in row["hover"] and "imgsz" in row["hover"] and "epoch" in row["hover"]
        # Every front point is labelled by its knobs; another training of a labelled config is not.
        assert row["label"].startswith("b") or (row["dominated"] and row["label"] == "")
    labels = points.loc[points["label"] != "", "label"]
    assert labels.is_unique


@pytest.mark.slow  # the plot of a real tiny study
def test_png_and_html(plot_data: ParetoPlotData, tmp_path: Path) -> None:
    png = write_plot(plot_data, tmp_path / "front.png")
    _assert_image(png)
    html = write_plot(plot_data, tmp_path / "out" / "front.html").read_text()
    points = plot_data.points
    layers = {
        "Pareto front": points["pareto"],
        "other trainings": points["dominated"],
        "over the memory limit": points["infeasible"],
    }
    for name, members in layers.items():
        assert (f'"name":"{name} ({int(members.sum())})"' in html) == bool(members.any()), name
    assert '"name":"front step line"' in html
    assert "memory limit 6.00 GiB" in html
    assert "<script src=" not in html or "cdn.plot.ly" not in html  # self-contained: no CDN
    assert len(html) > 1_000_000  # plotly.js is inlined
    svg = write_plot(plot_data, tmp_path / "front.svg")
    assert svg.read_text().lstrip().startswith("<?xml")


@pytest.mark.slow  # the plot of a real tiny study
def test_unknown_suffix(plot_data: ParetoPlotData, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown plot format"):
        write_plot(plot_data, tmp_path / "front.jpg")
    with pytest.raises(InputError, match="accuracy"):
        pareto_plot_data(pd.DataFrame(), accuracy="loss", memory_limit=GIB, study_name="x")


def _constructed_trial(
    number: int,
    *,
    status: str,
    config: dict[str, Any],
    peak: int | None,
    limit: int,
    map50_95: float | None = None,
) -> optuna.trial.FrozenTrial:
    distributions = {
        "batch": optuna.distributions.CategoricalDistribution([4, 8, 16, 32]),
        "imgsz": optuna.distributions.IntDistribution(64, 640, step=32),
    }
    attrs: dict[str, Any] = {
        "status": status,
        "config": config,
        "record": {"status": status, "memory": {}, "used": {}, "wall_seconds": 1.0, "error": None},
        "map50": map50_95,
        "map50_95": map50_95,
        "fitness": map50_95,
        "peak_host_bytes": peak,
        "peak_gpu_bytes": None,
        "epoch_seconds": 2.5 if peak else None,
    }
    params = {"batch": config["batch"], "imgsz": config["imgsz"]}
    if status == "memory_limit":
        attrs["constraint"] = [max(1.0, float((peak or limit) - limit))]
        return optuna.trial.create_trial(
            params=params,
            distributions=distributions,
            values=[0.0, float(peak or limit)],
            user_attrs=attrs,
        )
    if status == "ok":
        attrs["constraint"] = [float((peak or 0) - limit)]
        return optuna.trial.create_trial(
            params=params,
            distributions=distributions,
            values=[float(map50_95 or 0), float(peak or 0)],
            user_attrs=attrs,
        )
    return optuna.trial.create_trial(
        params=params,
        distributions=distributions,
        state=optuna.trial.TrialState.FAIL,
        user_attrs=attrs,
    )


def test_all_infeasible_still_renders(tmp_path: Path) -> None:
    """A study whose every trial crossed the limit: points, limit, and a title saying so.

    These trial records are constructed with ``optuna.trial.create_trial``, shaped like the ones
    ``search.study._optimize._tell`` writes, because making real trials cross a limit here would take real
    training time; the real all-infeasible study is exercised end to end by the CLI tests.
    """
    limit = GIB // 4
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, (batch, imgsz, peak) in enumerate([(4, 64, limit + 10_000_000), (8, 96, limit + 90_000_000)]):
        config = {"batch": batch, "imgsz": imgsz, "cache": "ram", "workers": 1, "amp": False}
        study.add_trial(
            _constructed_trial(number, status="memory_limit", config=config, peak=peak, limit=limit)
        )
    failed = {"batch": 8, "imgsz": 64, "cache": "none", "workers": 0, "amp": False}
    study.add_trial(_constructed_trial(2, status="failed", config=failed, peak=None, limit=limit))
    frame = trials_frame(study)
    data = pareto_plot_data(frame, accuracy="map50_95", memory_limit=limit, study_name="squeezed")
    assert data.front.empty and data.step_x == [] and data.step_y == []
    assert "no feasible trial" in data.title
    assert data.points["infeasible"].all() and len(data.points) == 2
    assert (data.points["y"] == 0).all() and data.points["accuracy"].isna().all()
    assert data.not_plotted == {"failed": 1}
    assert "1 failed" in data.caption
    _assert_image(write_plot(data, tmp_path / "empty.png"))
    html = write_plot(data, tmp_path / "empty.html").read_text()
    assert "no feasible trial" in html and "memory limit 256 MiB" in html
    figure = render_plotly(data)
    names = [trace.name for trace in figure.data]
    assert names == ["front step line", "over the memory limit (2)"]


# Shaped like the demo study's results (its front lies between 1.09 and 1.40 GiB, far under its
# 6 GiB limit): (batch, imgsz, cache, workers, peak GiB, mAP50-95).
DEMO_LIKE = [
    (8, 96, "none", 0, 1.09, 0.237),
    (8, 128, "none", 0, 1.12, 0.280),
    (8, 160, "none", 0, 1.17, 0.333),
    (16, 96, "disk", 1, 1.26, 0.3333),
    (16, 128, "none", 1, 1.40, 0.380),
    (16, 128, "disk", 0, 1.21, 0.308),
    (8, 160, "ram", 1, 1.33, 0.315),
    (16, 128, "none", 0, 1.18, 0.308),
    (8, 128, "none", 1, 1.25, 0.275),
    (8, 160, "none", 1, 1.32, 0.3146),
]


def demo_like_frame(limit: int, *, rows: list[tuple[Any, ...]] | None = None) -> pd.DataFrame:
    """A trials frame like the demo study's (or of ``rows``) and one trial 200 MiB over ``limit``,
    built from constructed trials as in :func:`test_all_infeasible_still_renders`."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    for number, (batch, imgsz, cache, workers, gib, accuracy) in enumerate(rows or DEMO_LIKE):
        config = {"batch": batch, "imgsz": imgsz, "cache": cache, "workers": workers, "amp": False}
        trial = _constructed_trial(
            number, status="ok", config=config, peak=int(gib * GIB), limit=limit, map50_95=accuracy
        )
        study.add_trial(trial)
    config = {"batch": 32, "imgsz": 320, "cache": "ram", "workers": 4, "amp": False}
    peak = limit + 200 * 1024**2
    study.add_trial(_constructed_trial(99, status="memory_limit", config=config, peak=peak, limit=limit))
    return trials_frame(study)


def _demo_like(limit: int, **kwargs: Any) -> ParetoPlotData:
    frame = demo_like_frame(limit, **kwargs)
    return pareto_plot_data(frame, accuracy="map50_95", memory_limit=limit, study_name="demo-like")


def _labelled(data: ParetoPlotData) -> pd.DataFrame:
    return data.points[data.points["label_position"] != ""]


def _check_renderers_agree(data: ParetoPlotData) -> None:
    """Both renderers show the data's axis ranges and labels, and matplotlib's labels do not overlap."""
    figure = render_plotly(data)
    assert tuple(figure.layout.xaxis.range) == data.x_range
    assert tuple(figure.layout.yaxis.range) == data.y_range
    texts = [text for trace in figure.data[1:] for text in trace.text if text]
    assert sorted(texts) == sorted(_labelled(data)["label"])
    assert any(data.limit_text in annotation.text for annotation in figure.layout.annotations)
    limit_lines = [shape for shape in figure.layout.shapes if shape.x0 == data.memory_limit_gib]
    assert len(limit_lines) == int(data.limit_shown)

    fig = matplotlib_figure(data)
    fig.canvas.draw()  # type: ignore[attr-defined]
    ax = fig.axes[0]
    assert ax.get_xlim() == pytest.approx(data.x_range) and ax.get_ylim() == pytest.approx(data.y_range)
    assert sorted(text.get_text() for text in ax.texts) == sorted(_labelled(data)["label"])
    boxes = [text.get_window_extent() for text in ax.texts]
    for i, box in enumerate(boxes):
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other), "two labels overlap in the PNG"
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert data.limit_text in legend


def test_memory_axis_zooms_to_the_trials_when_the_limit_is_far() -> None:
    """The demo's case: a front at 1.09-1.40 GiB under 6 GiB was one vertical line on a 0-6.6 GiB axis."""
    data = _demo_like(6 * GIB)
    low, high = data.x_range
    assert 1.0 < low < 1.09 and 1.40 < high < 1.5
    assert not data.limit_shown
    assert data.limit_text == "memory limit 6.00 GiB (off the chart, right)"
    points = data.points
    feasible, over = points[points["feasible"]], points[points["infeasible"]]
    assert (feasible["x"] == feasible["peak_gib"]).all() and not feasible["clipped"].any()
    # The trial over the limit sits on the right edge, and its label says where it really is.
    assert over["clipped"].all() and (over["x"] == high).all()
    assert over["label"].iloc[0].endswith("(6.20 GiB)")
    assert "beyond the memory axis" in data.caption
    # Spread out, every front point gets its label.
    assert (data.front["label_position"] != "").all()
    _check_renderers_agree(data)


def test_limit_is_drawn_when_near() -> None:
    data = _demo_like(int(1.5 * GIB))
    low, high = data.x_range
    assert data.limit_shown and data.limit_text == "memory limit 1.50 GiB"
    assert low < 1.09 and 1.5 < high < 1.9
    over = data.points[data.points["infeasible"]]
    assert not data.points["clipped"].any() and (over["x"] == over["peak_gib"]).all()
    assert "beyond" not in data.caption
    _check_renderers_agree(data)


def test_overlapping_labels_are_left_out() -> None:
    """Six front trials within 5 MiB and 0.003 of each other: fewer labels than points, the front's
    first (least memory first), and none overlapping in either renderer."""
    cluster = [(8, 96 + 32 * i, "none", 0, 1.2 + 0.001 * i, 0.3 + 0.0005 * i) for i in range(6)]
    data = _demo_like(6 * GIB, rows=cluster)
    front = data.front
    assert len(front) == 6
    labelled = _labelled(data)
    assert 1 <= len(labelled) < len(data.points)
    assert front["label_position"].iloc[0] != ""
    _check_renderers_agree(data)


def test_notebook_output_carries_a_png() -> None:
    """One output, two forms: plotly's figure for Jupyter, the matplotlib PNG for a code host."""
    import plotly.io as pio

    data = _demo_like(6 * GIB)
    shown = WithImage(render_plotly(data), matplotlib_figure(data))
    previous, pio.renderers.default = pio.renderers.default, "plotly_mimetype"
    try:
        bundle = shown._repr_mimebundle_()
    finally:
        pio.renderers.default = previous
    assert set(bundle) == {"application/vnd.plotly.v1+json", "image/png"}
    with Image.open(io.BytesIO(base64.b64decode(bundle["image/png"]))) as image:
        assert image.format == "PNG" and image.size == (990, 660)
    assert repr(shown) == "<plot: demo-like: mAP50-95 vs peak host memory (5 on the Pareto front)>"


def test_a_notebook_plot_saves_as_png_or_html(tmp_path: Path) -> None:
    data = _demo_like(6 * GIB)
    shown = WithImage(render_plotly(data), matplotlib_figure(data))
    with Image.open(shown.save(tmp_path / "front.png")) as image:
        assert image.format == "PNG" and image.size == (990, 660)
    page = shown.save(tmp_path / "front.html").read_text()
    assert "<html>" in page and "Plotly.newPlot" in page and "<script src=" not in page  # opens offline
    with pytest.raises(InputError, match=r"save a plot as .png or .html, not 'front.jpg'"):
        shown.save(tmp_path / "front.jpg")
    assert not (tmp_path / "front.jpg").exists()


def test_the_accuracy_axis_never_goes_below_zero() -> None:
    from search.results._plot_layout import value_range

    assert value_range([0.0, 0.0])[0] == 0.0 and value_range([0.0, 0.0])[1] > 0
    assert value_range([0.01, 0.4])[0] == 0.0
    low, high = value_range([0.3, 0.4])
    assert 0 < low < 0.3 and high > 0.4


def test_the_accuracy_axis_does_not_magnify_differences_far_below_any_resolution() -> None:
    from search.results._plot_layout import value_range

    # Trainings that learned next to nothing: their spread of 0.00002 is not a trade-off to show.
    low, high = value_range([0.00015, 0.00017])
    assert low == 0.0 and high >= 0.05
    low, high = value_range([0.300, 0.301])
    assert high - low >= 0.05 and low < 0.300 < 0.301 < high
    low, high = value_range([0.2, 0.5])
    assert high - low < 0.5 * 1.3  # a real spread keeps its own scale


def test_the_knob_plot_leaves_out_trainings_that_ended_before_their_verdict() -> None:
    from search.results._notebook import knob_plot

    rows = [
        {**knobs(8, 96), "number": 0, "status": "ok", "peak_host_bytes": 1.1 * GIB},
        {**knobs(8, 128), "number": 1, "status": "memory_limit", "peak_host_bytes": 2.0 * GIB},
        {**knobs(8, 160), "number": 2, "status": "interrupted", "peak_host_bytes": 0.9 * GIB},
        {**knobs(16, 96), "number": 3, "status": "failed", "peak_host_bytes": 0.7 * GIB},
    ]
    frame = pd.DataFrame([{**row, "duplicate_of": None} for row in rows])
    shown = knob_plot(frame, memory_limit=2 * GIB, x="imgsz", colour="cache", title="t")
    plotted = sorted(float(y) for trace in shown.figure.data for y in trace.y)
    assert plotted == pytest.approx([1.1, 2.0])
