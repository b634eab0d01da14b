"""What a trial's child left behind, made into its record: events, log tail, memory, status.

:mod:`search.trial._supervisor` runs and watches the child; this module reads what it wrote (JSON-lines
events, its log) and what the sampler and the kernel measured, and decides the trial's status and
figures. Like the supervisor, it never imports torch or yolov5.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import statistics
from pathlib import Path
from typing import Any

from search.trial._config import TrialConfig, TrialLimits
from search.trial._record import TrialRecord

__all__ = [
    "ChildEvents",
    "apply_kernel_floor",
    "build_record",
    "child_phases",
    "child_timeline",
    "log_tail",
    "phase_at",
]

_LOG_TAIL_LINES = 25
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# ru_maxrss at most this much above the spawner's high-water mark may be the spawner's image.
_SPAWNER_MARGIN = 1.05
_EXIT_CUDA_OOM = 3  # search.child.trainer.EXIT_CUDA_OOM; not imported, to keep torch out of the parent


class ChildEvents:
    """Reads the child's JSON-lines events as they are appended."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[dict[str, Any]] = []
        self._offset = 0

    def poll(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError):
                self.items.append(json.loads(line))

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.items if e.get("event") == kind]

    def last(self, kind: str) -> dict[str, Any] | None:
        found = self.of(kind)
        return found[-1] if found else None


def log_tail(path: Path) -> list[str]:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return []
    lines = [_ANSI.sub("", part).rstrip() for part in re.split(r"[\r\n]", text)]
    return [line for line in lines if line.strip()][-_LOG_TAIL_LINES:]


def _best_epoch(epochs: list[dict[str, Any]]) -> dict[str, Any] | None:
    return max(epochs, key=lambda e: e.get("fitness") or 0.0) if epochs else None


def apply_kernel_floor(memory: dict[str, Any]) -> None:
    """Raises the peak to the main process's kernel high-water mark, in PSS terms, if it is higher.

    Sampling can miss a spike shorter than its interval (interpreter shutdown allocates in the last
    ~100 ms, after the dataloader workers are gone); the kernel's VmHWM cannot. ``ru_maxrss`` from
    ``wait4`` is the highest VmHWM of the main process and the workers it reaped, at exit; the last
    VmHWM read before the exit is the other figure, and the higher one is used. Less the part of
    the main process's file-backed pages that the exact reads found shared with other processes
    (their median: the only pages the tree's PSS may count below their RSS, apart from what the
    tree shares within itself, which it counts in full: a worker's pages shared with the main
    process included), it is a floor of the tree's PSS. Workers inherit the main process's
    mappings, so its discount stands for theirs. The discount is taken in bytes, not as a ratio:
    libraries are mapped early and stay, while anonymous memory grows, so a ratio read early in the
    run would scale the peak down by the memory that came after it.

    Linux keeps in ``ru_maxrss`` the high-water mark of the image before the child's exec too:
    started with vfork, the child carries off the spawning process's high-water mark, not its
    resident size (a notebook that once held 2.5 GB and freed it passes on 2.5 GB). The supervisor
    lowers that mark to the resident size before the start where the kernel lets it, and records
    the mark after it (``spawner_hwm_bytes``); a ``ru_maxrss`` not above it (with a 5% margin) may
    be the spawner's and is not used, and the child's own VmHWM reads stand in.
    """
    discount = memory.get("root_shared_discount_bytes")
    maxrss, spawner = memory.get("ru_maxrss_bytes"), memory.get("spawner_hwm_bytes")
    own_maxrss = maxrss if maxrss and (spawner is None or maxrss > _SPAWNER_MARGIN * spawner) else None
    hwm = max(filter(None, [own_maxrss, memory.get("vmhwm_bytes")]), default=None)
    peak = memory.get("peak_host_bytes")
    if discount is None or not hwm or peak is None:
        return
    floor = hwm - discount
    if floor > peak:
        if own_maxrss == hwm and hwm > (memory.get("vmhwm_bytes") or 0):
            # Above every VmHWM read of the main process, the child's own at the end of its run
            # included: not when the sampler's own peak was. A lone process's spike came after
            # those reads, in its shutdown; with workers it may be a worker's high-water mark.
            memory["peak_time_s"] = None
            memory["peak_in_shutdown"] = memory.get("max_processes") == 1
        memory["peak_host_bytes"] = floor
        memory["peak_host_upper_bytes"] = max(floor, memory.get("peak_host_upper_bytes") or 0)
        memory["method"] += (
            "; raised to the main process's kernel high-water mark (VmHWM) less its shared file-backed "
            "pages, above every sample"
        )


