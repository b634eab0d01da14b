"""What every framework's trial child shares: its events file, exit codes and process hygiene.

Imports neither torch nor a YOLO package (the trainers hand it what it needs), nor anything of the
search's side: whatever the child imports is counted in every trial's memory.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from search._pause import set_parent_death_signal

__all__ = [
    "EXIT_CUDA_OOM",
    "EXIT_FAILED",
    "EventWriter",
    "ProbeDone",
    "ProbeEnd",
    "cap_gpu_memory",
    "die_with_parent",
    "gpu_peaks",
    "is_cuda_oom",
    "only_visible_device",
    "raise_oom_score",
    "vmhwm_bytes",
    "write_cuda_oom",
    "write_end",
    "write_start",
]

EXIT_FAILED = 1
EXIT_CUDA_OOM = 3
# CUDA reports running out of device memory through more than torch's OutOfMemoryError: a kernel
# launch or a cuBLAS/cuDNN handle that cannot get memory raises a RuntimeError (torch's
# AcceleratorError from 2.8) with one of these in its message.
_CUDA_OOM_MESSAGES = ("out of memory", "cublas_status_alloc_failed", "cudnn_status_alloc_failed")


class ProbeDone(Exception):
    """Raised once a probe's last epoch has saved its checkpoint: the probe ends there."""


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
    set_parent_death_signal(signal.SIGKILL)
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


def is_cuda_oom(torch: Any, error: BaseException) -> bool:
    """Whether ``error`` is CUDA running out of device memory (whichever exception carries it)."""
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(message in text for message in _CUDA_OOM_MESSAGES)


def write_cuda_oom(events: EventWriter, torch: Any, device: Any, error: BaseException) -> None:
    """The ``error`` event of a trial that ran out of device memory, with the allocator's peaks so far."""
    events.write("error", kind="cuda_oom", message=str(error).splitlines()[0], gpu=gpu_peaks(torch, device))


def only_visible_device(device: str) -> bool:
    """Makes the trial's CUDA device the only one its process and workers see; whether it did.

    Counted as torch counts: where a scheduler or a container had already narrowed the GPUs
    (``CUDA_VISIBLE_DEVICES=2,3``), device ``1`` is the second of those. Afterwards the device is
    ``cuda:0``, and a framework that counts visible GPUs (ultralytics' and yolov5's dataloaders give
    each GPU ``cpu_count // device_count`` workers) counts one, as the memory model does. ``cpu``,
    ``mps`` and an index that is not visible (left to the framework's own check) change nothing.
    Call it before CUDA is initialised.
    """
    if device in ("cpu", "mps"):
        return False
    index = device.removeprefix("cuda:")
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is None:
        if not index.isdigit():
            return False
        os.environ["CUDA_VISIBLE_DEVICES"] = index
        return True
    entries = [entry.strip() for entry in inherited.split(",") if entry.strip()]
    # CUDA reads the list up to its first invalid entry (``-1`` hides every GPU after it).
    entries = list(itertools.takewhile(lambda entry: not entry.startswith("-"), entries))
    if not index.isdigit() or int(index) >= len(entries):
        return False
    os.environ["CUDA_VISIBLE_DEVICES"] = entries[int(index)]
    return True


def cap_gpu_memory(torch: Any, device: Any, limit_bytes: int | None) -> None:
    """Caps torch's CUDA allocator on ``device`` at ``limit_bytes`` (a CPU trial or no limit: nothing)."""
    if device.type == "cuda" and limit_bytes:
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit_bytes / total), device)


def write_start(events: EventWriter, torch: Any, device: Any, *, versions: dict[str, str | None]) -> None:
    """The ``start`` event: the process, torch and the framework's versions, the device."""
    cuda = device.type == "cuda"
    events.write(
        "start",
        pid=os.getpid(),
        torch=torch.__version__,
        **versions,
        device=str(device),
        cuda=cuda,
        gpu_name=torch.cuda.get_device_name(device) if cuda else None,
        gpu_total_bytes=torch.cuda.get_device_properties(device).total_memory if cuda else None,
    )


def write_end(events: EventWriter, torch: Any, device: Any, *, save_dir: str) -> None:
    """The ``end`` event of a trial that trained (or probed) to its end."""
    events.write("end", vmhwm_bytes=vmhwm_bytes(), gpu=gpu_peaks(torch, device), save_dir=save_dir)


class ProbeEnd:
    """Where a probe ends: after its last validation pass (``validation_passes``), once the framework
    has saved that epoch's checkpoint, as the real run does after every epoch.

    The save copies the model and its EMA (a float copy made half) and serializes them with the
    optimizer's state: about 8 bytes a parameter on top of the run's steady memory, 15 MiB for
    yolov5n and 0.7 GiB for yolov5x, which a probe ending before it would not see.
    """

    def __init__(self, events: EventWriter, probe: dict[str, Any] | None) -> None:
        self._events = events
        self._passes = None if probe is None else int(probe.get("validation_passes", 1))
        self.measured = False

    def validated(
        self, passes: int, *, val_batches: int, val_seconds: float, bounded: dict[str, Any]
    ) -> None:
        """After validation pass ``passes``: the last one of a probe writes its ``probe`` event.

        Args:
            passes: The validation passes so far.
            val_batches: The validation loader's batches (a whole pass, unless ``bounded`` has ``val``).
            val_seconds: The pass and its metrics.
            bounded: The :class:`search.child.probe.BoundedLoader` of each bounded split.
        """
        if self._passes is None or passes < self._passes or self.measured:
            return
        validation = {
            "batches": val_batches, "batches_total": val_batches, "seconds": val_seconds,
            "seconds_per_batch": val_seconds / val_batches if val_batches else None,
            "stop_reason": "whole pass",
        }  # fmt: skip
        loops = {"val": validation, **{split: loop.summary() for split, loop in bounded.items()}}
        self._events.write("probe", **loops)
        self.measured = True

    def saved(self) -> None:
        """After a checkpoint is saved, or as the next epoch starts (a save that did not come).

        Raises:
            ProbeDone: When the probe has measured its last pass: the run ends here.
        """
        if self.measured:
            raise ProbeDone
