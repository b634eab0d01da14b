"""Real workers on one PostgreSQL study: one n_trials for all, no repeats, a killed worker's trial retried."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from search.study._prepare import open_study
from search.study._spec import load_study_spec
from search.study._trainings import replicate_identity

from .conftest import (
    children_running_trials,
    leftovers_of,
    run_cli,
    scale_study,
    start_cli,
    trainer_processes,
)
from .postgres import PostgresServer

# Real YOLOv5 trials, worker processes or a PostgreSQL server: `pytest -m "not slow"` skips them.
pytestmark = pytest.mark.slow


def _study(spec_path: Path, url: str) -> optuna.Study:
    return open_study(load_study_spec(spec_path), url, create=False)


def _counted(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The trials that count towards n_trials, as the search counts them."""
    return [
        t
        for t in study.get_trials()
        if t.state.is_finished()
        and t.user_attrs.get("status") not in (None, "interrupted")
        and not {"duplicate_of", "discarded"} & t.user_attrs.keys()
    ]


def _timeline(study: optuna.Study) -> str:
    """Every trial in one line each, for a failed assertion's message: who trained what, when."""
    lines = []
    for t in study.get_trials():
        attrs = t.user_attrs
        lines.append(
            f"#{t.number} {t.state.name} status={attrs.get('status')} worker={attrs.get('worker')} "
            f"config={attrs.get('config')} seed={attrs.get('seed')} retry_of={attrs.get('retry_of')} "
            f"duplicate_of={attrs.get('duplicate_of')} discarded={attrs.get('discarded')} "
            f"start={t.datetime_start} end={t.datetime_complete}"
        )
    return "\n".join(lines)


def _finish(workers: list[subprocess.Popen[str]], timeout: float = 600) -> list[str]:
    outputs = []
    for worker in workers:
        _, stderr = worker.communicate(timeout=timeout)
        outputs.append(stderr)
    return outputs


def _assert_complete(trial: optuna.trial.FrozenTrial) -> None:
    record = trial.user_attrs["record"]
    assert trial.user_attrs["status"] == "ok" and trial.state == optuna.trial.TrialState.COMPLETE
    assert record["status"] == "ok" and record["map50_95"] is not None and record["peak_host_bytes"] > 0
    assert len(record["epochs"]) == 1 and record["used"]["imgsz"] in (64, 96)
    assert trial.user_attrs["worker"].startswith(socket.gethostname() + ":")


def test_three_workers_share_one_postgresql_study(
    postgres: PostgresServer, tiny_data: Path, tmp_path: Path
) -> None:
    spec = scale_study(tmp_path, tiny_data, n_trials=4)
    url = postgres.new_database()
    # The study is created first, as a user's first worker would; the others join it.
    workers = [start_cli("run", str(spec), "--storage", url) for _ in range(3)]
    outputs = _finish(workers)
    assert [w.returncode for w in workers] == [0, 0, 0], outputs

    study = _study(spec, url)
    counted = _counted(study)
    assert len(counted) == 4  # n_trials is a total across workers, not per worker
    # No training repeated: a configuration trains again only as a replicate, with another seed
    # (another random stream).
    streams = [replicate_identity(t.user_attrs["config"], t.user_attrs["seed"]) for t in counted]
    assert len(set(streams)) == 4, _timeline(study)
    for trial in counted:
        _assert_complete(trial)
    assert not [t for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING]
    workers_seen = {k for k in study.user_attrs if k.startswith("worker:")}
    assert len(workers_seen) == 3
    assert {study.user_attrs[k]["state"] for k in workers_seen} == {"stopped"}

    status = run_cli("status", str(spec), "--storage", url)
    assert status.returncode == 0, status.stderr
    assert "4/4 done, 0 running" in status.stdout
    assert all(str(w.pid) in status.stdout for w in workers)  # each worker listed, seen recently
    assert trainer_processes() == []


def test_killed_worker_trial_is_failed_and_its_config_retried(
    postgres: PostgresServer, tiny_data: Path, tmp_path: Path
) -> None:
    spec = scale_study(tmp_path, tiny_data, n_trials=4)
    url = postgres.new_database()
    victim = start_cli("run", str(spec), "--storage", url)
    deadline = time.monotonic() + 300
    while not children_running_trials(victim.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    trainers = children_running_trials(victim.pid)
    assert trainers, "the first worker never started a trial"
    survivor = start_cli("run", str(spec), "--storage", url)
    time.sleep(2)  # mid-trial: the trial child is importing torch or training
    victim.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    victim.communicate(timeout=30)

    grace = load_study_spec(spec).heartbeat_grace
    study = _study(spec, url)
    victim_name = f"{socket.gethostname()}:{victim.pid}"
    lost = next(t for t in study.get_trials() if t.user_attrs.get("worker") == victim_name)
    while study.get_trials()[lost.number].state == optuna.trial.TrialState.RUNNING:
        assert time.monotonic() - killed_at < grace + 10, "the killed worker's trial was never failed"
        time.sleep(0.5)
    failed_after = time.monotonic() - killed_at
    assert study.get_trials()[lost.number].state == optuna.trial.TrialState.FAIL
    time.sleep(1)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in trainers)  # died with its worker

    survivor.communicate(timeout=600)
    assert survivor.returncode == 0
    trials = study.get_trials()
    counted = _counted(study)
    assert len(counted) == 4  # the study still reaches n_trials
    retries = [t for t in counted if t.user_attrs.get("retry_of") == lost.number]
    assert len(retries) == 1 and retries[0].user_attrs["config"] == lost.user_attrs["config"]
    _assert_complete(retries[0])
    assert len({replicate_identity(t.user_attrs["config"], t.user_attrs["seed"]) for t in counted}) == 4
    assert not [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert failed_after >= grace - 1  # failed by its silence, not before the grace period
    assert leftovers_of(victim.pid) == []  # the survivor's next trial removed the killed one's folders
    report = run_cli("report", str(spec), "--storage", url, "--all")
    assert report.returncode == 0 and "lost" in report.stdout
    assert trainer_processes() == []
