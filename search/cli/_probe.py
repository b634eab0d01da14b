"""The ``probe`` command: one full config's memory and speed on the whole dataset, no training."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from search.cli._options import (
    EXIT_INTERRUPTED,
    FrameworkOption,
    GpuMemoryLimitOption,
    HypOption,
    MemoryLimitOption,
    TimeLimitOption,
    device_option,
    duration_option,
    output_path,
    size_option,
    spare_the_study,
    switch_option,
)
from search.errors import InputError
from search.trial._config import TrialConfig, TrialLimits, validation_message
from search.units import format_bytes, format_seconds

__all__ = ["print_probe", "register"]

console = Console(stderr=True, soft_wrap=True)


def print_probe(result: Any, *, target: Console | None = None) -> None:
    """Prints a probe's result as a two-column table."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    colour = "green" if result.ok else "red"
    table.add_row("status", f"[{colour}]{result.status}[/]" + (f"  ({result.error})" if result.error else ""))
    knobs = result.knobs
    table.add_row(
        "config",
        f"batch {knobs['batch']}, imgsz {knobs['imgsz']}, cache {knobs['cache']}, "
        f"workers {knobs['workers']}, amp {'on' if knobs['amp'] else 'off'}; "
        f"{result.train_images} train + {result.val_images} val images",
    )
    bound = "" if result.ok else " (a lower bound: the probe did not end)"
    table.add_row(
        "peak host memory", f"{format_bytes(result.peak_host_bytes)}{bound}, set {result.peak_when}"
    )
    table.add_row(
        "peak GPU memory",
        "- (no CUDA)" if result.peak_gpu_bytes is None else format_bytes(result.peak_gpu_bytes),
    )
    speed = "-" if result.images_per_second is None else f"{result.images_per_second:.1f} images/s"
    table.add_row("training speed", speed)
    epoch = format_seconds(result.projected_epoch_seconds)
    if result.projected_train_seconds is not None and result.validation_seconds is not None:
        # A barely trained model puts few boxes above yolov5's confidence threshold, so NMS and the
        # metrics have little to do; a study replaces the pass by its trainings' own.
        epoch += (
            f" (training {format_seconds(result.projected_train_seconds)} + validation "
            f"{format_seconds(result.validation_seconds)}, the pass of a barely trained model: a trained "
            "model's takes longer, up to 5x in the README's probe benchmark)"
        )
    table.add_row("projected epoch", epoch)
    for name in ("train", "val"):
        loop = getattr(result, name)
        if loop:
            table.add_row(
                f"{name} batches",
                f"{_batches_text(loop)} ({loop['stop_reason']}), "
                f"{_milliseconds(loop.get('seconds_per_batch'))} each",
            )
    table.add_row("probe took", format_seconds(result.seconds))
    (target or console).print(table)


def _batches_text(loop: dict[str, Any]) -> str:
    """``20 in 2 passes of 10`` (each epoch's loop runs to its own plateau), or ``8 of 10``."""
    passes = int(loop.get("passes") or 1)
    if passes > 1:
        return f"{loop['batches']} in {passes} passes of {loop['batches_total']}"
    return f"{loop['batches']} of {loop['batches_total']}"


