"""A study whose memory objective is peak_gpu ranks its front on GPU memory.

No GPU exists here: the GPU peaks are stand-in figures, stored as a CUDA trial would store them, so
that the decision logic (front, budgets, planner) and the views (report, plot, export) are tested on
them; the figures themselves are measured only on a GPU (bench/gpu_check.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd
import pytest

import search
from search.accuracy import (
    MEMORY_SPREAD,
    AccuracyEstimates,
    NoiseRules,
    Training,
    estimate_accuracy,
    export_decisions,
    needs_no_more_gpu_memory,
    noise_front,
)
from search.results._frame import FRAME_COLUMNS, apply_estimates, front, hypervolume
from search.study._replicates import replicate_candidates
from search.study._spec import MemoryAxis
from search.study._stored import read_trials
from search.study._trainings import TrainingState

from .conftest import run_cli
from .synthetic import GIB, knobs, stored_study_file, stored_trial

A, B, C, D, E = (8, 96, False), (8, 128, False), (16, 96, False), (16, 128, False), (8, 160, False)
# accuracy config: (mean accuracy, host peak GiB, GPU peak GiB or None: trained without CUDA)
FIGURES = {
    A: (0.21, 1.00, 2.0),
    B: (0.41, 1.10, 3.0),  # better than A beyond noise
    C: (0.42, 1.30, 2.5),  # within noise of B: more host memory, less GPU memory
    D: (0.30, 1.20, 4.0),  # beaten by B beyond noise, and B is leaner by construction
    E: (0.44, 1.40, None),  # within noise of B and C, trained without CUDA
}


def _trainings() -> list[Training]:
    trainings = []
    for index, (key, (accuracy, host, gpu)) in enumerate(FIGURES.items()):
        for seed, sign in enumerate((1, -1)):
            trainings.append(
                Training(
                    number=2 * index + seed,
                    config=knobs(key[0], key[1]),
                    seed=seed,
                    accuracy=accuracy + sign * 0.01,
                    peak_host_bytes=host * GIB,
                    peak_gpu_bytes=None if gpu is None else gpu * GIB,
                )
            )
    return trainings


def _estimates(memory: MemoryAxis) -> AccuracyEstimates:
    return estimate_accuracy(_trainings(), memory=memory)


def test_the_front_ranks_the_studys_memory() -> None:
    host = noise_front(_estimates("host"))
    assert [p.estimate.key for p in host] == [A, B, C, E]
    assert [p.equivalent_to for p in host] == [None, None, B, B]  # more host memory for noise
    gpu = noise_front(_estimates("gpu"))
    # E has no GPU figure; B is within noise of C, which needs less GPU memory; D stays beaten.
    assert [p.estimate.key for p in gpu] == [A, C, B]
    assert [p.equivalent_to for p in gpu] == [None, None, C]
    assert [p.memory_bytes for p in gpu] == [2.0 * GIB, 2.5 * GIB, 3.0 * GIB]


def test_less_gpu_memory_is_shown_by_construction_or_by_figures_apart_beyond_the_spread() -> None:
    configs = _estimates("gpu").configs
    # 8/96 against 8/128: leaner by construction, whatever the figures.
    assert needs_no_more_gpu_memory(configs[A], configs[B])
    assert not needs_no_more_gpu_memory(configs[B], configs[A])
    # 16/96 against 8/128: the figures decide, beyond the spread only.
    assert needs_no_more_gpu_memory(configs[C], configs[B])
    close = estimate_accuracy(
        [
            *_trainings()[:4],
            *[
                Training(
                    number=10 + seed, config=knobs(16, 96), seed=seed, accuracy=0.42, peak_host_bytes=GIB,
                    peak_gpu_bytes=3.0 * GIB * (1 - MEMORY_SPREAD / 2),
                )
                for seed in (0, 1)
            ],
        ],
        memory="gpu",
    ).configs  # fmt: skip
    assert not needs_no_more_gpu_memory(close[C], close[B])
    assert not needs_no_more_gpu_memory(configs[C], configs[E])  # no GPU figure: nothing shown


def _frame(memory: MemoryAxis) -> pd.DataFrame:
    rows = [
        {**dict.fromkeys(FRAME_COLUMNS), **t.config, "number": t.number, "duplicate_of": None}
        for t in _trainings()
    ]
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    apply_estimates(frame, _estimates(memory))
    return frame


def test_the_frame_marks_the_gpu_front_and_its_hypervolume_uses_gpu_figures() -> None:
    frame = _frame("gpu")
    shown = front(frame)
    assert list(shown["number"]) == [0, 4, 2]  # A, C, B: least GPU memory first
    assert list(shown["front_memory_bytes"]) == [2.0 * GIB, 2.5 * GIB, 3.0 * GIB]
    assert list(shown["equivalent_to"]) == [None, None, 4]
    limit = 4 * GIB
    # The means' step: A's 0.21 from 2 to 2.5 GiB, C's 0.42 from 2.5 to 4 (B adds nothing).
    expected = 0.21 * 0.5 + 0.42 * 1.5
    assert hypervolume(frame, accuracy="map50_95", memory_limit=limit) == pytest.approx(expected)
    assert hypervolume(frame, accuracy="map50_95", memory_limit=None) == 0.0
    assert list(front(_frame("host"))["number"]) == [0, 2, 4, 8]


def test_export_decisions_and_replicates_follow_the_gpu_front() -> None:
    gpu = _estimates("gpu")
    # GPU budgets at each config's highest GPU peak and where it fits with the spread: down to
    # 2.5 GiB C (B is within noise of it and needs more GPU memory, though less host memory), then
    # A; E never (no GPU figure).
    assert export_decisions(gpu) == [C, A]
    assert export_decisions(_estimates("host")) == [B, A]  # E within noise of B, with more memory
    # Replicates go to front neighbours within noise of each other: E is one only on host memory.
    assert set(replicate_candidates(gpu, max_replicates=3)) == {B, C}
    assert set(replicate_candidates(_estimates("host"), max_replicates=3)) == {B, C, E}


def _stored_trials() -> list[optuna.trial.FrozenTrial]:
    """The trainings as a GPU study stores them; E's without a GPU figure (as if CUDA had not been
    used), to show how the views draw one."""
    return [
        stored_trial(
            config=knobs(key[0], key[1]),
            values=[accuracy + sign * 0.01, (host if gpu is None else gpu) * GIB],  # Optuna: the GPU peak
            violation=-1.0,
            seed=seed,
            peak_host_bytes=int(host * GIB),
            peak_gpu_bytes=None if gpu is None else int(gpu * GIB),
            gpu_total_bytes=None if gpu is None else 80 * GIB,
        )
        for key, (accuracy, host, gpu) in FIGURES.items()
        for seed, sign in enumerate((1, -1))
    ]


def test_the_planner_reads_a_gpu_studys_trainings_on_gpu_memory() -> None:
    state = TrainingState.of(
        read_trials(_stored_trials()), accuracy="map50_95", first_seed=0, rules=NoiseRules(), memory="gpu"
    )
    assert state.estimates.memory_axis == state.measured.memory_axis == "gpu"
    assert [p.estimate.key for p in noise_front(state.estimates)] == [A, C, B]
    assert set(replicate_candidates(state.estimates, max_replicates=3)) == {B, C}


def _gpu_study(tmp_path: Path, tiny_data: Path, *, keys: dict[str, object] | None = None) -> Path:
    trials = _stored_trials()
    return stored_study_file(
        tmp_path, name="gpu", data=tiny_data, limit=2 * GIB, trials=trials, memory_objective="peak_gpu",
        keys=keys,
    )  # fmt: skip


def test_a_gpu_study_reports_plots_and_exports_its_gpu_front(tmp_path: Path, tiny_data: Path) -> None:
    study = _gpu_study(tmp_path, tiny_data)
    results = search.load_study(study)
    assert results.front_memory == "GPU" and results.front_limit_bytes == 80 * GIB  # the GPU's own memory
    assert list(results.front()["number"]) == [0, 4, 2]
    note = results.memory_note
    assert note is not None and "median GPU peak" in note and "--max-memory weigh host memory" in note
    data = results.plot_data()
    assert data.x_title == "peak GPU memory (GiB)" and "peak GPU memory" in data.title
    assert list(data.front["number"]) == [0, 4, 2]
    assert list(data.front["peak_bytes"]) == [2 * GIB, 2.5 * GIB, 3 * GIB]
    assert data.limit_text.startswith("the GPU's memory 80.00 GiB")

    report = run_cli("report", str(study), "--json", str(tmp_path / "r.json"), timeout=120)
    assert report.returncode == 0, report.stderr
    text = report.stdout.replace("\n", " ")
    assert "vs peak GPU memory, the GPU's 80.00 GiB" in text and note in report.stdout.replace("\n", "")
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["front_memory"] == "gpu" and payload["front_limit_bytes"] == 80 * GIB
    assert [p["number"] for p in payload["front"]] == [0, 4, 2]
    assert [p["front_memory_bytes"] for p in payload["front"]] == [2 * GIB, 2.5 * GIB, 3 * GIB]
    assert payload["hypervolume"] == pytest.approx(results.hypervolume())
    plotted = run_cli("plot", str(study), "-o", str(tmp_path / "front.png"), timeout=120)
    assert plotted.returncode == 0 and (tmp_path / "front.png").stat().st_size > 0, plotted.stderr
    assert note in plotted.stderr.replace("\n", "")
    # E trained without a GPU figure: it has no place on the GPU axis (the axis stays zoomed to the
    # others), and the caption counts it.
    assert not data.points["number"].isin([8, 9]).any() and data.x_range[1] < 10
    assert data.not_plotted == {"without a GPU figure": 2} and "2 without a GPU figure" in data.caption
    # Within 3 GiB, B and C are within noise of each other: C, which needs less GPU memory (the
    # front's B "within noise of" C), though more host memory.
    export = run_cli("export", str(study), "--max-gpu-memory", "3GiB", "--format", "json", timeout=120)
    assert export.returncode == 0 and note in export.stderr.replace("\n", ""), export.stderr
    picked = json.loads(export.stdout)
    assert picked["trial"] == 4 and picked["gpu_within_spread"] is False
    # At 2.55 GiB only C's 2.5 GiB fits, within memory's spread: said, in the lines and the JSON.
    close = run_cli("export", str(study), "--max-gpu-memory", "2.55GiB", "--format", "json", timeout=120)
    assert close.returncode == 0 and json.loads(close.stdout)["gpu_within_spread"] is True, close.stderr
    warning = "its highest GPU peak 2.50 GiB is within memory's 4% spread of the GPU budget"
    assert warning in close.stderr.replace("\n", " ")

    # With a GPU limit in the study file, that is the front's limit.
    limited_study = _gpu_study(tmp_path / "limited", tiny_data, keys={"gpu_memory_limit": "5GiB"})
    limited = search.load_study(limited_study)
    assert limited.front_limit_bytes == 5 * GIB
    assert limited.plot_data().limit_text.startswith("GPU memory limit 5.00 GiB")
    assert limited.hypervolume() == pytest.approx(0.21 * 0.5 + 0.42 * 2.5, rel=1e-3)


def test_a_study_file_with_other_objectives_is_refused_by_every_view(tmp_path: Path, tiny_data: Path) -> None:
    # Read as a host study, the stored GPU figures would be ranked under host memory's name.
    study = _gpu_study(tmp_path, tiny_data)
    study.write_text(study.read_text().replace("peak_gpu", "peak_host"))
    for command in (["report"], ["plot", "-o", str(tmp_path / "f.png")], ["export"]):
        done = run_cli(command[0], str(study), *command[1:], timeout=120)
        assert done.returncode == 2 and "has objectives ['map50_95', 'peak_gpu']" in done.stderr
        assert "Traceback" not in done.stderr and not (tmp_path / "f.png").exists()
    with pytest.raises(search.InputError, match="has objectives"):
        search.load_study(study)
