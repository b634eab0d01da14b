"""Probes: the plateau rule on synthetic readings, and real bounded yolov5 runs under supervision."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import pytest

from search.child._common import EventWriter, ProbeDone, ProbeEnd
from search.child.probe import BoundedLoader, PlateauRule
from search.probe import ProbeBounds, run_probe
from search.trial._config import TrialConfig, TrialLimits

from .conftest import child_temp_folders, run_cli, trainer_processes

PHASES = {"startup", "cache", "training", "validation", "checkpoint", "shutdown"}


def _phase_known_or_unplaceable(phase: str | None, record: dict[str, Any]) -> bool:
    """A peak falls in one of PHASES, or in none where the kernel's high-water mark lifted it above
    every sample of a tree of several processes (a worker's mark or the main process's shut-down:
    ``search.trial._record.peak_when``). CI at 340653f met the second: yolov5's label-scan pool."""
    memory = record["memory"]
    lifted = "high-water mark" in memory["method"] and memory["max_processes"] > 1
    return phase in PHASES or (phase is None and lifted)


def _readings(peaks: list[int], *, every_s: float = 0.5) -> list[tuple[float, int]]:
    return [(i * every_s, peak) for i, peak in enumerate(peaks)]


def test_the_rule_runs_at_least_the_minimum_and_stops_on_a_plateau() -> None:
    rule = PlateauRule(min_batches=6, max_batches=50, window=4)
    flat = _readings([1000] * 10)
    assert [rule.reason(flat[:n]) for n in (5, 6)] == [None, "plateau"]


def test_the_rule_goes_on_while_the_peak_grows_and_stops_at_the_maximum() -> None:
    rule = PlateauRule(min_batches=4, max_batches=12, window=4)
    growing = _readings([1000 + 50 * i for i in range(12)])
    assert all(rule.reason(growing[:n]) is None for n in range(1, 12))
    assert rule.reason(growing) == "max_batches"


def test_the_rule_waits_for_a_quiet_spell_in_seconds_not_only_in_batches() -> None:
    # Fast batches: 5 batches in 0.25 s are no evidence that the peak has settled.
    rule = PlateauRule(min_batches=4, max_batches=100, window=4)
    fast = _readings([1000] * 60, every_s=0.05)
    stops = next(n for n in range(1, 61) if rule.reason(fast[:n]))
    assert (stops - 1) * 0.05 >= 2.0


def test_more_workers_need_more_batches() -> None:
    few, many = (PlateauRule.for_workers(w, least=8, most=100, peak_file=None) for w in (0, 8))
    assert few.min_batches == 8 and many.min_batches > 4 * 8 and many.window > few.window
    assert PlateauRule.for_workers(8, least=8, most=10, peak_file=None).min_batches == 10


def test_the_bounded_loader_keeps_the_full_length_and_reads_the_peak_file(tmp_path: Path) -> None:
    peak_file = tmp_path / "peak.txt"
    peak_file.write_text("123456\n")
    loader = BoundedLoader(
        list(range(30)), PlateauRule(min_batches=3, max_batches=5, window=2, peak_file=peak_file)
    )
    assert len(loader) == 30 and list(loader) == [0, 1, 2, 3, 4]
    summary = loader.summary()
    assert (
        summary["batches"] == 5 and summary["batches_total"] == 30 and summary["stop_reason"] == "max_batches"
    )
    assert {peak for _, peak in loader.peaks} == {123456}
    assert list(loader) == [0, 1, 2, 3, 4]  # the next epoch runs to its own bound
    assert loader.summary()["passes"] == 2 and loader.summary()["batches"] == 10


def test_the_bounded_training_loop_ends_with_a_full_collection() -> None:
    # The real run's first full collection after its workers fork copies every page holding a
    # tracked object; a bounded epoch may end before it, so the probe's train loop runs it.
    collections: list[int] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(info["generation"])

    rule = PlateauRule(min_batches=1, max_batches=3, window=1, peak_file=None)
    gc.callbacks.append(seen)
    gc.disable()  # only the collection the loop runs itself (gc.collect runs while disabled)
    try:
        assert list(BoundedLoader(list(range(10)), rule, collect_at_end=True)) == [0, 1, 2]
        trained = list(collections)
        collections.clear()
        assert list(BoundedLoader(list(range(10)), rule)) == [0, 1, 2]
    finally:
        gc.enable()
        gc.callbacks.remove(seen)
    assert 2 in trained and 2 not in collections


