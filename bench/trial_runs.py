"""The runs the trial bench compares: bare yolov5 training, memfront trials, and reference samplers.

Like the bench, this module never imports torch, yolov5 or numpy: pages of their libraries mapped
here would be shared with the trial and lower the trial's PSS below its RSS.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from search.child import compat
from search.data._dataset import load_dataset, write_trial_data_yaml
from search.measure._procfs import read_pss_bytes, read_resident, read_stat
from search.trial._config import TrialConfig, TrialLimits, resolve_model
from search.trial._outcome import log_tail
from search.trial._record import TrialRecord
from search.trial._supervisor import run_trial

REPO_ROOT = Path(__file__).resolve().parent.parent

# The bare run: the same compat adaptations as search.child.trainer, then yolov5's own main, nothing else.
BARE_SCRIPT = """\
import json
import sys
from pathlib import Path

from search.child import compat

spec = json.loads(Path(sys.argv[1]).read_text())
compat.prepare_config_dir(Path(spec["config_dir"]))
compat.isolate_argv()
compat.patch_numpy()

from yolov5 import train
from yolov5.utils.callbacks import Callbacks

compat.patch_amp(train, False)
if spec.get("threads"):
    import torch

    torch.set_num_threads(spec["threads"])
opt = train.parse_opt(True)
for key, value in spec["opt"].items():
    setattr(opt, key, value)
train.main(opt, callbacks=Callbacks())
"""


@dataclasses.dataclass
class BareResult:
    """One bare run: its wall time, exit and peak RSS."""

    wall_s: float
    exit_code: int
    ru_maxrss_bytes: int
    log_tail: list[str] = dataclasses.field(default_factory=list)


def _processes() -> list[tuple[int, int, int]]:
    """(pid, ppid, pgrp) of every process still there."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := read_stat(int(name))) is not None:
            ppid, pgrp, _, _ = stat
            found.append((int(name), ppid, pgrp))
    return found


