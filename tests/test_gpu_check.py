"""bench/gpu_check.py, the one prepared command for a lent GPU machine, on this machine's CPU path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
