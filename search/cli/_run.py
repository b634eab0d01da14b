"""The search commands of the CLI: ``run`` (one worker, or ``--jobs`` workers) and ``status``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from search.cli._options import EXIT_INTERRUPTED
from search.cli._results import StorageOption, StudyFile, out
from search.errors import InputError
from search.study._progress import config_text, outcome_lines, run_prepared
from search.units import format_seconds

__all__ = ["register"]

console = Console(stderr=True, soft_wrap=True)


def run(
    study_file: StudyFile,
    storage: StorageOption = None,
    jobs: Annotated[
        int | None, typer.Option(help="Workers on this host, one trial each at a time (default 1).")
    ] = None,
    devices: Annotated[
        str | None, typer.Option(help="CUDA devices, one job pinned to each, e.g. 0,1 (sets --jobs).")
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="This worker's device (overrides the study file).")
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(help="torch CPU threads per trial (default: all cores; --jobs on the CPU: cores/jobs)."),
    ] = None,
    worker_index: Annotated[int | None, typer.Option(hidden=True)] = None,
) -> None:
    """Create or resume a study and train until n_trials configurations are done (across all workers)."""
    from search.study._jobs import job_devices
    from search.study._prepare import prepare_study
    from search.study._spec import load_study_spec

    spec = load_study_spec(study_file)
    if device is not None:
        spec = spec.model_copy(update={"device": device})
    pinned = job_devices(jobs=jobs, devices=devices, study_device=spec.device)
    if threads is not None and threads < 1:
        raise InputError(f"--threads: must be at least 1, got {threads}")
    if len(pinned) > 1 or devices is not None:
        _run_jobs(spec, study_file, storage, pinned, threads)
        return
    prepared = prepare_study(spec, study_file, storage=storage, worker_index=worker_index)
    prepared = dataclasses.replace(prepared, threads=threads)
    if worker_index is None:
        outcome = run_prepared(prepared, console=console)
    else:
        outcome = run_prepared(prepared, console=console, prefix=f"[job {worker_index} {spec.device}] ")
    prefix = "" if worker_index is None else f"[job {worker_index}] "
    for line in outcome_lines(spec, outcome):
        console.print(prefix + line)
    if outcome.interrupted:
        console.print(f"{prefix}interrupted: everything finished is stored; run the same command to continue")
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.failed:
        raise typer.Exit(1)  # stopped by trainings that kept failing: the line above says why


def _run_jobs(
    spec: Any, study_file: Path, storage: str | None, pinned: list[str], threads: int | None
) -> None:
    from search.measure._footprint import check_device
    from search.study._jobs import run_jobs
    from search.study._prepare import prepare_study
    from search.study._storage import safe_url

    for each in pinned:
        check_device(each)
    # Checks and creates everything once, before any job starts (the jobs find it all in place).
    prepared = prepare_study(spec.model_copy(update={"device": pinned[0]}), study_file, storage=storage,
                             jobs=len(pinned))  # fmt: skip
    console.print(f"{spec.name}: {len(pinned)} jobs on {safe_url(prepared.url)}, devices {', '.join(pinned)}")
    if threads is None and all(device == "cpu" for device in pinned):
        # Jobs on the CPU share its cores: each trial's torch gets its share, not all of them (two
        # trials with a thread per core each ran at 0.45x the trials per hour of one job here).
        threads = max(1, (os.cpu_count() or 1) // len(pinned))
    outcome = run_jobs(study_file, storage=prepared.url, devices=pinned, threads=threads)
    from search.study._optimize import finished_count

    done = finished_count(prepared.study)
    codes = enumerate(outcome.exit_codes)
    lost = [f"job {i} ({_exit_text(code)})" for i, code in codes if code not in (0, EXIT_INTERRUPTED)]
    console.print(
        f"{spec.name}: {done}/{spec.n_trials} trainings done by {len(pinned)} jobs in "
        f"{format_seconds(outcome.wall_seconds)}" + (f"; ended early: {', '.join(lost)}" if lost else "")
    )
    if outcome.interrupted:
        console.print("interrupted: everything finished is stored; run the same command to continue")
        raise typer.Exit(EXIT_INTERRUPTED)
    if done < spec.n_trials and lost:
        raise typer.Exit(1)


def _exit_text(code: int) -> str:
    if code < 0:
        import signal

        return f"killed by {signal.Signals(-code).name}"
    return f"exit {code}: its last lines above say why"


def status(
    study_file: StudyFile,
    storage: StorageOption = None,
    recent: Annotated[str, typer.Option(help="List workers seen within this long.")] = "10m",
) -> None:
    """Workers seen recently, trials running / done / infeasible, and the front's size."""
    from search.study._prepare import open_study, storage_url
    from search.study._space import KnobRoles
    from search.study._spec import load_study_spec
    from search.study._workers import study_status
    from search.units import parse_duration

    try:
        recent_s = parse_duration(recent)
    except ValueError as error:
        raise InputError(f"--recent: {error}") from None
    spec = load_study_spec(study_file)
    url = storage_url(spec, study_file, storage)
    study = open_study(spec, url, create=False)
    from search.results._load import whole_dataset

    try:
        figures = whole_dataset(spec, study_file, study).figures
    except InputError:
        figures = None  # the dataset is not at hand: trials' own figures
    now = study_status(
        study, n_trials=spec.n_trials, recent_s=recent_s,
        rules=spec.noise_rules, systems_of=figures,
        roles=KnobRoles.of(spec.framework),
    )  # fmt: skip
    from search.study._storage import safe_url

    counts = ", ".join(f"{k} {v}" for k, v in sorted(now.counts.items())) or "none"
    infeasible = now.counts.get("memory_limit", 0) + now.counts.get("predicted", 0)
    out.print(f"{now.name} on {safe_url(url)}")
    out.print(
        f"trials: {now.done}/{now.n_trials} done, {len(now.running)} running, {now.waiting} waiting, "
        f"{infeasible} infeasible; by status: {counts}; front: {now.front_size} configurations"
    )
    workers = Table(title=f"workers seen in the last {format_seconds(recent_s)}")
    for column in ("worker", "device", "state", "trial", "last seen"):
        workers.add_column(column)
    for seen in now.workers:
        workers.add_row(
            seen.name, seen.device, seen.state, "-" if seen.trial is None else str(seen.trial),
            f"{format_seconds(seen.seconds_since_seen)} ago",
        )  # fmt: skip
    from search.study._stored import read_trials
    from search.study._unranked import unranked_lines

    for line in unranked_lines(read_trials(study.get_trials(deepcopy=False)), spec):
        out.print(line)
    out.print(workers if now.workers else f"workers: none seen in the last {format_seconds(recent_s)}")
    if now.running:
        running = Table(title="running trials")
        for column in ("trial", "worker", "config", "running for", "retry of"):
            running.add_column(column)
        for trial in now.running:
            running.add_row(
                str(trial.number), trial.worker or "-", config_text(trial.config),
                format_seconds(trial.seconds_running), "-" if trial.retry_of is None else str(trial.retry_of),
            )  # fmt: skip
        out.print(running)


def register(app: typer.Typer) -> None:
    """Adds the search commands to the CLI."""
    app.command()(run)
    app.command()(status)