def test_a_probe_ends_once_its_last_epoch_has_saved_its_checkpoint(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    end = ProbeEnd(EventWriter(str(events_file)), {"validation_passes": 2})
    end.validated(1, val_batches=4, val_seconds=2.0, bounded={})
    end.saved()  # the first epoch's checkpoint: the probe goes on
    assert not events_file.read_text()
    end.validated(2, val_batches=4, val_seconds=2.0, bounded={})
    (probe,) = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert probe["event"] == "probe" and probe["val"]["seconds_per_batch"] == 0.5
    with pytest.raises(ProbeDone):
        end.saved()  # the second epoch's save, or the next epoch's start if no save came
    training = ProbeEnd(EventWriter(str(tmp_path / "training.jsonl")), None)
    training.validated(5, val_batches=4, val_seconds=2.0, bounded={})
    training.saved()  # a training is never ended by it
    assert not (tmp_path / "training.jsonl").read_text()


@pytest.mark.slow
def test_a_probe_measures_the_whole_dataset_in_a_bounded_run(tiny_data: Path) -> None:
    # A subset asked for is ignored: memory and epoch time refer to the whole dataset.
    config = TrialConfig(
        data=str(tiny_data), batch=2, imgsz=64, cache="ram", workers=1, train_images=4, hyp="demo"
    )
    result = run_probe(
        config,
        bounds=ProbeBounds(train_min_batches=2, train_max_batches=3, val_min_batches=1, val_max_batches=2),
    )
    assert result.ok, result.error
    assert (result.train_images, result.val_images) == (16, 16)
    assert result.record["used"]["cache"] == "ram" and result.record["used"]["workers"] == 1
    # Two bounded epochs (ProbeBounds.validation_passes), each to its own plateau or bound.
    assert result.train["batches"] <= 2 * 3 and result.train["batches_total"] == 8
    assert result.val["batches"] <= 2 * 2 and result.val["batches_total"] > 2
    assert _phase_known_or_unplaceable(result.peak_phase, result.record)
    assert result.peak_host_bytes and result.peak_host_bytes > 100 * 2**20
    assert result.images_per_second and result.images_per_second > 0
    # One epoch of 8 train and 4 val batches at the measured rates.
    expected = (
        8 * result.train["seconds_per_batch"] + result.val["batches_total"] * result.val["seconds_per_batch"]
    )
    assert result.projected_epoch_seconds == pytest.approx(expected)
    assert 0 < result.seconds < 120
    assert [e["phase"] for e in result.record["timeline"]][:2] == ["startup", "cache"]
    passes = [e["split"] for e in result.record["timeline"] if e["phase"] == "validation"]
    assert passes == ["pass 1", "pass 2"]
    # Each epoch saves its checkpoint after its pass, as the real run does; the probe ends after the second.
    phases = [e["phase"] for e in result.record["timeline"]]
    assert phases.count("checkpoint") == 2 and phases[-2:] == ["checkpoint", "shutdown"]
    assert trainer_processes() == [] and child_temp_folders() == []


@pytest.mark.slow
def test_a_probe_over_its_limit_says_so_and_leaves_nothing(tiny_data: Path) -> None:
    config = TrialConfig(data=str(tiny_data), batch=2, imgsz=64, hyp="demo")
    result = run_probe(config, limits=TrialLimits(memory_limit_bytes=200 * 2**20))
    assert result.status == "memory_limit" and not result.ok
    assert result.projected_epoch_seconds is None and result.train_images == 16
    assert result.peak_host_bytes and result.peak_host_bytes > 200 * 2**20
    assert trainer_processes() == []


@pytest.mark.slow
def test_the_probe_command_writes_json_and_a_table(tiny_data: Path, tmp_path: Path) -> None:
    done = run_cli(
        "probe", "--data", str(tiny_data), "--batch", "4", "--imgsz", "64", "--cache", "disk",
        "--hyp", "demo", "--json", "-",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)  # stdout is the JSON alone, whatever the child printed
    for key in ("peak_host_bytes", "images_per_second", "projected_epoch_seconds", "seconds"):
        assert result[key] is not None, key
    assert _phase_known_or_unplaceable(result["peak_phase"], result["record"])
    assert result["status"] == "ok" and result["knobs"]["cache"] == "disk"
    assert result["val"]["stop_reason"] == "whole pass"  # by default, one whole validation pass
    assert "peak host memory" in done.stderr and "projected epoch" in done.stderr
    assert "the pass of a barely trained model" in " ".join(done.stderr.split())  # what validation is
    assert f"in 2 passes of {result['train']['batches_total']}" in done.stderr  # two bounded epochs
    assert not list(Path(tiny_data).parent.rglob("*.npy"))  # cache=disk files are the probe's, removed


def test_bad_probe_input_is_one_line(tiny_data: Path) -> None:
    for args, expected in (
        (["--data", "/no/such.yaml"], "data yaml not found"),
        (["--data", str(tiny_data), "--cache", "fast"], "--cache"),
        (["--data", str(tiny_data), "--amp", "maybe"], "--amp"),
        (["--data", str(tiny_data), "--memory-limit", "lots"], "--memory-limit"),
    ):
        done = run_cli("probe", *args)
        assert done.returncode == 2 and expected in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
