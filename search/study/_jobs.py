"""``memfront run --jobs N``: several workers of one study on this host, one trial each at a time.

Each job is an ordinary worker (``memfront run ... --worker-index i``) in its own process and
session, exactly what a user would start by hand on another machine; this module only starts them,
pins each to its device, passes Ctrl-C and Ctrl-Z on to each, and waits. A job that dies (``kill -9``)
leaves its trial to the others' heartbeat checks: they fail it and retry its configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
from pathlib import Path

from search._pause import clock, followed, starting
from search.errors import InputError

__all__ = ["JobsOutcome", "job_devices", "run_jobs"]


def job_devices(*, jobs: int | None, devices: str | None, study_device: str) -> list[str]:
    """The device of each job: one per ``--devices`` entry, else the study's device ``jobs`` times.

    Raises:
        InputError: For a count that is not positive, or ``--jobs`` that disagrees with ``--devices``.
    """
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs: must be at least 1, got {jobs}")
    if devices is None:
        return [study_device] * (jobs or 1)
    pinned = [d.strip() for d in devices.split(",") if d.strip()]
    if not pinned:
        raise InputError("--devices: give CUDA indices such as 0,1")
    if len(set(pinned)) != len(pinned):
        raise InputError(f"--devices {devices}: a device is listed twice (one trial per device)")
    if jobs is not None and jobs != len(pinned):
        raise InputError(f"--jobs {jobs} with --devices {devices}: one job per device, so {len(pinned)} jobs")
    return pinned


@dataclasses.dataclass(frozen=True)
class JobsOutcome:
    """How the jobs ended: each one's exit code (negative: killed by that signal)."""

    exit_codes: list[int]
    interrupted: bool
    wall_seconds: float


def run_jobs(
    study_file: Path, *, storage: str, devices: list[str], threads: int | None = None
) -> JobsOutcome:
    """Starts one worker per device on ``storage`` and waits for all of them.

    Args:
        study_file: The study definition.
        storage: The storage URL every job uses (safe for concurrent writers).
        devices: One device per job.
        threads: torch CPU threads of each job's trials (None: torch's default).

    Returns:
        Each job's exit code, and whether Ctrl-C stopped them.
    """
    started = clock()
    procs: list[subprocess.Popen[bytes]] = []
    # The CLI turns SIGTERM into KeyboardInterrupt too: `kill PID` stops the jobs as Ctrl-C does.
    # Ctrl-Z is passed on as well: each job stops its trial, then itself (search._pause).
    presses = 0
    with contextlib.ExitStack() as following:
        try:
            with starting(block_in_child=True):
                for index, device in enumerate(devices):
                    command = [
                        sys.executable, "-m", "search", "run", str(study_file), "--storage", storage,
                        "--device", device, "--worker-index", str(index),
                        *(["--threads", str(threads)] if threads else []),
                    ]  # fmt: skip
                    # Own sessions: a terminal's Ctrl-C reaches this process only, which passes each
                    # one on to each job once (the terminal's and this process's would be two).
                    procs.append(subprocess.Popen(command, start_new_session=True))
                    following.enter_context(followed(procs[-1].pid, group=False, stop_signal=signal.SIGTSTP))
        except KeyboardInterrupt:
            presses = 1  # the jobs started so far get it too, and are waited for
        interrupted = _wait(procs, presses=presses)
    return JobsOutcome(
        exit_codes=[proc.returncode for proc in procs],
        interrupted=interrupted,
        wall_seconds=clock() - started,
    )


def _wait(procs: list[subprocess.Popen[bytes]], *, presses: int = 0) -> bool:
    """Waits for every job; returns whether an interrupt was forwarded to them.

    Each Ctrl-C (``presses`` of them before the wait) is passed on to each job still running, once:
    a job acts on it as a lone worker on its terminal's (the first stops its trial cleanly; a
    second, where a job holds the first while it stores a proposal or a result, takes effect at
    once). One that comes while the others are being passed on is passed on after them.
    """
    sent = [0] * len(procs)
    while True:
        try:
            for index, proc in enumerate(procs):
                while sent[index] < presses and proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    sent[index] += 1
            for proc in procs:
                proc.wait()
            break
        except KeyboardInterrupt:
            presses += 1
    return presses > 0
