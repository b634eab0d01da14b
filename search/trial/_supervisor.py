"""Runs one trial in a child process and supervises its memory, time and exit.

The parent never imports torch or yolov5: it starts ``python -m search.child.trainer`` in a new session
(so the child and its dataloader workers form one process group, out of reach of the terminal's
Ctrl-C), samples the group's memory with :class:`search.measure._memory.TreeSampler`, stops the whole group
on a limit, a timeout or an interrupt, and cleans up everything the trial created.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from search._pause import clock, followed, starting
from search.child import compat
from search.data._dataset import TRIAL_LISTS, load_dataset, write_trial_data_yaml
from search.data._label_caches import keep_label_caches, label_cache_key, restore_label_caches
from search.errors import RunNotKept
from search.frameworks import get_framework
from search.frameworks._base import package_version
from search.measure._cgroup import TrialCgroup, cgroup_figures
from search.measure._gpu import NvmlProbe
from search.measure._memory import DEFAULT_PSS_CPU_BUDGET, TreeSampler
from search.measure._procfs import StallWatch, group_alive
from search.trial._config import TrialConfig, TrialLimits, resolve_hyp, resolve_model
from search.trial._leftovers import (
    CHILD_TEMP_PREFIX,
    TRIAL_PREFIX,
    DiskCacheClaim,
    owned_prefix,
    remove_abandoned,
)
from search.trial._outcome import ChildEvents, build_record, child_phases, child_timeline, log_tail
from search.trial._process import ExitWatch, kill_tree, spawn
from search.trial._record import TrialRecord

__all__ = ["TrialProgress", "run_trial"]

_PROGRESS_PERIOD_S = 0.5


@dataclasses.dataclass
class TrialProgress:
    """A live view of a running trial, for progress displays."""

    phase: str
    epoch: int | None
    epochs: int
    host_bytes: int
    elapsed_s: float
    last_map50_95: float | None


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


def run_trial(
    config: TrialConfig,
    *,
    limits: TrialLimits | None = None,
    keep_cache: bool = False,
    keep_run: Path | None = None,
    workdir: Path | None = None,
    on_progress: Callable[[TrialProgress], None] | None = None,
    fast_hz: float = 25.0,
    pss_cpu_budget: float = DEFAULT_PSS_CPU_BUDGET,
    probe: dict[str, int | None] | None = None,
) -> TrialRecord:
    """Runs one trial in a child process and returns its record.

    Args:
        config: What to train.
        limits: Memory and time limits; none by default.
        keep_cache: Keep the ``.npy`` files that ``cache=disk`` wrote beside the images.
        keep_run: Copy yolov5's run folder (weights, results.csv) here before cleaning up.
        workdir: Where to make the trial's temporary folder (default: the system's temp dir).
        on_progress: Called twice a second with a :class:`TrialProgress`.
        fast_hz: Rate of the cheap memory reads that also enforce the memory limit.
        pss_cpu_budget: Fraction of one core the exact PSS reads may use.
        probe: Bounds of a probe's train and val loops (``train_min_batches``, ``train_max_batches``,
            ``val_min_batches``, ``val_max_batches``): the child runs a probe instead of a training
            (:mod:`search.child.probe`); :func:`search.probe.run_probe` is its entry point.

    Returns:
        The trial's record, whatever its status.

    Raises:
        InputError: If the dataset or model is bad; nothing is started then.
    """
    limits = limits or TrialLimits()
    dataset = load_dataset(config.data)
    model = resolve_model(config.model, config.framework)
    hyp = resolve_hyp(config.hyp, config.framework)
    started = clock()
    remove_abandoned(workdir)
    framework = get_framework(config.framework)
    label_key, restored = "", {}
    folder = child_temp = None
    claim = None
    try:
        folder = Path(tempfile.mkdtemp(prefix=owned_prefix(TRIAL_PREFIX), dir=workdir))
        child_temp = Path(tempfile.mkdtemp(prefix=owned_prefix(CHILD_TEMP_PREFIX)))
        claim = DiskCacheClaim(config.data, dataset.all_images) if config.cache == "disk" else None
        data_yaml, listed_images = write_trial_data_yaml(
            dataset,
            folder,
            train_images=config.train_images,
            train_fraction=config.train_fraction,
            seed=config.seed,
        )
        version = f"{framework.name} {package_version(framework.package)}"
        label_key = label_cache_key(folder, TRIAL_LISTS, version)
        restored = restore_label_caches(folder, label_key)
        spec = {
            **config.model_dump(),
            "data": str(data_yaml),
            "model": model,
            "hyp": hyp,
            "child_module": framework.child_module,
            "project": str(folder),
            "name": "run",
            "events": str(folder / "events.jsonl"),
            "config_dir": str(compat.yolov5_config_dir(folder / "settings")),
            "gpu_memory_limit_bytes": limits.gpu_memory_limit_bytes,
            "parent_pid": os.getpid(),
            "pause_file": str(folder / "paused_s"),
            "noplots": not config.plots,
            "probe": None if probe is None else {**probe, "peak_file": str(folder / "peak.txt")},
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
            peak_file=None if probe is None else folder / "peak.txt",
            listed_images=listed_images,
        )
        if keep_run is not None and (folder / "run").is_dir():
            try:
                shutil.copytree(folder / "run", keep_run, dirs_exist_ok=True)
            except OSError as error:
                # A full training's weights outlive a failed copy: moved out of the trial's folder
                # (which the next trial's clean-up of dead owners would remove), and named.
                kept = folder.parent / f"memfront-kept-run-{folder.name}"
                (folder / "run").rename(kept)
                raise RunNotKept(
                    f"the run could not be copied to {keep_run} ({error.strerror or error}); "
                    f"its weights and results are in {kept}",
                    record=record,
                ) from None
        return record
    finally:
        if claim is not None:
            claim.release(keep=keep_cache)
        if label_key and folder is not None:
            keep_label_caches(folder, label_key, framework.label_cache_files, restored)
        for made in (folder, child_temp):
            if made is not None:
                shutil.rmtree(made, ignore_errors=True)


class _FirstPhases:
    """Spots the first time the child enters each phase (the cache, training, validation).

    A phase entered for the first time is when the tree's sharing moves at once: workers are
    forked, and the first full garbage collection after that copies every page holding a tracked
    object (before the first validation in yolov5's runs, and in a probe by design). The sampler
    is asked for one exact read then, whatever its budget; later epochs repeat phases without
    moving the sharing, and a read at each would cost a many-epoch trial its speed.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._read = 0

    def new(self, phases: list[dict[str, Any]]) -> bool:
        """Whether ``phases`` (every phase event so far) holds a phase not entered before."""
        names = {str(event.get("phase")) for event in phases[self._read :]}
        self._read = len(phases)
        fresh = names - self._seen
        self._seen |= names
        return bool(fresh)


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
    peak_file: Path | None = None,
    listed_images: int | None = None,
) -> TrialRecord:
    env = compat.child_process_environment(folder / "settings")
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    # Whatever the child and its workers put in a temp dir (multiprocessing's pymp-* folders, which a
    # killed child never removes) goes in a folder of the trial's own, removed with it. It sits directly
    # in the system temp dir: multiprocessing puts AF_UNIX sockets in it, whose paths may not exceed
    # 107 bytes (a deeper folder made dataloader workers fail and the trial hang).
    env["TMPDIR"] = str(child_temp)
    if config.threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(config.threads)
    log_path = folder / "trial.log"
    events = ChildEvents(folder / "events.jsonl")
    cgroup = TrialCgroup.create(folder.name)
    cgroup_joined = False
    spawned_at = time.time()
    spawner_hwm: int | None = None
    stopped_for: dict[str, int] = {}
    stop_lock = threading.Lock()
    child: subprocess.Popen[bytes] | None = None
    sampler: TreeSampler | None = None
    nvml: NvmlProbe | None = None
    exit_watch: ExitWatch | None = None
    nvml_peak: int | None = None
    exit_status: int | None = None
    exited_at: float | None = None
    rusage_maxrss: int | None = None
    # Ctrl-Z stops the child's group with this process (search._pause); unfollowed first thing after.
    following = contextlib.ExitStack()
    paused = None

    def stop(reason: str, value: int = 0) -> None:
        with stop_lock:
            if not stopped_for:
                stopped_for[reason] = value
        if child is not None:
            kill_tree(child.pid, sampler.pids if sampler is not None else set())

    # Everything from the child's start on is in the try: whatever fails or is interrupted while
    # the supervision is set up, the child, its workers and the cgroup never outlive it.
    try:
        with starting(), open(log_path, "wb") as log:
            child, spawner_hwm = spawn(
                [sys.executable, "-m", "search.child.trainer", str(folder / "spec.json")],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            paused = following.enter_context(followed(child.pid, group=True, pause_file=folder / "paused_s"))
        # The child forks its dataloader workers only after importing torch (seconds): they follow it in.
        cgroup_joined = isinstance(cgroup, TrialCgroup) and cgroup.add(child.pid)
        sampler = TreeSampler(
            root_pid=child.pid,
            fast_hz=fast_hz,
            pss_cpu_budget=pss_cpu_budget,
            limit_bytes=limits.memory_limit_bytes,
            on_limit=lambda estimate: stop("memory_limit", estimate),
        )
        sampler.start()
        nvml = NvmlProbe() if config.device != "cpu" else None
        exit_watch = ExitWatch(child.pid)
        # Twice a second: progress, NVML, a probe's running peak, and the child's phase changes (each
        # asks the sampler for an exact read). A wake-up that reads one small file costs the trial little.
        period = _PROGRESS_PERIOD_S
        first_phases = _FirstPhases()
        stall = StallWatch()
        try:
            while True:
                pid, status, rusage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    exited_at = time.time()
                    exit_status, rusage_maxrss = status, rusage.ru_maxrss * 1024
                    break
                elapsed = clock() - started
                if limits.time_limit_s is not None and elapsed > limits.time_limit_s:
                    stop("timeout")
                if stall.stalled(sampler.pids | {child.pid}, limits.stall_s):
                    stop("stalled")
                if peak_file is not None:
                    _write_atomically(peak_file, f"{sampler.peak_bytes}\n")
                events.poll()
                if first_phases.new(events.of("phase")):
                    sampler.request_exact()
                if nvml is not None and nvml.available:
                    used = nvml.used_bytes(sampler.pids | {child.pid})
                    if used is not None:
                        nvml_peak = max(nvml_peak or 0, used)
                if on_progress is not None:
                    last_epoch = events.last("epoch")
                    phase = events.last("phase")
                    on_progress(
                        TrialProgress(
                            phase=phase["phase"] if phase else "starting",
                            epoch=(last_epoch["epoch"] + 1) if last_epoch else None,
                            epochs=config.epochs,
                            host_bytes=sampler.current_bytes,
                            elapsed_s=elapsed,
                            last_map50_95=last_epoch["map50_95"] if last_epoch else None,
                        )
                    )
                timeouts = [period]
                if limits.time_limit_s is not None and not stopped_for:
                    timeouts.append(max(limits.time_limit_s - elapsed, 0.01))
                exit_watch.wait(min(timeouts))
        except KeyboardInterrupt:
            stop("interrupted")
            with contextlib.suppress(ChildProcessError):  # reaped by the loop just before
                _, exit_status, rusage = os.wait4(child.pid, 0)
                rusage_maxrss = rusage.ru_maxrss * 1024
            exited_at = time.time()
    finally:
        following.close()
        if exit_watch is not None:
            exit_watch.close()
        if child is not None:
            child.returncode = -1 if exit_status is None else os.waitstatus_to_exitcode(exit_status)
            # Whatever ended the child, its workers must not outlive it.
            kill_tree(child.pid, sampler.pids if sampler is not None else set())
            deadline = time.monotonic() + 10
            while group_alive(child.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if exit_status is None:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(child.pid, 0)  # the supervision failed to start: no zombie left
        memory = sampler.stop() if sampler is not None else None
        if nvml is not None:
            nvml.close()
        if isinstance(cgroup, TrialCgroup):
            cgroup.kill_all()
        kernel_figures = cgroup_figures(cgroup, joined=cgroup_joined)
    assert child is not None and memory is not None  # else the finally re-raised
    events.poll()
    return build_record(
        config,
        limits,
        events,
        {**memory.to_dict(), "cgroup": kernel_figures, "spawner_hwm_bytes": spawner_hwm},
        child.returncode,
        stopped_for,
        wall=clock() - started,
        phases={
            **child_phases(events, spawned_at, exited_at or time.time()),
            "paused_s": paused.paused_s if paused is not None else 0.0,
        },
        timeline=child_timeline(events, spawned_at, exited_at or time.time()),
        log_tail=log_tail(log_path),
        rusage_maxrss=rusage_maxrss,
        nvml_peak=nvml_peak,
        nvml_reason=None if nvml is None else nvml.reason,
        listed_images=listed_images,
    )
