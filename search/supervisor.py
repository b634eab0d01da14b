"""Runs one trial in a child process and supervises its memory, time and exit.

The parent never imports torch or yolov5: it starts ``python -m search.trainer`` in a new session
(so the child and its dataloader workers form one process group, out of reach of the terminal's
Ctrl-C), samples the group's memory with :class:`search.memory.TreeSampler`, stops the whole group
on a limit, a timeout or an interrupt, and cleans up everything the trial created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search import compat
from search.cgroup import TrialCgroup, cgroup_figures
from search.config import TrialConfig, TrialLimits, resolve_hyp, resolve_model
from search.dataset import load_dataset, write_trial_data_yaml
from search.gpu import NvmlProbe
from search.leftovers import CHILD_TEMP_PREFIX, TRIAL_PREFIX, DiskCacheClaim, owned_prefix, remove_abandoned
from search.memory import TreeSampler
from search.procfs import group_alive
from search.record import TrialRecord

__all__ = ["TrialProgress", "run_trial"]

_LOG_TAIL_LINES = 25
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXIT_CUDA_OOM = 3  # search.trainer.EXIT_CUDA_OOM; not imported, to keep torch out of the parent


@dataclasses.dataclass
class TrialProgress:
    """A live view of a running trial, for progress displays."""

    phase: str
    epoch: int | None
    epochs: int
    host_bytes: int
    elapsed_s: float
    last_map50_95: float | None


class _Events:
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


def _kill_tree(pgid: int, pids: set[int]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    # Descendants that left the group (setsid) are still the trial's.
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _log_tail(path: Path) -> list[str]:
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


def run_trial(
    config: TrialConfig,
    *,
    limits: TrialLimits | None = None,
    keep_cache: bool = False,
    keep_run: Path | None = None,
    workdir: Path | None = None,
    on_progress: Callable[[TrialProgress], None] | None = None,
    fast_hz: float = 25.0,
    pss_cpu_budget: float = 0.01,
) -> TrialRecord:
    """Runs one trial in a child process and returns its record.

    Args:
        config: What to train.
        limits: Memory and time limits; none by default.
        keep_cache: Keep the ``.npy`` files that ``cache=disk`` wrote beside the images.
        keep_run: Copy yolov5's run folder (weights, results.csv) here before cleaning up.
        workdir: Where to make the trial's temporary folder (default: the system's temp dir).
        on_progress: Called about ten times a second with a :class:`TrialProgress`.
        fast_hz: Rate of the cheap memory reads that also enforce the memory limit.
        pss_cpu_budget: Fraction of one core the exact PSS reads may use.

    Returns:
        The trial's record, whatever its status.

    Raises:
        InputError: If the dataset or model is bad; nothing is started then.
    """
    limits = limits or TrialLimits()
    dataset = load_dataset(config.data)
    model = resolve_model(config.model)
    hyp = resolve_hyp(config.hyp)
    started = time.monotonic()
    remove_abandoned(workdir)
    folder = Path(tempfile.mkdtemp(prefix=owned_prefix(TRIAL_PREFIX), dir=workdir))
    child_temp = Path(tempfile.mkdtemp(prefix=owned_prefix(CHILD_TEMP_PREFIX)))
    claim = DiskCacheClaim(config.data, dataset.all_images) if config.cache == "disk" else None
    try:
        data_yaml, _ = write_trial_data_yaml(
            dataset,
            folder,
            train_images=config.train_images,
            train_fraction=config.train_fraction,
            seed=config.seed,
        )
        spec = {
            **config.model_dump(),
            "data": str(data_yaml),
            "model": model,
            "hyp": hyp,
            "project": str(folder),
            "name": "run",
            "events": str(folder / "events.jsonl"),
            "config_dir": str(folder / "yolov5-config"),
            "gpu_memory_limit_bytes": limits.gpu_memory_limit_bytes,
            "parent_pid": os.getpid(),
            # A kept run is a real training: let yolov5 draw its usual plots; a trial skips them.
            "noplots": keep_run is None,
        }
        (folder / "spec.json").write_text(json.dumps(spec))
        record = _supervise(
            config,
            limits,
            folder,
            child_temp,
            started,
            on_progress,
            fast_hz=fast_hz,
            pss_cpu_budget=pss_cpu_budget,
        )
        if keep_run is not None and (folder / "run").is_dir():
            shutil.copytree(folder / "run", keep_run, dirs_exist_ok=True)
        return record
    finally:
        if claim is not None:
            claim.release(keep=keep_cache)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(child_temp, ignore_errors=True)


def _supervise(
    config: TrialConfig,
    limits: TrialLimits,
    folder: Path,
    child_temp: Path,
    started: float,
    on_progress: Callable[[TrialProgress], None] | None,
    *,
    fast_hz: float,
    pss_cpu_budget: float,
) -> TrialRecord:
    env = {**os.environ, **compat.child_environment(folder / "yolov5-config")}
    package_root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # Whatever the child and its workers put in a temp dir (multiprocessing's pymp-* folders, which a
    # killed child never removes) goes in a folder of the trial's own, removed with it. It sits directly
    # in the system temp dir: multiprocessing puts AF_UNIX sockets in it, whose paths may not exceed
    # 107 bytes (a deeper folder made dataloader workers fail and the trial hang).
    env["TMPDIR"] = str(child_temp)
    if config.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(config.threads)
    log_path = folder / "trial.log"
    events = _Events(folder / "events.jsonl")
    cgroup = TrialCgroup.create(folder.name)
    spawned_at = time.time()
    with open(log_path, "wb") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "search.trainer", str(folder / "spec.json")],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    pgid = child.pid
    # The child forks its dataloader workers only after importing torch (seconds): they follow it in.
    cgroup_joined = isinstance(cgroup, TrialCgroup) and cgroup.add(child.pid)
    stopped_for: dict[str, int] = {}
    stop_lock = threading.Lock()

    def stop(reason: str, value: int = 0) -> None:
        with stop_lock:
            if not stopped_for:
                stopped_for[reason] = value
        _kill_tree(pgid, sampler.pids)

    sampler = TreeSampler(
        root_pid=child.pid,
        fast_hz=fast_hz,
        pss_cpu_budget=pss_cpu_budget,
        limit_bytes=limits.memory_limit_bytes,
        on_limit=lambda estimate: stop("memory_limit", estimate),
    )
    sampler.start()
    nvml = NvmlProbe() if config.device != "cpu" else None
    nvml_peak: int | None = None
    exit_status: int | None = None
    exited_at: float | None = None
    rusage_maxrss: int | None = None
    try:
        while True:
            pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                exited_at = time.time()
                exit_status, rusage_maxrss = status, rusage.ru_maxrss * 1024
                break
            elapsed = time.monotonic() - started
            if limits.time_limit_s is not None and elapsed > limits.time_limit_s:
                stop("timeout")
            events.poll()
            if nvml is not None and nvml.available:
                used = nvml.used_bytes(sampler.pids | {child.pid})
                if used is not None:
                    nvml_peak = max(nvml_peak or 0, used)
            if on_progress is not None:
                last_epoch = events.last("epoch")
                on_progress(
                    TrialProgress(
                        phase="training" if events.last("used") else "starting",
                        epoch=(last_epoch["epoch"] + 1) if last_epoch else None,
                        epochs=config.epochs,
                        host_bytes=sampler.current_bytes,
                        elapsed_s=elapsed,
                        last_map50_95=last_epoch["map50_95"] if last_epoch else None,
                    )
                )
            time.sleep(0.1)
    except KeyboardInterrupt:
        stop("interrupted")
        _, exit_status, rusage = os.wait4(child.pid, 0)
        exited_at = time.time()
        rusage_maxrss = rusage.ru_maxrss * 1024
    finally:
        child.returncode = -1 if exit_status is None else os.waitstatus_to_exitcode(exit_status)
        # Whatever ended the child, its workers must not outlive it.
        _kill_tree(pgid, sampler.pids)
        deadline = time.monotonic() + 10
        while group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)
        memory = sampler.stop()
        if nvml is not None:
            nvml.close()
        kernel_figures = cgroup_figures(cgroup, joined=cgroup_joined)
    events.poll()
    return _build_record(
        config,
        limits,
        events,
        {**memory.to_dict(), "cgroup": kernel_figures},
        child.returncode,
        stopped_for,
        wall=time.monotonic() - started,
        phases=_phases(events, spawned_at, exited_at or time.time()),
        log_tail=_log_tail(log_path),
        rusage_maxrss=rusage_maxrss,
        nvml_peak=nvml_peak,
        nvml_reason=None if nvml is None else nvml.unavailable_reason,
    )


def _apply_kernel_floor(memory: dict[str, Any]) -> None:
    """Raises the peak to the main process's kernel high-water mark, in PSS terms, if it is higher.

    Sampling can miss a spike shorter than its interval (interpreter shutdown allocates in the last
    ~100 ms); the kernel's VmHWM cannot. For a tree that never had another process, ``ru_maxrss``
    from ``wait4`` is that process's VmHWM at exit; otherwise the last VmHWM read before the exit is
    used. Scaled by the process's PSS/RSS ratio at its last PSS read, it is a floor of the tree's PSS.
    """
    ratio = memory.get("root_pss_ratio")
    single = memory.get("max_processes") == 1
    hwm = memory.get("ru_maxrss_bytes") if single else memory.get("vmhwm_bytes")
    peak = memory.get("peak_host_bytes")
    if ratio is None or not hwm or peak is None:
        return
    floor = int(hwm * min(1.0, ratio))
    if floor > peak:
        memory["peak_host_bytes"] = floor
        memory["peak_host_upper_bytes"] = max(floor, memory.get("peak_host_upper_bytes") or 0)
        memory["method"] += (
            "; raised to the main process's kernel high-water mark (VmHWM) times its PSS/RSS ratio, "
            "above every sample"
        )


def _phases(events: _Events, spawned_at: float, exited_at: float) -> dict[str, float | None]:
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


def _build_record(
    config: TrialConfig,
    limits: TrialLimits,
    events: _Events,
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
) -> TrialRecord:
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
        for e in [*epochs, end or {}]
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
    _apply_kernel_floor(memory)
    kernel = memory.get("cgroup") or {}
    if kernel.get("peak_bytes") and memory.get("peak_host_bytes"):
        kernel["peak_over_pss"] = kernel["peak_bytes"] / memory["peak_host_bytes"]
    used = {k: v for k, v in (events.last("used") or {}).items() if k not in ("event", "time")}
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
        versions={"torch": start.get("torch"), "yolov5": start.get("yolov5")},
    )
