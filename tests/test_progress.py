"""What ``run`` prints for each finished trial and probe (search.study._progress), on synthetic records."""

from __future__ import annotations

import dataclasses
import io
from types import SimpleNamespace
from typing import Any

from search.probe import ProbeResult
from search.study._optimize import StudyOutcome
from search.study._progress import live_display, outcome_lines, probe_line, trial_line
from search.study._spec import StudySpec

from .synthetic import GIB, knobs, record

LIMIT = int(1.3 * GIB)


def _probe(peak: int, status: str = "ok") -> ProbeResult:
    config = knobs(16, 160, cache="ram")
    return ProbeResult(
        knobs=config, status=status, peak_host_bytes=peak, peak_gpu_bytes=None, peak_phase="validation",
        images_per_second=100.0, projected_epoch_seconds=34.1, projected_train_seconds=30.0,
        validation_seconds=4.1, seconds=15.4, train_images=2400, val_images=64, train={"batches": 10},
        val={"batches": 2}, error=None, record={"limits": {"memory_limit_bytes": LIMIT}},
    )  # fmt: skip


def _trial(peak: int) -> Any:
    return dataclasses.replace(record(peak=peak), limits={"memory_limit_bytes": LIMIT})


def test_a_run_that_ended_ok_above_its_limit_says_it_does_not_fit() -> None:
    # The demo's first command at 1a31d8e printed "probe ok ... peak 1.31 GiB" under a 1.30 GiB
    # limit: the kernel's high-water mark raised the peak after the run.
    above, below = int(1.31 * GIB), int(1.2 * GIB)
    plan = SimpleNamespace(reason="near the budget")
    assert "above the limit after the run" in probe_line(plan, _probe(above))
    assert "~34.1 s/epoch" in probe_line(plan, _probe(above))  # the speed it measured stays
    assert "above the limit" not in probe_line(plan, _probe(below))
    assert "above the limit after the run" in trial_line(3, _trial(above))
    assert "above the limit" not in trial_line(3, _trial(below))
    # A run stopped at its limit says so already (its status); no limit, nothing to say.
    assert "above the limit after the run" not in probe_line(plan, _probe(above, status="memory_limit"))
    assert "above the limit" not in trial_line(3, record(peak=above))


def test_a_live_bar_only_on_a_terminal_for_one_job() -> None:
    from rich.console import Console

    # A log file or a pipe kept the bar's last frame, cut to 80 columns ("d… trial 6: ... ho…").
    assert not live_display(Console(file=io.StringIO()), None)
    assert live_display(Console(file=io.StringIO(), force_terminal=True), None)
    assert not live_display(Console(file=io.StringIO(), force_terminal=True), "[job 0 cpu] ")


def test_a_trial_on_a_gpu_shows_its_gpu_peak_beside_its_host_peak() -> None:
    # A stand-in GPU figure (no GPU here): what a CUDA trial's line shows.
    on_gpu = dataclasses.replace(record(peak=GIB), peak_gpu_bytes=3 * GIB)
    assert "peak 1.00 GiB (GPU 3.00 GiB)  2.0 s/epoch" in trial_line(3, on_gpu)
    assert "GPU" not in trial_line(3, record(peak=GIB))


def test_a_failed_trial_says_why_naming_the_users_data_yaml() -> None:
    # A label with a class id beyond the names fails every trial alike: the run's line says why,
    # with the user's data yaml, not the trial's own copy of it (removed with the trial's folder).
    copy = "/tmp/memfront-trial-6208-igr1hjk4/data.yaml"
    failed = dataclasses.replace(
        record("failed", map50_95=None, config={**knobs(), "data": "/d/my data.yaml"}),
        error="Traceback (most recent call last):\n  ...\n"
        f"AssertionError: Label class 7 exceeds nc=3 in {copy}",
    )
    line = trial_line(0, failed)
    assert "AssertionError: Label class 7 exceeds nc=3 in /d/my data.yaml" in line and copy not in line
    assert "Traceback" not in line and "Label class" not in trial_line(0, record())
    assert len(dataclasses.replace(failed, error="x" * 1000).error_line() or "") == 240
    # A quoted copy keeps its quotes; a user's path with backslashes is no regex template.
    windows = dataclasses.replace(failed, requested={**failed.requested, "data": "C:\\d\\data.yaml"})
    quoted = dataclasses.replace(windows, error=f"FileNotFoundError: '{copy}'").error_line()
    assert quoted == "FileNotFoundError: 'C:\\d\\data.yaml'"
    # yolov5's coloured prefix and a file of the trial's folder: the same line for every trial.
    cache = "AssertionError: \x1b[34m\x1b[1mtrain: \x1b[0mNo labels found in {}/train.cache, can not start"
    lines = {
        dataclasses.replace(failed, error=cache.format(f"/tmp/memfront-trial-{n}-abc{n}")).error_line()
        for n in (1, 2)
    }
    assert lines == {"AssertionError: train: No labels found in <trial folder>/train.cache, can not start"}
    # Only the trial's own path, without the punctuation around it or a user's file of a like name.
    around = "OSError: (/tmp/memfront-trial-7-x/a.txt), /d/memfront-trial-notes.txt, /tmp/mf-7-y/b: gone"
    line = dataclasses.replace(failed, error=around).error_line()
    assert line == "OSError: (<trial folder>/a.txt), /d/memfront-trial-notes.txt, <trial folder>/b: gone"


def test_a_peak_no_sample_saw_is_not_given_a_phase() -> None:
    # With workers, a peak the kernel's high-water mark lifted above every sample may be a worker's
    # at any time or the main process's shut-down (search.trial._outcome.apply_kernel_floor).
    plan = SimpleNamespace(reason="near the budget")
    assert "(during validation)" in probe_line(plan, _probe(GIB))
    unplaced = dataclasses.replace(_probe(GIB), peak_phase=None)
    assert "(between samples)" in probe_line(plan, unplaced) and "during" not in probe_line(plan, unplaced)


def test_the_run_summary_counts_probes_that_measured_apart_from_those_that_failed() -> None:
    spec = StudySpec.model_validate({"name": "s", "data": "demo", "memory_limit": GIB, "n_trials": 4})
    ended = StudyOutcome(
        trained=2, total_finished=2, duplicates=0, interrupted=False, stop_reason="n_trials reached",
        wall_seconds=60.0, train_wall_seconds=50.0, probes=1, probe_seconds=12.0, probes_failed=2,
    )  # fmt: skip
    (line,) = [line for line in outcome_lines(spec, ended) if line.startswith("probes:")]
    assert line.startswith("probes: 1 full config measured on the whole dataset in 12")
    assert line.endswith(" s; 2 failed (their lines above say why)")
    failed_only = outcome_lines(spec, dataclasses.replace(ended, probes=0, probe_seconds=0.5))
    assert any(line.startswith("probes: 0 full configs measured") for line in failed_only)
