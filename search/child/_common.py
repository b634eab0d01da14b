"""What every framework's trial child shares: its events file, exit codes and process hygiene.

Imports neither torch nor a YOLO package (the trainers hand it what it needs), nor anything of the
search's side: whatever the child imports is counted in every trial's memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_CUDA_OOM",
    "EXIT_FAILED",
    "EventWriter",
    "ProbeDone",
    "die_with_parent",
    "gpu_peaks",
    "raise_oom_score",
    "vmhwm_bytes",
]

EXIT_FAILED = 1
EXIT_CUDA_OOM = 3


class ProbeDone(Exception):
    """Raised after a probe's validation: the probe ends before the framework saves a checkpoint."""


class EventWriter:
    """Appends JSON events to a file, one a line, flushed at once."""

    def __init__(self, path: str) -> None:
        self._handle = open(path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process

    def write(self, event: str, **fields: Any) -> None:
        """Writes one event."""
        self._handle.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")
        self._handle.flush()


def raise_oom_score() -> None:
    # If the kernel must kill something, it should be the trial, not the search; workers inherit it.
    with contextlib.suppress(OSError):
        Path("/proc/self/oom_score_adj").write_text("1000")


def die_with_parent(parent_pid: int | None) -> None:
    # The child runs in its own session, so a search killed with SIGKILL would leave it running:
    # ask the kernel to kill it with its parent (dataloader workers notice their manager's death).
    if parent_pid is None or not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(EXIT_FAILED)


def vmhwm_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def gpu_peaks(torch: Any, device: Any) -> dict[str, int | None]:
    if device.type != "cuda":
        return {"reserved_peak_bytes": None, "allocated_peak_bytes": None}
    return {
        "reserved_peak_bytes": int(torch.cuda.max_memory_reserved(device)),
        "allocated_peak_bytes": int(torch.cuda.max_memory_allocated(device)),
    }
