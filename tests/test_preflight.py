"""Pre-flight in a real study, and the calibration cache."""

from __future__ import annotations

import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

from search.model._calibration import (
    TINY_RUNS,
    _private_temp_dir,
    cache_dir,
    calibrate,
    load_calibration,
    write_cache,
)
from search.study._prepare import open_study, storage_url
from search.study._spec import load_study_spec
from search.trial._record import memory_violation

from .conftest import run_cli

# Real YOLOv5 trials, worker processes or a PostgreSQL server: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

STUDY = """\
name: preflight
data: {data}
epochs: 1
n_trials: 2
memory_limit: 4GiB
sampler: grid
seed: 0
preflight_margin: 0.1
# No calibration here: the priors are trusted from the first trial (a 4096 px batch of 64 needs
# tens of GiB by any coefficient), so the test does not depend on this machine's figures.
preflight_min_samples: 0
space:
  batch: [4]
  imgsz: [64, 4096]
  cache: [none]
  workers: [0]
"""


def test_configuration_predicted_over_the_limit_is_not_trained(tiny_data: Path, tmp_path: Path) -> None:
    study_file = tmp_path / "preflight.yaml"
    study_file.write_text(STUDY.format(data=tiny_data))
    done = run_cli("run", str(study_file))
    assert done.returncode == 0, done.stderr
    assert "pre-flight: 1 configurations predicted over the limit were not trained" in done.stderr
    spec = load_study_spec(study_file)
    trials = {
        t.params["imgsz"]: t
        for t in open_study(spec, storage_url(spec, study_file), create=False).get_trials()
    }
    skipped, trained = trials[4096], trials[64]
    assert skipped.state == optuna.trial.TrialState.COMPLETE and skipped.user_attrs["status"] == "predicted"
    # Infeasible, by prediction (Optuna 5 keeps the constraint in Trial.set_constraint, not a user attr).
    assert (memory_violation(skipped) or 0) > 0
    record = skipped.user_attrs["record"]
    assert record["memory"]["prediction"]["total_bytes"] > 4 * 1024**3 and record["wall_seconds"] == 0
    assert set(record["memory"]["prediction"]["terms"]) >= {"framework", "activations"}
    assert trained.user_attrs["status"] == "ok" and trained.user_attrs["predicted_peak_bytes"] > 0
    report = run_cli("report", str(study_file), "--all", "--json", str(tmp_path / "r.json"))
    payload = json.loads((tmp_path / "r.json").read_text())
    assert report.returncode == 0 and payload["status_counts"] == {"ok": 1, "predicted": 1}
    # The one training, and every probe of the whole dataset that ran to its end.
    runs = 1 + sum(p["status"] == "ok" for p in payload["probes"])
    assert f"memory model (full-data predictions): fitted on {runs} measured runs" in report.stdout
    assert payload["memory_model"]["samples"] == runs
    # The training saw all 16 images: its own peak is the whole dataset's, no prediction stands in.
    by_status = {t["status"]: t for t in payload["trials"]}
    assert by_status["ok"]["predicted_full_bytes"] is None and by_status["predicted"]["predicted_full_bytes"]


def test_calibration_is_measured_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(tmp_path / "cache"))
    assert load_calibration("yolov5n.yaml", "cpu") is None
    first = calibrate(runs=TINY_RUNS)
    assert len(first.rows) == len(TINY_RUNS) and first.model.samples == len(TINY_RUNS)
    files = list((cache_dir() / "calibration").glob("*.json"))
    assert len(files) == 1 and files[0].name.startswith("yolov5n-cpu-")
    started = time.monotonic()
    again = calibrate(runs=TINY_RUNS)
    assert time.monotonic() - started < 1.0  # read from the cache, no trial run
    assert again.model.coefficients == first.model.coefficients
    assert load_calibration("yolov5s.yaml", "cpu") is None  # another model is another calibration
    files[0].write_text("{damaged")
    assert load_calibration("yolov5n.yaml", "cpu") is None
    assert os.environ["MEMFRONT_CACHE_DIR"] == str(tmp_path / "cache")


def test_the_cache_lives_in_the_python_environment_never_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MEMFRONT_CACHE_DIR", raising=False)
    (tmp_path / "venv").mkdir()
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    assert cache_dir() == tmp_path / "venv" / "var" / "cache" / "memfront"
    # An environment this user cannot write (a system-wide install; as root, os.access says yes to
    # everything, hence the stand-in): this user's private folder in the temporary directory.
    monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    _private_temp_dir.cache_clear()
    try:
        folder = cache_dir()
        assert folder == tmp_path / "tmp" / f"memfront-cache-{os.getuid()}"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        # A folder of that name others can write into (or another user's) is not trusted.
        folder.chmod(0o777)
        _private_temp_dir.cache_clear()
        own = cache_dir()
        assert own != folder and own.parent == tmp_path / "tmp" and stat.S_IMODE(own.stat().st_mode) == 0o700
    finally:
        _private_temp_dir.cache_clear()


def test_a_cache_file_is_written_whole_or_not_at_all(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "footprint.json"
    assert write_cache(path, '{"pss_bytes": 1}\n') and path.read_text() == '{"pss_bytes": 1}\n'
    assert [p.name for p in path.parent.iterdir()] == ["footprint.json"]  # no temporary file left
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    assert not write_cache(blocked / "footprint.json", "{}")  # cannot be cached: no error, measured again
