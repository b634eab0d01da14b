"""``run --jobs``: local workers on a journal, a killed job, Ctrl-C on one worker, device pinning."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from search.errors import InputError
from search.study._jobs import _wait, job_devices
from search.study._prepare import open_study, storage_url
from search.study._spec import load_study_spec

from .conftest import (
    children_running_trials,
    leftovers_of,
    run_cli,
    scale_study,
    start_cli,
    trainer_processes,
)
from .test_workers import _assert_complete, _counted

# Tests of real YOLOv5 trials and worker processes are marked slow: `pytest -m "not slow"` skips them.


def _study(spec_path: Path, url: str | None = None) -> optuna.Study:
    spec = load_study_spec(spec_path)
    return open_study(spec, storage_url(spec, spec_path, url), create=False)


def _jobs_of(parent: int) -> list[int]:
    """The job processes a ``run --jobs`` process started, in index order."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and b"--worker-index" in cmdline:
            found.append((int(cmdline[cmdline.index(b"--worker-index") + 1]), int(name)))
    return [pid for _, pid in sorted(found)]


@pytest.mark.slow
def test_jobs_share_a_journal_and_survive_a_killed_job(tiny_data: Path, tmp_path: Path) -> None:
    spec = scale_study(tmp_path, tiny_data, n_trials=4)
    parent = start_cli("run", str(spec), "--jobs", "2")
    deadline = time.monotonic() + 300
    while (len(_jobs_of(parent.pid)) < 2 or not children_running_trials(_jobs_of(parent.pid)[0])) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    victim = _jobs_of(parent.pid)[0]
    trainers = children_running_trials(victim)
    assert trainers, "job 0 never started a trial"
    time.sleep(2)
    os.kill(victim, signal.SIGKILL)
    _, stderr = parent.communicate(timeout=600)
    assert parent.returncode == 0, stderr  # the other job finished the study
    assert "job 0 (killed by SIGKILL)" in stderr

    # Several local jobs default to a journal beside the study file: SQLite is unsafe for them.
    assert (tmp_path / "scale.journal").is_file() and not (tmp_path / "scale.db").exists()
    study = _study(spec)
    victim_name = f"{socket.gethostname()}:{victim}"
    # The job's trial killed with it; not a proposal of it discarded before (both jobs start at once
    # and may propose the same first config: one of them trains it).
    lost = next(
        t
        for t in study.get_trials()
        if t.user_attrs.get("worker") == victim_name and "discarded" not in t.user_attrs
    )
    assert lost.state == optuna.trial.TrialState.FAIL
    counted = _counted(study)
    assert len(counted) == 4
    # No training twice: a config may come back only as a replicate, with another seed.
    assert len({(tuple(sorted(t.user_attrs["config"].items())), t.user_attrs["seed"]) for t in counted}) == 4
    # On the CPU the jobs split the cores between their trials.
    assert {t.user_attrs["record"]["requested"]["threads"] for t in counted} == {
        max(1, (os.cpu_count() or 1) // 2)
    }
    retry = next((t for t in counted if t.user_attrs.get("retry_of") == lost.number), None)
    assert retry is not None, (
        lost.number,
        [(t.number, t.state.name, t.user_attrs) for t in study.get_trials()],
    )
    assert retry.user_attrs["config"] == lost.user_attrs["config"]
    _assert_complete(retry)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in trainers)
    assert trainer_processes() == [] and leftovers_of(victim) == []


