"""Ctrl-Z (search._pause): memfront stops with the processes it started, and its clocks and theirs
leave the pause out. Real processes, real signals."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from search import _pause

from .conftest import ROOT, trainer_processes

_PAUSE_S = 2.0

# A memfront-like parent: installs the handler, starts a child in a session of its own (as a trial
# is), follows its group, and reports what each side's clock saw. The child forks a worker, as a
# dataloader does, and reads its pauses as a trial's child does.
_PARENT = """
import json, os, signal, subprocess, sys, time
from pathlib import Path
from search import _pause

def terminate(signum, frame):
    raise KeyboardInterrupt  # as memfront's CLI does


folder = Path(sys.argv[1])
signal.signal(signal.SIGTERM, terminate)
_pause.install()
started = _pause.clock()
with _pause.starting():
    child = subprocess.Popen([sys.executable, "-c", sys.argv[2], str(folder)], start_new_session=True)
    following = _pause.followed(child.pid, group=True, pause_file=folder / "paused_s")
    follower = following.__enter__()
try:
    child.wait()
except KeyboardInterrupt:
    print(json.dumps({"interrupted": True}), flush=True)
    child.wait()
print(json.dumps({
    "parent_clock_s": _pause.clock() - started, "parent_paused_s": _pause.paused_seconds(),
    "follower_paused_s": follower.paused_s, "child": json.loads((folder / "child.json").read_text()),
}))
"""
_CHILD = """
import json, os, sys, time
from pathlib import Path
from search import _pause

folder = Path(sys.argv[1])
_pause.set_parent_death_signal(9)  # as a trial's child dies with memfront
_pause.follow_pauses(folder / "paused_s")
worker = os.fork()
if worker == 0:
    time.sleep(60)
    os._exit(0)
(folder / "pids").write_text(f"{os.getpid()} {worker}")
started, wall = _pause.clock(), time.monotonic()
while not (folder / "go").exists():  # busy, as a training is
    sum(range(1000))
    time.sleep(0.01)
os.kill(worker, 9)
os.waitpid(worker, 0)
(folder / "child.json").write_text(json.dumps({
    "clock_s": _pause.clock() - started, "wall_s": time.monotonic() - wall,
    "paused_s": _pause.paused_seconds(),
}))
"""


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


def _until(condition: Callable[[], bool], timeout_s: float = 20) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def reaped() -> Iterator[list[int]]:
    """PIDs the test started, killed whatever the test's end (a stopped one left behind would
    hold its memory, and a busy one the CPU, for the rest of the session)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def _line(process: subprocess.Popen[str], timeout_s: float = 30) -> str:
    """The process's next line of output, or "" after ``timeout_s``."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    return process.stdout.readline().strip() if ready else ""


def _start_parent(folder: Path, reaped: list[int]) -> tuple[subprocess.Popen[str], int, int]:
    """The memfront-like parent, its child and the child's worker, stopped by a Ctrl-Z."""
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(folder), _CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    reaped.append(parent.pid)
    assert _until(lambda: (folder / "pids").exists() and len((folder / "pids").read_text().split()) == 2)
    child, worker = map(int, (folder / "pids").read_text().split())
    reaped.extend((child, worker))
    parent.send_signal(signal.SIGTSTP)  # what the terminal sends on Ctrl-Z
    assert _until(lambda: {_state(p) for p in (parent.pid, child, worker)} == {"T"}), [
        _state(p) for p in (parent.pid, child, worker)
    ]
    return parent, child, worker


def _finish(parent: subprocess.Popen[str], folder: Path) -> dict[str, Any]:
    """Lets the child end; the parent's last report, once it exited 0."""
    (folder / "go").touch()
    try:
        out, _ = parent.communicate(timeout=30)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.communicate()
    assert parent.returncode == 0
    report: dict[str, Any] = json.loads(out.splitlines()[-1])
    return report


def test_ctrl_z_stops_the_followed_group_and_every_clock_leaves_the_pause_out(
    tmp_path: Path, reaped: list[int]
) -> None:
    # Before, a trial (in a session of its own) ran on while memfront was stopped: nothing enforced
    # its memory limit, and the pause counted toward its time limit.
    parent, child, worker = _start_parent(tmp_path, reaped)
    time.sleep(_PAUSE_S)
    assert {_state(p) for p in (parent.pid, child, worker)} == {"T"}
    parent.send_signal(signal.SIGCONT)  # what the shell's fg sends
    assert _until(lambda: "T" not in {_state(p) for p in (parent.pid, child, worker)})
    seen = _finish(parent, tmp_path)
    assert _PAUSE_S <= seen["parent_paused_s"] == seen["follower_paused_s"] < _PAUSE_S + 5
    assert seen["child"]["paused_s"] == seen["follower_paused_s"]  # read from the file on SIGCONT
    # Each clock ran the whole time less the pause: the child's from its start, the parent's from
    # before the child started.
    assert seen["child"]["wall_s"] - seen["child"]["clock_s"] == pytest.approx(
        seen["child"]["paused_s"], abs=0.01
    )
    assert seen["parent_clock_s"] >= seen["child"]["clock_s"] > 0
    assert seen["parent_clock_s"] < seen["child"]["wall_s"]


