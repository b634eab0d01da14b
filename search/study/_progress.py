"""What a running study shows: a live progress bar for one worker, plain lines for several.

Shared by ``memfront run`` and :func:`search.run_study`, so a notebook sees what the terminal sees.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from search.study._stored import COUNTED_STATUSES
from search.trial._record import TrialRecord
from search.units import format_bytes, format_seconds, plural

if TYPE_CHECKING:
    from search.study._optimize import StudyOutcome
    from search.study._prepare import PreparedStudy
    from search.study._spec import StudySpec

__all__ = [
    "config_text",
    "live_display",
    "outcome_lines",
    "probe_line",
    "run_prepared",
    "trial_line",
]


def config_text(config: dict[str, Any]) -> str:
    """The five knobs in words."""
    amp = "on" if config.get("amp") else "off"
    return (
        f"batch {config.get('batch')}, imgsz {config.get('imgsz')}, cache {config.get('cache')}, "
        f"workers {config.get('workers')}, amp {amp}"
    )


_PAST_LIMIT = "[yellow]above the limit after the run (the kernel's high-water mark): does not fit[/]"


def _past_limit(status: str, peak: int | None, limits: Mapping[str, Any]) -> bool:
    """A run that ended ``ok`` with its peak above its limit: a spike between the sampler's reads,
    which the kernel's high-water mark showed only after the run (``apply_kernel_floor`` in
    :mod:`search.trial._outcome`). Optuna, the front and export count it over the limit; the line
    says so."""
    limit = limits.get("memory_limit_bytes")
    return status == "ok" and bool(peak and limit and peak > limit)


def trial_line(number: int, record: TrialRecord, note: str | None = None) -> str:
    """One finished trial, as ``run`` prints it."""
    colour = {"ok": "green", "memory_limit": "yellow", "predicted": "yellow"}.get(record.status, "red")
    figures = (
        f"mAP50-95 {record.map50_95:.3f}  " if record.map50_95 is not None else ""
    ) + f"peak {format_bytes(record.peak_host_bytes)}"
    if record.peak_gpu_bytes is not None:
        figures += f" (GPU {format_bytes(record.peak_gpu_bytes)})"
    figures += f"  {format_seconds(record.epoch_seconds)}/epoch"
    if _past_limit(record.status, record.peak_host_bytes, record.limits):
        figures += "  " + _PAST_LIMIT
    seed = record.requested.get("seed")
    knobs = config_text(record.requested) + ("" if seed is None else f", seed {seed}")
    line = f"trial {number:>3} [{colour}]{record.status:<12}[/] {knobs}  {figures}"
    if record.status in ("failed", "timeout") and record.error:
        # Why, in the run's own output: every later trial of a broken setup fails the same way.
        line += f"  [red]{escape(record.error_line() or '')}[/]"
    return line + (f"  [red]{note}[/]" if note else "")


def probe_line(plan: Any, result: Any) -> str:
    """One finished probe, as ``run`` prints it."""
    colour = {"ok": "green", "memory_limit": "yellow"}.get(result.status, "red")
    speed = (
        f"~{format_seconds(result.projected_epoch_seconds)}/epoch"
        if result.ok
        else ("over the limit" if result.status == "memory_limit" else str(result.error))
    )
    if _past_limit(result.status, result.peak_host_bytes, result.record.get("limits") or {}):
        speed += ", " + _PAST_LIMIT
    figures = (
        f"peak {format_bytes(result.peak_host_bytes)} ({result.peak_when})  "
        f"{speed} on {result.train_images} images  took {format_seconds(result.seconds)}"
    )
    knobs = config_text(result.knobs)
    return f"probe     [{colour}]{result.status:<12}[/] {knobs}  {figures}  [dim]{plan.reason}[/]"


def outcome_lines(spec: StudySpec, outcome: StudyOutcome) -> list[str]:
    """How a worker's run ended, as ``run`` prints it."""
    lines = [
        f"{spec.name}: {outcome.total_finished}/{spec.n_trials} trainings done "
        f"({outcome.trained} trained by this worker, {outcome.duplicates} repeated proposals skipped) in "
        f"{format_seconds(outcome.wall_seconds)}; {outcome.stop_reason}"
    ]
    if outcome.replicates:
        lines.append(
            f"accuracy: {outcome.replicates} of the trainings "
            f"{'is a replicate' if outcome.replicates == 1 else 'are replicates'} (a measured accuracy "
            "config trained again with another seed, where that could change the front)"
        )
    lines.extend(outcome.unranked)
    if outcome.accuracy_note:
        lines.append(outcome.accuracy_note)
    if outcome.probes or outcome.probes_failed:
        failed = (
            f"; {outcome.probes_failed} failed (their lines above say why)" if outcome.probes_failed else ""
        )
        lines.append(
            f"probes: {plural(outcome.probes, 'full config')} measured on the "
            f"whole dataset in {format_seconds(outcome.probe_seconds)}{failed}"
        )
    if outcome.preflight_skipped:
        lines.append(
            f"pre-flight: {outcome.preflight_skipped} configurations predicted over the limit were "
            f"not trained (about {format_seconds(outcome.preflight_seconds_saved)} saved)"
        )
    return lines