def probe(
    data: Annotated[str | None, typer.Option(help="YOLO data yaml (every image is used).")] = None,
    study_file: Annotated[
        Path | None,
        typer.Option(
            "--study",
            help="Probe for this study: its data, model, hyp, device and limits, stored in its storage "
            "(its workers use the probe and never take it again).",
        ),
    ] = None,
    storage: Annotated[
        str | None, typer.Option(help="With --study: Optuna storage URL (overrides the study file).")
    ] = None,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 16,
    imgsz: Annotated[int, typer.Option(help="Image size (rounded up to a multiple of 32).")] = 640,
    cache: Annotated[str, typer.Option(help="Image cache: none, ram or disk.")] = "none",
    workers: Annotated[int, typer.Option(help="Dataloader workers.")] = 0,
    amp: Annotated[str, typer.Option(help="Mixed precision: on or off.")] = "off",
    model: Annotated[
        str | None,
        typer.Option(help="Model yaml (from scratch) or local .pt (fine-tune); default the framework's."),
    ] = None,
    framework: FrameworkOption = None,
    device: Annotated[str | None, typer.Option(help="cpu, or a CUDA device such as 0 (default cpu).")] = None,
    hyp: HypOption = None,
    memory_limit: MemoryLimitOption = None,
    gpu_memory_limit: GpuMemoryLimitOption = None,
    time_limit: TimeLimitOption = None,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json",
            callback=output_path,
            help="Write the result here as JSON (- for stdout).",
        ),
    ] = None,
) -> None:
    """Measure one full config's peak memory and epoch time on the whole dataset, without training it.

    Builds the cache as the framework does (all train and val images), runs training batches with the real
    dataloader workers until the peak stops growing and one whole validation pass, twice, and stops. With
    --study, the probe is the study's: stored in its storage, used by its workers, never taken again.
    """
    use_amp = switch_option(amp, "--amp")
    knobs = {"batch": batch, "imgsz": imgsz, "cache": cache, "workers": workers, "amp": use_amp}
    if study_file is None:
        device_option(device)
    if study_file is not None:
        given = {
            "--data": data, "--model": model, "--framework": framework, "--hyp": hyp,
            "--memory-limit": memory_limit, "--gpu-memory-limit": gpu_memory_limit,
            "--device": device,
        }  # fmt: skip
        for name, value in given.items():
            if value is not None:
                raise InputError(f"{name}: with --study it comes from the study file")
        _probe_for_study(study_file, storage, knobs, duration_option(time_limit, "--time-limit"), json_path)
        return
    if storage is not None:
        raise InputError("--storage: only with --study (a probe without a study is not stored)")
    if data is None:
        raise InputError("--data: give a data yaml, or --study STUDY.yaml to probe for a study")
    try:
        config = TrialConfig(
            data=data, framework=framework, model=model, batch=batch, imgsz=imgsz, cache=cache,
            workers=workers, amp=use_amp, device=device or "cpu", hyp=hyp,
        )  # fmt: skip
    except ValidationError as error:
        raise InputError(f"--{validation_message(error).replace('_', '-')}") from None
    limits = TrialLimits(
        memory_limit_bytes=size_option(memory_limit, "--memory-limit"),
        gpu_memory_limit_bytes=size_option(gpu_memory_limit, "--gpu-memory-limit"),
        time_limit_s=duration_option(time_limit, "--time-limit"),
    )
    from search.data._dataset import load_dataset
    from search.probe._run import run_probe

    load_dataset(config.data)  # a data yaml that cannot be read says so before a bar is drawn
    with _progress() as show:
        result = run_probe(config, limits=limits, on_progress=show)
    print_probe(result)
    _finish(result, json_path)


def _probe_for_study(
    study_file: Path,
    storage: str | None,
    knobs: dict[str, Any],
    time_limit_s: float | None,
    json_path: Path | None,
) -> None:
    from search.study._probe_command import probe_for_study
    from search.study._spec import load_study_spec

    spare_the_study(study_file, storage, json_path)
    spec = load_study_spec(study_file)
    with _progress() as show:
        probed = probe_for_study(
            spec, study_file, knobs, storage=storage, time_limit_s=time_limit_s, on_progress=show
        )
    if probed.reused:
        console.print(
            f"already probed for this dataset and machine: probe {probed.number} of memfront-probes in "
            f"{probed.url}, not taken again"
        )
    print_probe(probed.result)
    if probed.number is not None and not probed.reused:
        console.print(
            f"stored as probe {probed.number} of memfront-probes in {probed.url}: study {spec.name!r} "
            "counts it (front, export, memory model) and never probes this config again"
        )
    _finish(probed.result, json_path)


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[Any], None]]:
    with Progress(
        TextColumn("[bold]probing[/]"),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=2,
        transient=True,
    ) as bar:
        task = bar.add_task("starting")

        def show(progress: Any) -> None:
            bar.update(task, description=f"{progress.phase}  host {format_bytes(progress.host_bytes)}")

        yield show


def _finish(result: Any, json_path: Path | None) -> None:
    """Writes the JSON asked for and exits as the probe's status says."""
    if json_path is not None:
        text = json.dumps(result.to_dict(), indent=2) + "\n"
        if str(json_path) == "-":
            sys.stdout.write(text)
        else:
            json_path.write_text(text)
    if result.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if result.status not in ("ok", "memory_limit"):
        raise typer.Exit(1)


def _milliseconds(seconds: float | None) -> str:
    return "-" if seconds is None else f"{1000 * seconds:.0f} ms"


def register(app: typer.Typer) -> None:
    """Adds the ``probe`` command to the CLI."""
    app.command()(probe)