def child_phases(events: ChildEvents, spawned_at: float, exited_at: float) -> dict[str, float | None]:
    """Seconds the child spent starting (imports, dataset scan), training, and shutting down."""
    used, end = events.last("used"), events.last("end")
    train_start = used["time"] if used else None
    train_end = end["time"] if end else None
    return {
        "startup_s": None if train_start is None else train_start - spawned_at,
        "training_s": None if train_start is None else (train_end or exited_at) - train_start,
        "shutdown_s": None if train_end is None else exited_at - train_end,
        "process_s": exited_at - spawned_at,
    }


def child_timeline(events: ChildEvents, spawned_at: float, exited_at: float) -> list[dict[str, Any]]:
    """When each phase of the child began, in seconds since it was started.

    ``startup`` (imports, model), ``cache`` (each split's label scan and cache build), ``training``,
    ``validation``, ``checkpoint`` (an epoch's save, and a yolov5 run's last one stripped), and
    ``shutdown`` once the child reported its end.
    """
    timeline: list[dict[str, Any]] = [{"phase": "startup", "start_s": 0.0}]
    for event in events.of("phase"):
        entry = {"phase": event["phase"], "start_s": max(0.0, event["time"] - spawned_at)}
        if event.get("split"):
            entry["split"] = event["split"]
        timeline.append(entry)
    end = events.last("end")
    timeline.append(
        {"phase": "shutdown", "start_s": max(0.0, (end["time"] if end else exited_at) - spawned_at)}
    )
    return timeline


def phase_at(timeline: list[dict[str, Any]], seconds: float | None) -> str | None:
    """The phase of the timeline the child was in ``seconds`` after it was started."""
    if seconds is None or not timeline:
        return None
    current = timeline[0]["phase"]
    for entry in timeline:
        if entry["start_s"] <= seconds:
            current = entry["phase"]
    return str(current)