def run_prepared(
    prepared: PreparedStudy, *, console: Console | None, prefix: str | None = None
) -> StudyOutcome:
    """Runs one worker on a prepared study, showing its progress on ``console``.

    Args:
        prepared: From :func:`search.study._prepare.prepare_study`.
        console: Where progress goes; None shows nothing.
        prefix: Plain lines with this prefix instead of a live bar (several jobs share a terminal).
    """
    from search.study._optimize import run_worker

    if console is None:
        return run_worker(prepared)
    if not live_display(console, prefix):
        return _run_plain(prepared, console, prefix or "")
    return _run_with_progress(prepared, console)


def live_display(console: Console, prefix: str | None) -> bool:
    """Whether progress is a live bar: on a terminal or in a notebook, for one job. Several jobs on
    one terminal (``prefix``) would garble each other's bars, and a file or a pipe would keep only the
    bar's last frame, cut to 80 columns: they get one plain line per event."""
    return prefix is None and (console.is_terminal or console.is_jupyter)


def _run_with_progress(prepared: PreparedStudy, console: Console) -> StudyOutcome:
    from search.study._optimize import StudyEvents, run_worker

    spec = prepared.spec
    with Progress(
        TextColumn("[bold]{task.fields[name]}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=2,  # a trial shares the CPU with this display
    ) as bar:
        task = bar.add_task("", total=spec.n_trials, name=spec.name)
        current: dict[str, Any] = {}

        def on_start(number: int, params: dict[str, Any]) -> None:
            current.update(number=number, params=params)
            bar.update(task, description=f"trial {number}: {config_text(params)}")

        def on_progress(progress: Any) -> None:
            epoch = f"epoch {progress.epoch}/{progress.epochs}" if progress.epoch else progress.phase
            bar.update(
                task,
                description=f"trial {current.get('number')}: {config_text(current.get('params', {}))}"
                f"  {epoch}  host {format_bytes(progress.host_bytes)}",
            )

        def on_end(number: int, record: TrialRecord, note: str | None) -> None:
            bar.console.print(trial_line(number, record, note))
            if record.status in COUNTED_STATUSES:  # the bar counts toward n_trials, as the summary does
                bar.advance(task)

        def on_notes(notes: tuple[str, ...]) -> None:
            for note in notes:
                bar.console.print(f"[dim]note: {note}[/]")

        def on_probe_start(plan: Any) -> None:
            current.update(number="probe", params=plan.knobs)
            bar.update(task, description=f"probe: {config_text(plan.knobs)}")

        def on_probe_end(plan: Any, result: Any) -> None:
            bar.console.print(probe_line(plan, result))

        def on_any_progress(progress: Any) -> None:
            if current.get("number") == "probe":
                bar.update(
                    task,
                    description=f"probe: {config_text(current.get('params', {}))}  {progress.phase}  "
                    f"host {format_bytes(progress.host_bytes)}",
                )
            else:
                on_progress(progress)

        events = StudyEvents(
            on_notes=on_notes, on_trial_start=on_start, on_progress=on_any_progress, on_trial_end=on_end,
            on_probe_start=on_probe_start, on_probe_end=on_probe_end,
        )  # fmt: skip
        return run_worker(prepared, events=events)


def _run_plain(prepared: PreparedStudy, console: Console, prefix: str) -> StudyOutcome:
    """One line per event (:func:`live_display`: several jobs on one terminal, a file, a pipe)."""
    from search.study._optimize import StudyEvents, run_worker

    def on_notes(notes: tuple[str, ...]) -> None:
        for note in notes:
            console.print(f"{prefix}[dim]note: {note}[/]")

    def on_start(number: int, params: dict[str, Any]) -> None:
        console.print(f"{prefix}trial {number:>3} started: {config_text(params)}")

    def on_end(number: int, record: TrialRecord, note: str | None) -> None:
        console.print(prefix + trial_line(number, record, note))

    def on_probe_end(plan: Any, result: Any) -> None:
        console.print(prefix + probe_line(plan, result))

    events = StudyEvents(
        on_notes=on_notes, on_trial_start=on_start, on_trial_end=on_end, on_probe_end=on_probe_end
    )
    return run_worker(prepared, events=events)