@pytest.mark.slow
def test_ctrl_c_on_one_worker_stops_only_its_trial(tiny_data: Path, tmp_path: Path) -> None:
    spec = scale_study(tmp_path, tiny_data, n_trials=3)
    url = f"journal:{tmp_path / 'shared.journal'}"
    first = start_cli("run", str(spec), "--storage", url)
    deadline = time.monotonic() + 300
    while not children_running_trials(first.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    second = start_cli("run", str(spec), "--storage", url)
    while not children_running_trials(second.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert children_running_trials(first.pid) and children_running_trials(second.pid)
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 130, stderr
    assert children_running_trials(second.pid)  # the other worker's trial goes on

    _, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    study = _study(spec, url)
    stopped = [t for t in study.get_trials() if t.user_attrs.get("status") == "interrupted"]
    assert len(stopped) == 1 and stopped[0].user_attrs["worker"].endswith(f":{first.pid}")
    counted = _counted(study)
    assert len(counted) == 3 and all(t.user_attrs["worker"].endswith(f":{second.pid}") for t in counted)
    # The interrupted configuration was handed to the other worker, and trained there.
    requeued = [t for t in counted if t.user_attrs.get("requeue_of") == stopped[0].number]
    assert len(requeued) == 1 and requeued[0].user_attrs["config"] == stopped[0].user_attrs["config"]
    assert trainer_processes() == []


def test_device_pinning_gives_one_job_per_device() -> None:
    assert job_devices(jobs=None, devices="0,1", study_device="cpu") == ["0", "1"]
    assert job_devices(jobs=3, devices=None, study_device="cpu") == ["cpu"] * 3
    assert job_devices(jobs=None, devices=None, study_device="cpu") == ["cpu"]
    with pytest.raises(InputError, match="one job per device"):
        job_devices(jobs=3, devices="0,1", study_device="cpu")
    with pytest.raises(InputError, match="listed twice"):
        job_devices(jobs=None, devices="0,0", study_device="cpu")
    with pytest.raises(InputError, match="at least 1"):
        job_devices(jobs=0, devices=None, study_device="cpu")


@pytest.mark.slow
def test_bad_jobs_input_exits_2(tiny_data: Path, tmp_path: Path) -> None:
    spec = scale_study(tmp_path, tiny_data, n_trials=2)
    cases = {
        ("--jobs", "2", "--storage", f"sqlite:///{tmp_path / 'x.db'}"): "not safe for concurrent writers",
        ("--devices", "0,1"): "CUDA device 0 does not exist here (0 CUDA devices visible)",  # no GPU here
        ("--jobs", "1000"): "this machine has",  # 1000 x 6 GiB limits cannot fit
        ("--device", "gpu"): "expected cpu, a CUDA index",
        ("--threads", "0"): "--threads: must be at least 1",
    }
    for args, message in cases.items():
        done = run_cli("run", str(spec), *args, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (args, done.stderr)
    assert not list(tmp_path.glob("*.db")) and not list(tmp_path.glob("*.journal"))


# A job that counts the SIGINTs it gets and ends after two.
_COUNTING_JOB = """
import signal, sys
count = 0
def counted(signum, frame):
    global count
    count += 1
signal.signal(signal.SIGINT, counted)
print("ready", flush=True)
while count < 2:
    signal.pause()
print(count, flush=True)
"""


def test_each_ctrl_c_is_passed_on_to_each_running_job() -> None:
    # Only the first used to be: a job whose storage hung while it held that Ctrl-C (it takes effect
    # once the proposal or the result is stored) could be stopped only with kill.
    # SIGINT raising KeyboardInterrupt, as memfront's CLI sets it: a test session started in the
    # background (nohup, `&` in a script) inherits it ignored.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    jobs = [
        subprocess.Popen([sys.executable, "-c", _COUNTING_JOB], stdout=subprocess.PIPE, text=True,
                         start_new_session=True)
        for _ in range(2)
    ]  # fmt: skip
    try:
        for job in jobs:
            assert job.stdout is not None and job.stdout.readline().strip() == "ready"

        waited = threading.Event()

        def press_ctrl_c_twice() -> None:
            for _ in range(2):
                time.sleep(0.5)
                os.kill(os.getpid(), signal.SIGINT)  # the main thread's wait gets KeyboardInterrupt
            if not waited.wait(20):  # a job that never got the second would hold the wait forever
                for job in jobs:
                    job.kill()

        presser = threading.Thread(target=press_ctrl_c_twice)
        presser.start()
        assert _wait(jobs)  # interrupted
        waited.set()
        presser.join()
        assert [job.stdout.read().strip() for job in jobs if job.stdout] == ["2", "2"]
    finally:
        signal.signal(signal.SIGINT, previous)
        for job in jobs:
            if job.poll() is None:
                job.kill()
            job.communicate()


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.mark.slow
def test_ctrl_z_and_ctrl_c_on_jobs_reach_every_job_and_its_trial(tiny_data: Path, tmp_path: Path) -> None:
    # The jobs run in sessions of their own, out of the terminal's reach: the parent passes both on.
    spec = scale_study(tmp_path, tiny_data, n_trials=6)
    parent = start_cli("run", str(spec), "--jobs", "2")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (
            len(jobs := _jobs_of(parent.pid)) == 2 and all(children_running_trials(job) for job in jobs)
        ):
            time.sleep(0.2)
        trainers = [t for job in jobs for t in children_running_trials(job)]
        assert len(trainers) == 2, "the jobs never both ran a trial"
        everyone = [parent.pid, *jobs, *trainers]
        parent.send_signal(signal.SIGTSTP)
        deadline = time.monotonic() + 20
        while {_state(pid) for pid in everyone} != {"T"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [_state(pid) for pid in everyone] == ["T"] * len(everyone)
        parent.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 20
        while "T" in {_state(pid) for pid in everyone} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "T" not in [_state(pid) for pid in everyone]
        parent.send_signal(signal.SIGINT)
        _, stderr = parent.communicate(timeout=120)
    finally:
        if parent.poll() is None:
            # The jobs too: continued when their parent dies, they would train on for minutes.
            for pid in [*_jobs_of(parent.pid), parent.pid]:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            parent.communicate()
    assert parent.returncode == 130, stderr
    study = _study(spec)
    stopped = [t for t in study.get_trials() if t.user_attrs.get("status") == "interrupted"]
    assert len(stopped) == 2, [(t.number, t.user_attrs.get("status")) for t in study.get_trials()]
    assert trainer_processes() == [] and all(leftovers_of(job) == [] for job in jobs)


def test_a_job_that_ended_early_is_told_apart_from_one_killed() -> None:
    from search.cli._run import _exit_text

    # A job exits 1 on purpose (trainings that kept failing) after saying why; a killed one cannot.
    assert _exit_text(1) == "exit 1: its last lines above say why"
    assert _exit_text(-9) == "killed by SIGKILL"
