"""Probes in a real study: trainings on a subset, memory and speed probed on the whole dataset."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from search.data._demo import make_demo_dataset
from search.probe._store import PROBE_STUDY

from .conftest import run_cli, trainer_processes

SUBSET_STUDY = """\
name: subset
data: {data}
hyp: demo
epochs: 1
train_images: 8
n_trials: {n_trials}
memory_limit: 6GiB
objectives: [map50_95, peak_host, epoch_seconds]
sampler: random
seed: 3
space:
  batch: [4]
  imgsz: [64]
  cache: [none, ram]
  workers: [0, 1]
"""


@pytest.mark.slow
def test_a_subset_study_probes_the_whole_dataset_and_never_probes_twice(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "shapes", images=32, val_images=16, size=96)
    spec = tmp_path / "subset.yaml"
    spec.write_text(SUBSET_STUDY.format(data=data, n_trials=2))
    first = run_cli("run", str(spec))
    assert first.returncode == 0, first.stderr
    assert "probe " in first.stderr and "measured on the whole dataset" in first.stderr
    storage = f"sqlite:///{tmp_path / 'subset.db'}"
    probes = optuna.load_study(study_name=PROBE_STUDY, storage=storage)
    done = probes.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert done, "no probe stored"
    # Each probe saw the whole dataset, though the trainings used 8 of its 32 images.
    assert {t.user_attrs["memfront:probe"]["train_images"] for t in done} == {32}
    assert all(t.values[0] > 0 and t.values[1] > 0 for t in done)
    probed = {tuple(sorted(t.params.items())) for t in done}
    assert len(probed) == len(done)  # never the same config twice

    report = run_cli("report", str(spec), "--json", "-")
    assert report.returncode == 0, report.stderr
    payload = json.loads(report.stdout)
    assert payload["probes"] and all(p["train_images"] == 32 for p in payload["probes"])
    assert payload["front"] and {e["memory_source"] for e in payload["front"]} <= {"probe", "model"}
    assert payload["full_front"] and all(e["peak_host_bytes"] > 0 for e in payload["full_front"])
    assert "front over all five knobs" in report.stderr

    # Resumed with more trainings: the probes already stored are not taken again.
    spec.write_text(SUBSET_STUDY.format(data=data, n_trials=3))
    second = run_cli("run", str(spec))
    assert second.returncode == 0, second.stderr
    again = optuna.load_study(study_name=PROBE_STUDY, storage=storage).get_trials(
        states=[optuna.trial.TrialState.COMPLETE]
    )
    assert len({tuple(sorted(t.params.items())) for t in again}) == len(again)
    assert trainer_processes() == []

    exported = run_cli("export", str(spec), "--max-memory", "6GiB", "--format", "json")
    assert exported.returncode == 0, exported.stderr
    choice = json.loads(exported.stdout)
    assert choice["memory_source"] in ("probe", "model") and choice["options"]["imgsz"] == 64


@pytest.mark.slow
def test_a_probe_asked_for_a_study_is_stored_where_the_study_finds_it(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "shapes", images=32, val_images=16, size=96)
    spec = tmp_path / "subset.yaml"
    spec.write_text(SUBSET_STUDY.format(data=data, n_trials=1))
    knobs = ["--batch", "4", "--imgsz", "64", "--cache", "none", "--workers", "0"]
    first = run_cli("probe", "--study", str(spec), *knobs, "--json", "-")
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    assert result["status"] == "ok" and result["train_images"] == 32  # the study's whole dataset
    assert result["record"]["limits"]["memory_limit_bytes"] == 6 * 2**30  # under the study's limit
    assert "stored as probe 0 of memfront-probes" in first.stderr
    storage = f"sqlite:///{tmp_path / 'subset.db'}"

    def probed() -> list[optuna.trial.FrozenTrial]:
        study = optuna.load_study(study_name=PROBE_STUDY, storage=storage)
        return study.get_trials(states=[optuna.trial.TrialState.COMPLETE])

    leanest = {"batch": 4, "imgsz": 64, "cache": "none", "workers": 0, "amp": False}
    assert [t.params for t in probed()] == [leanest]
    # Asked again: the stored probe, not a second one.
    again = run_cli("probe", "--study", str(spec), *knobs, "--json", "-")
    assert again.returncode == 0, again.stderr
    assert "already probed" in again.stderr
    shown = json.loads(again.stdout)  # the stored figures (the record kept without its memory series)
    for key in ("knobs", "status", "peak_host_bytes", "projected_epoch_seconds", "seconds", "peak_phase"):
        assert shown[key] == result[key], key
    assert len(probed()) == 1
    # The study's own first probe would be this config (the leanest setting of its best config): it
    # uses the stored one instead of taking it again.
    run = run_cli("run", str(spec))
    assert run.returncode == 0, run.stderr
    assert [t.number for t in probed() if t.params == leanest] == [0]
    report = run_cli("report", str(spec), "--json", "-")
    assert report.returncode == 0, report.stderr
    assert leanest in [p["knobs"] for p in json.loads(report.stdout)["probes"]]
    assert trainer_processes() == []


def test_bad_probe_input_for_a_study_is_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "subset.yaml"
    spec.write_text(SUBSET_STUDY.format(data=tmp_path / "none.yaml", n_trials=1))
    good = tmp_path / "good.yaml"
    good.write_text(
        SUBSET_STUDY.format(data=make_demo_dataset(tmp_path / "shapes", images=8, size=64), n_trials=1)
    )
    for args, expected in (
        (["--study", str(spec), "--data", "x.yaml"], "--data: with --study it comes from the study file"),
        (["--study", str(spec), "--memory-limit", "1GiB"], "--memory-limit: with --study"),
        (["--study", str(spec), "--device", "cpu"], "--device: with --study"),
        (["--storage", "sqlite:///x.db"], "--storage: only with --study"),
        ([], "--data: give a data yaml"),
        (["--study", str(spec)], "data yaml not found"),
        (["--study", str(tmp_path / "missing.yaml")], "missing.yaml"),
        (["--study", str(good), "--batch", "4", "--imgsz", "64", "--cache", "fast"], "--cache"),
        (["--study", str(good), "--batch", "4", "--imgsz", "96"], "--imgsz 96: not in the study's space"),
        (["--study", str(good), "--imgsz", "64"], "--batch 16: not in the study's space (4)"),
        (["--study", str(good), "--batch", "4", "--imgsz", "64", "--workers", "3"], "--workers 3: not in"),
    ):
        done = run_cli("probe", *args)
        assert done.returncode == 2 and expected in done.stderr, (args, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    # Nothing stored for input that could not run.
    assert not (tmp_path / "subset.db").exists() and not (tmp_path / "good.db").exists()