class PssReference:
    """The expensive reference: the summed PSS of a process group, as often as it can (<= ``hz``)."""

    def __init__(self, pgid: int, hz: float) -> None:
        self.pgid = pgid
        self.interval = 1.0 / hz
        self.peak_pss = 0
        self.peak_rss = 0
        self.samples = 0
        self.max_processes = 0
        self._start = 0.0
        self._duration = 0.0
        self._cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pss-reference", daemon=True)

    def start(self) -> None:
        """Starts sampling."""
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stops sampling and returns what it saw."""
        self._stop.set()
        self._thread.join()
        self._duration = time.monotonic() - self._start
        return {
            "peak_pss_tree_bytes": self.peak_pss or None,
            "peak_rss_tree_bytes": self.peak_rss or None,
            "samples": self.samples,
            "hz": self.samples / max(self._duration, 1e-9),
            "cpu_seconds": self._cpu,
            "max_processes": self.max_processes,
        }

    def _members(self) -> list[int]:
        return [pid for pid, _, pgrp in _processes() if pgrp == self.pgid]

    def _run(self) -> None:
        cpu0 = time.thread_time()
        while not self._stop.is_set():
            t0 = time.monotonic()
            pids = self._members()
            pss = sum(read_pss_bytes(pid) or 0 for pid in pids)
            rss = sum(r.total for pid in pids if (r := read_resident(pid)) is not None)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_rss = max(self.peak_rss, rss)
            self.max_processes = max(self.max_processes, len(pids))
            self.samples += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))
        self._cpu = time.thread_time() - cpu0


class TrialReference:
    """Attaches a :class:`PssReference` to the trial child that this process starts next.

    Used as ``with TrialReference(hz) as ref: run_trial(...)``: a watcher finds the child (a
    ``search.child.trainer`` process whose parent is this process; its PID is its process group) within
    a few milliseconds of its start, long before it has imported torch, and samples its group until
    the block ends.
    """

    def __init__(self, hz: float) -> None:
        self.hz = hz
        self._reference: PssReference | None = None
        self._result: dict[str, Any] = {}
        self._stop = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="reference-watcher", daemon=True)

    def __enter__(self) -> TrialReference:
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._watcher.join()
        if self._reference is not None:
            self._result = self._reference.stop()

    def result(self) -> dict[str, Any]:
        """What the reference saw (empty if the child was never found)."""
        return self._result

    def _watch(self) -> None:
        parent = os.getpid()
        while not self._stop.is_set():
            for pid, ppid, _ in _processes():
                if ppid != parent:
                    continue
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as handle:
                        cmdline = handle.read()
                except OSError:
                    continue
                if b"search.child.trainer" in cmdline:
                    self._reference = PssReference(pid, self.hz)
                    self._reference.start()
                    return
            self._stop.wait(0.005)


def child_env(settings_dir: Path) -> dict[str, str]:
    env = {**os.environ, **compat.child_environment(settings_dir)}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def run_bare(config: TrialConfig, root: Path, *, core: int | None = None) -> BareResult:
    """Runs the trial's yolov5 training in a plain subprocess, with nothing sampling it.

    With ``core``, the process runs on that core only (and ``config.threads`` torch threads).
    """
    _note_other_torch()
    dataset = load_dataset(config.data)
    folder = Path(tempfile.mkdtemp(prefix="bare-", dir=root))
    try:
        data_yaml, _ = write_trial_data_yaml(dataset, folder, seed=config.seed)
        model = resolve_model(config.model)
        opt = {
            "data": str(data_yaml),
            "cfg": model if model.endswith(".yaml") else "",
            "weights": model if model.endswith(".pt") else "",
            "epochs": config.epochs,
            "batch_size": config.batch,
            "imgsz": config.imgsz,
            "cache": None if config.cache == "none" else config.cache,
            "workers": config.workers,
            "device": config.device,
            "seed": config.seed,
            "project": str(folder),
            "name": "run",
            "exist_ok": True,
            "noplots": True,
            "noval": False,
        }
        settings_dir = folder / "settings"
        config_dir = compat.yolov5_config_dir(settings_dir)
        spec = {"config_dir": str(config_dir), "opt": opt, "threads": config.threads}
        (folder / "spec.json").write_text(json.dumps(spec))
        script = folder / "bare_train.py"
        script.write_text(BARE_SCRIPT)
        log_path = folder / "bare.log"
        with open(log_path, "wb") as log:
            started = time.monotonic()
            pin = ["taskset", "-c", str(core)] if core is not None else []
            env = child_env(settings_dir)
            if config.threads:
                env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(config.threads)
            child = subprocess.Popen(
                [*pin, sys.executable, str(script), str(folder / "spec.json")],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        try:
            _, status, usage = os.wait4(child.pid, 0)
            wall = time.monotonic() - started
        finally:
            _kill_group(child.pid)
        child.returncode = os.waitstatus_to_exitcode(status)
        return BareResult(
            wall_s=wall,
            exit_code=child.returncode,
            ru_maxrss_bytes=usage.ru_maxrss * 1024,
            log_tail=log_tail(log_path)[-15:] if child.returncode else [],
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_memfront(
    config: TrialConfig, root: Path, limits: TrialLimits | None = None
) -> tuple[TrialRecord, float, float]:
    """Runs the trial under memfront; returns its record, the call's wall time and the parent's CPU."""
    _note_other_torch()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()
    record = run_trial(config, limits=limits, workdir=root)
    wall = time.monotonic() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    parent_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return record, wall, parent_cpu


def steal_seconds() -> float:
    """CPU time the hypervisor gave to other guests, all cores (``steal`` in ``/proc/stat``)."""
    with open("/proc/stat") as handle:
        fields = handle.readline().split()
    return int(fields[8]) / os.sysconf("SC_CLK_TCK") if len(fields) > 8 else 0.0


def children_cpu() -> float:
    """CPU seconds of this process's reaped children (a trial's child includes the workers it reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_side_by_side(
    config: TrialConfig, root: Path, *, bare_core: int, memfront_core: int, control: bool = False
) -> dict[str, Any]:
    """Runs the bare training and the memfront trial at the same time, each on a core of its own.

    Whatever slows this machine for a while slows both alike, so their ratio keeps only what memfront
    adds. memfront's whole side (the trial's child, the supervising thread and the sampler) is held to
    its core: the search's cost falls on the memfront run, never on the bare one. With ``control``,
    a second bare run takes memfront's place: the ratio of two identical runs shows what this
    measurement itself can resolve.
    """
    results: dict[str, Any] = {}

    def bare_side() -> None:
        results["bare"] = run_bare(config, root, core=bare_core)

    bare_thread = threading.Thread(target=bare_side, name="bare-side")
    everything = os.sched_getaffinity(0)
    bare_thread.start()
    os.sched_setaffinity(0, {memfront_core})  # this thread; the sampler and the child inherit it
    record: TrialRecord | None = None
    try:
        if control:
            other = run_bare(config, root, core=memfront_core)
            check_bare(other, "side by side, control")
            wall = other.wall_s
        else:
            record, wall, _ = run_memfront(config, root)
    finally:
        os.sched_setaffinity(0, everything)
        bare_thread.join()
    bare = results["bare"]
    check_bare(bare, "side by side")
    if record is not None:
        check_record(record, "side by side")
    return {
        "control": control,
        "workers": config.workers,
        "cache": config.cache,
        "bare_core": bare_core,
        "memfront_core": memfront_core,
        "bare_wall_s": bare.wall_s,
        "memfront_wall_s": wall,
        "ratio": wall / bare.wall_s,
        "sampler_cpu_s": None if record is None else record.memory.get("sampler_cpu_seconds"),
        "pss_cpu_s": None if record is None else record.memory.get("pss_cpu_seconds"),
        "pss_samples": None if record is None else record.memory.get("pss_samples"),
    }


def check_bare(result: BareResult, what: str) -> None:
    if result.exit_code != 0:
        tail = "\n  ".join(result.log_tail)
        raise SystemExit(f"bare run ({what}) failed with exit code {result.exit_code}:\n  {tail}")


def check_record(record: TrialRecord, what: str, expected: str = "ok") -> None:
    if record.status != expected:
        tail = "\n  ".join(record.log_tail)
        raise SystemExit(f"memfront run ({what}) ended {record.status} ({record.error}):\n  {tail}")


def libtorch_holders(exclude: set[int]) -> int:
    """How many other processes map libtorch now (their sharing lowers a trial's PSS below its RSS)."""
    count = 0
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in exclude:
            continue
        with contextlib.suppress(OSError), open(f"/proc/{name}/maps", "rb") as handle:
            if b"libtorch_cpu" in handle.read():
                count += 1
    return count


# Most other processes that mapped libtorch, seen before any run of the bench (none of its own runs).
OTHER_TORCH: list[int] = []


def _note_other_torch() -> None:
    OTHER_TORCH.append(libtorch_holders({os.getpid()}))