def build_record(
    config: TrialConfig,
    limits: TrialLimits,
    events: ChildEvents,
    memory: dict[str, Any],
    exit_code: int | None,
    stopped_for: dict[str, int],
    *,
    wall: float,
    phases: dict[str, float | None],
    log_tail: list[str],
    rusage_maxrss: int | None,
    nvml_peak: int | None,
    nvml_reason: str | None,
    timeline: list[dict[str, Any]] | None = None,
    listed_images: int | None = None,
) -> TrialRecord:
    """The trial's record from what its child wrote and what the supervisor measured.

    ``listed_images`` is how many training images the trial's list held (all of the dataset's, or
    the sample ``train_images`` asked for); ``used.train_images`` is how many the framework loaded
    of them (it leaves out images it finds corrupt). Recorded as ``used.listed_images``.
    """
    epochs = [{k: v for k, v in e.items() if k not in ("event", "time")} for e in events.of("epoch")]
    error_event = events.last("error")
    end = events.last("end")
    start = events.last("start") or {}
    error: str | None = None
    if "interrupted" in stopped_for:
        status, error = "interrupted", "stopped by the user"
    elif "memory_limit" in stopped_for:
        status = "memory_limit"
        error = f"host memory estimate {stopped_for['memory_limit']} B crossed the limit"
    elif error_event is not None and error_event.get("kind") == "cuda_oom":
        status, error = "memory_limit", f"CUDA out of memory: {error_event.get('message')}"
    elif exit_code == _EXIT_CUDA_OOM:
        status, error = "memory_limit", "CUDA out of memory"
    elif "timeout" in stopped_for:
        status, error = "timeout", f"still running after the {limits.time_limit_s:g} s limit"
    elif "stalled" in stopped_for:
        # Failed, not timed out: no time limit cut it (raising one would not help), and a setup
        # in which every training hangs stops after a few, as other broken setups do.
        status, error = "failed", f"hung: its processes used no CPU for {limits.stall_s:g} s"
    elif exit_code == 0 and end is not None:
        status = "ok"
    else:
        status = "failed"
        if error_event is not None:
            error = error_event.get("message")
        elif exit_code is not None and exit_code < 0:
            error = f"killed by signal {-exit_code} (not by memfront: the kernel's OOM killer?)"
        else:
            error = f"exit code {exit_code}"

    best = _best_epoch(epochs)
    epoch_times = [e["seconds"] for e in epochs if e.get("seconds") is not None]
    gpu_peaks = [
        e["gpu"]["reserved_peak_bytes"]
        for e in [*epochs, end or {}, error_event or {}]
        if e.get("gpu") and e["gpu"].get("reserved_peak_bytes") is not None
    ]
    cuda = bool(start.get("cuda"))
    peak_gpu = max([*gpu_peaks, nvml_peak or 0]) if cuda and (gpu_peaks or nvml_peak) else None
    # The child's own last word and the sampler's last read before the exit: the later (higher) wins,
    # since interpreter shutdown can still allocate after the child reported.
    vmhwm = max(filter(None, [(end or {}).get("vmhwm_bytes"), memory.get("vmhwm_bytes")]), default=None)
    memory = {
        **memory,
        "vmhwm_bytes": vmhwm,
        "ru_maxrss_bytes": rusage_maxrss,
        "limit_bytes": limits.memory_limit_bytes,
    }
    apply_kernel_floor(memory)
    # The sampler starts with the child, so its clock and the timeline's agree to a few milliseconds.
    in_shutdown = memory.pop("peak_in_shutdown", False)
    memory["peak_phase"] = "shutdown" if in_shutdown else phase_at(timeline or [], memory.get("peak_time_s"))
    kernel = memory.get("cgroup") or {}
    if kernel.get("peak_bytes") and memory.get("peak_host_bytes"):
        kernel["peak_over_pss"] = kernel["peak_bytes"] / memory["peak_host_bytes"]
    used = {k: v for k, v in (events.last("used") or {}).items() if k not in ("event", "time")}
    if listed_images is not None and used:
        used["listed_images"] = listed_images
    return TrialRecord(
        status=status,
        map50=best["map50"] if best and status == "ok" else None,
        map50_95=best["map50_95"] if best and status == "ok" else None,
        fitness=best["fitness"] if best and status == "ok" else None,
        peak_host_bytes=memory.get("peak_host_bytes"),
        peak_gpu_bytes=peak_gpu,
        epoch_seconds=statistics.median(epoch_times) if epoch_times else None,
        wall_seconds=wall,
        phases=phases,
        requested=config.model_dump(),
        used=used,
        limits=limits.model_dump(),
        epochs=epochs,
        memory=memory,
        gpu={
            "cuda": cuda,
            "device": start.get("device"),
            "name": start.get("gpu_name"),
            "total_bytes": start.get("gpu_total_bytes"),
            "allocator_reserved_peak_bytes": max(gpu_peaks) if gpu_peaks else None,
            "nvml_peak_bytes": nvml_peak,
            "nvml": nvml_reason or ("available" if nvml_peak is not None else None),
        },
        exit_code=exit_code,
        error=error,
        log_tail=log_tail if status in ("failed", "timeout", "memory_limit") else [],
        versions={"torch": start.get("torch"), config.framework: start.get(config.framework)},
        timeline=timeline or [],
        probe={k: v for k, v in (events.last("probe") or {}).items() if k not in ("event", "time")},
    )
