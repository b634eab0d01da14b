"""The Pareto plot: its data, the PNG and the self-contained HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from PIL import Image

from search.errors import InputError
from search.plot import ParetoPlotData, pareto_plot_data, render_plotly, write_plot
from search.report import trials_frame
from search.study import open_study, storage_url
from search.studyfile import load_study_spec

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
        assert row["peak_gib"] == pytest.approx(row["peak_host_bytes"] / GIB)
        assert "batch" in row["hover"] and "imgsz" in row["hover"] and "epoch" in row["hover"]
        assert row["label"].startswith("b")


def test_png_and_html(plot_data: ParetoPlotData, tmp_path: Path) -> None:
    png = write_plot(plot_data, tmp_path / "front.png")
    _assert_image(png)
    html = write_plot(plot_data, tmp_path / "out" / "front.html").read_text()
    points = plot_data.points
    layers = {
        "Pareto front": points["pareto"],
        "dominated": points["dominated"],
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
        "batch": optuna.distributions.CategoricalDistribution([4, 8]),
        "imgsz": optuna.distributions.IntDistribution(64, 96, step=32),
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
    ``search.optimize._tell`` writes, because making real trials cross a limit here would take real
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