def test_kill_on_a_stopped_memfront_continues_its_trial_before_stopping_it(
    tmp_path: Path, reaped: list[int]
) -> None:
    # The shell's `kill %1` on a stopped job sends SIGTERM, then SIGCONT. The interrupt used to be
    # raised inside the Ctrl-Z handler as it woke, before it continued the trial: the trial stayed
    # stopped, and `run --jobs` waited for ever on jobs that could not act on their Ctrl-C.
    parent, child, worker = _start_parent(tmp_path, reaped)
    parent.send_signal(signal.SIGTERM)
    parent.send_signal(signal.SIGCONT)
    assert json.loads(_line(parent) or "null") == {"interrupted": True}
    assert _until(lambda: "T" not in {_state(p) for p in (child, worker)})  # continued first
    assert _finish(parent, tmp_path)["child"]["paused_s"] > 0


def test_a_stopped_memfront_killed_outright_leaves_no_process_stopped(
    tmp_path: Path, reaped: list[int]
) -> None:
    # The trial's child dies with memfront (its parent-death signal); its workers, stopped with it
    # and orphaned, used to stay stopped for good, holding their memory: they are continued, to see
    # their parent gone and exit (a dataloader worker's watchdog; here the test ends it).
    parent, child, worker = _start_parent(tmp_path, reaped)
    parent.kill()
    parent.wait(timeout=30)  # not its output: the worker holds the pipe open
    ended = ("gone", "Z")  # a zombie until the init process reaps it
    assert _until(lambda: _state(child) in ended and _state(worker) not in ("T", *ended), timeout_s=10), (
        _state(child),
        _state(worker),
    )
    os.kill(worker, signal.SIGKILL)
    parent.communicate(timeout=30)


_JOB = (
    "import time; time.sleep(3.0); from search import _pause; _pause.install(); "
    "print('installed', flush=True); time.sleep(30)"
)


def test_a_job_stopped_before_its_handler_is_in_place_stops_once_it_is(reaped: list[int]) -> None:
    # A job runs in a session of its own: its process group is orphaned, and the kernel discards a
    # SIGTSTP that meets the default action there. Started with SIGTSTP blocked, it gets it later.
    def start(blocked: bool) -> subprocess.Popen[str]:
        with _pause.starting(block_in_child=blocked):
            job = subprocess.Popen(
                [sys.executable, "-c", _JOB],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
        reaped.append(job.pid)
        job.send_signal(signal.SIGTSTP)  # during its start-up, before its handler is in place
        return job

    blocked, unblocked = start(blocked=True), start(blocked=False)
    try:
        assert _until(lambda: _state(blocked.pid) == "T")
        assert _line(unblocked) == "installed"
        assert _state(unblocked.pid) != "T"  # what happened to every job before
        blocked.send_signal(signal.SIGCONT)
        assert _line(blocked) == "installed"
    finally:
        for job in (blocked, unblocked):
            job.kill()
            job.communicate()


def test_an_ignored_ctrl_z_stays_ignored(tmp_path: Path) -> None:
    # Started with SIGTSTP ignored (a shell without job control), memfront does not stop on it.
    script = (
        "import signal, time; from search import _pause; _pause.install(); "
        "print(signal.getsignal(signal.SIGTSTP) is signal.SIG_IGN, flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGTSTP, signal.SIG_IGN),
    )  # fmt: skip
    try:
        assert _line(proc) == "True"
        proc.send_signal(signal.SIGTSTP)
        time.sleep(0.5)
        assert _state(proc.pid) != "T"
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_a_training_paused_past_its_time_limit_is_not_timed_out(tiny_data: Path, tmp_path: Path) -> None:
    # A real trial under the real CLI, stopped by Ctrl-Z in its second epoch for longer than its
    # whole time limit: its processes stop with memfront, and its time limit, wall time and epoch
    # times leave the pause out.
    time_limit_s, pause_s = 50, 55  # the trial alone takes about 20 s here
    record_path = tmp_path / "record.json"
    cli = subprocess.Popen(
        [sys.executable, "-m", "search", "trial", "--data", str(tiny_data), "--imgsz", "64", "--epochs", "3",
         "--workers", "1", "--hyp", "demo", "--time-limit", f"{time_limit_s}s", "--json", str(record_path)],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    temp = Path(tempfile.gettempdir())

    def in_second_epoch() -> bool:
        return any(
            '"event": "epoch"' in p.read_text() for p in temp.glob(f"memfront-trial-{cli.pid}-*/events.jsonl")
        )

    try:
        assert _until(in_second_epoch, timeout_s=200)
        started = time.monotonic()
        cli.send_signal(signal.SIGTSTP)
        trial = [p for p in trainer_processes() if os.getpgid(p) == p]
        assert len(trial) == 1
        group = [p for p in trainer_processes() if os.getpgid(p) == trial[0]]
        assert len(group) >= 2  # the child and its dataloader worker
        assert _until(lambda: {_state(p) for p in [cli.pid, *group]} == {"T"})
        time.sleep(pause_s)
        assert {_state(p) for p in [cli.pid, *group]} == {"T"}
        paused_for = time.monotonic() - started
        cli.send_signal(signal.SIGCONT)
        _, stderr = cli.communicate(timeout=200)
    finally:
        if cli.poll() is None:
            cli.send_signal(signal.SIGCONT)
            cli.send_signal(signal.SIGINT)
            cli.communicate(timeout=60)
    assert cli.returncode == 0, stderr
    record = json.loads(record_path.read_text())
    assert record["status"] == "ok", record["error"]
    assert pause_s <= record["phases"]["paused_s"] <= paused_for + 1
    assert record["wall_seconds"] < time_limit_s < record["wall_seconds"] + pause_s
    # The pause fell in an epoch (or its last validation); no epoch's time holds it.
    assert all(epoch["seconds"] < pause_s for epoch in record["epochs"])
    assert trainer_processes() == []
