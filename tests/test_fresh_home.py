"""The main job's path on a fresh machine: an empty home, nothing measured or cached before.

ultralytics (imported by yolov5) writes its settings file and prints a banner to stdout the first
time it is imported in a home without one; a probe that parsed its child's stdout failed there
only, and every machine that had run memfront once hid it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

# Real YOLOv5 trials, worker processes or a PostgreSQL server: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow

STUDY = """\
name: first
data: {data}
epochs: 1
n_trials: 1
memory_limit: 6GiB
space:
  batch: [8]
  imgsz: [64]
  cache: [none]
  workers: [0]
  amp: [false]
"""
_WARNINGS = ("Warning:", "warnings.warn", "Traceback")


def _fresh_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MEMFRONT_", "XDG_", "YOLO", "MPL"))}
    return {
        **env,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
    }


def _memfront(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "search", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_run_and_report_in_an_empty_home(tiny_data: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    study = work / "first.yaml"
    study.write_text(STUDY.format(data=tiny_data))
    # A machine where memfront measured nothing yet: its cache (in the Python environment by default,
    # tests/test_preflight.py) starts empty, outside the home.
    cache = tmp_path / "cache"
    env = {**_fresh_env(home), "MEMFRONT_CACHE_DIR": str(cache)}

    run = _memfront("run", str(study), env=env, cwd=work)
    assert run.returncode == 0, run.stdout + run.stderr
    output = run.stdout + run.stderr
    assert not [w for w in _WARNINGS if w in output], output  # no warning of our dependencies
    assert "Ultralytics" not in output

    report = _memfront("report", str(study), env=env, cwd=work)
    assert report.returncode == 0, report.stderr
    assert "front: 1 accuracy configs" in report.stdout, report.stdout
    assert not [w for w in _WARNINGS if w in report.stdout + report.stderr]

    plot = _memfront("plot", str(study), "-o", str(work / "front.png"), env=env, cwd=work)
    assert plot.returncode == 0 and (work / "front.png").stat().st_size, plot.stderr

    # Nothing in the home: no third-party settings, fonts or caches; memfront's own (the footprint it
    # measured, matplotlib's font list for the plot) are in its cache.
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert left == [], left
    assert list((cache / "footprint").glob("*.json")) and (cache / "matplotlib").is_dir()
    assert not (work / "runs").exists()
