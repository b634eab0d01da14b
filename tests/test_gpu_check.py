"""bench/gpu_check.py, the one prepared command for a lent GPU machine, on this machine's CPU path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT


def test_without_cuda_it_says_so_in_one_line_and_exits_0(tmp_path: Path) -> None:
    # No GPU here: the CUDA paths themselves run only on a lent GPU machine (issue 15).
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines() == [done.stdout.strip()]
    assert "no CUDA device here" in done.stdout
    assert not out.exists()  # nothing measured, nothing written


@pytest.mark.slow
def test_its_rehearsal_runs_every_step_and_writes_every_figure(tmp_path: Path) -> None:
    # The same steps on the CPU at the tiny scale: the script itself (its time budget, its JSON, a
    # study run, reported and exported as on the GPU) is checked here before a GPU run costs device
    # time. The GPU-only checks are skipped, and say so.
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_check.py"), str(out), "--rehearse", "--minutes", "6"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    written = {path.stem: json.loads(path.read_text()) for path in out.glob("*.json")}
    assert set(written) == {"device", "amp", "gpu_limit", "study", "summary"}
    assert written["summary"]["failures"] == [] and written["summary"]["cuda"] is False
    assert {written["amp"][name]["status"] for name in ("amp_off", "amp_on")} == {"ok"}
    assert written["amp"]["amp_on"]["amp_used"] is False  # AMP needs CUDA, and the record says why
    assert "skipped" in written["gpu_limit"]
    study = written["study"]
    assert [study[name]["exit"] for name in ("run", "report", "export")] == [0, 0, 0]
    assert study["report"]["json"]["front"] and study["export"]["json"]["options"]["device"] == "cpu"
    assert "done: all checks passed" in done.stdout
