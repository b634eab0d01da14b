"""The training commands of the CLI: ``trial`` (one measured trial) and ``train`` (a full training
with memfront's adaptations, what ``export`` prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
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
    fail,
    output_path,
    size_option,
    switch_option,
)
from search.errors import RunNotKept
from search.trial._config import TrialConfig, TrialLimits, validation_message
from search.trial._record import TrialRecord
from search.units import format_bytes, format_seconds

__all__ = ["register"]

console = Console(stderr=True, soft_wrap=True)
RecordJsonOption = Annotated[
    Path | None,
    typer.Option("--json", callback=output_path, help="Write the full record here (- for stdout)."),
]
"""``--json`` of ``trial`` and ``train``: the trial's record, checked before it runs."""


def _print_trial(record: TrialRecord) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    colour = "green" if record.status == "ok" else "red"
    table.add_row("status", f"[{colour}]{record.status}[/]" + (f"  ({record.error})" if record.error else ""))
    table.add_row("mAP50", "-" if record.map50 is None else f"{record.map50:.4f}")
    table.add_row("mAP50-95", "-" if record.map50_95 is None else f"{record.map50_95:.4f}")
    memory = record.memory
    table.add_row(
        "peak host memory",
        f"{format_bytes(record.peak_host_bytes)}  (PSS of {_processes(memory.get('max_processes'))}; "
        f"read {format_bytes(memory.get('peak_host_lower_bytes'))}, bound "
        f"{format_bytes(memory.get('peak_host_upper_bytes'))}; RSS sum "
        f"{format_bytes(memory.get('peak_rss_tree_bytes'))}, "
        f"VmHWM {format_bytes(memory.get('vmhwm_bytes'))})",
    )
    gpu = "- (no CUDA)" if not record.gpu.get("cuda") else format_bytes(record.peak_gpu_bytes)
    table.add_row("peak GPU memory", gpu)
    table.add_row("seconds / epoch", format_seconds(record.epoch_seconds))
    used = record.used
    if used:
        asked = record.requested.get("workers")
        capped = f" (asked {asked})" if asked is not None and asked != used.get("workers") else ""
        table.add_row(
            "ran with",
            f"batch {used.get('batch')}, imgsz {used.get('imgsz')}, cache {used.get('cache')}, "
            f"workers {used.get('workers')}{capped}, amp {'on' if used.get('amp') else 'off'} "
            f"({used.get('amp_reason')}), {used.get('train_images')} train images",
        )
    framework = str(record.requested.get("framework") or "yolov5")
    version = (record.versions or {}).get(framework)
    table.add_row(
        "framework", f"{framework} {version or ''}, {record.requested.get('model')}".replace(" ,", ",")
    )
    table.add_row("wall time", format_seconds(record.wall_seconds))
    console.print(table)
    if record.status == "failed" and record.log_tail:
        console.print("[bold]last lines of the trial's log:[/]")
        for line in record.log_tail[-10:]:
            console.print("  " + line, markup=False, highlight=False)


def trial(
    data: Annotated[str, typer.Option(help="YOLO data yaml.")],
    model: Annotated[
        str | None,
        typer.Option(help="Model yaml (from scratch) or local .pt (fine-tune); default the framework's."),
    ] = None,
    framework: FrameworkOption = None,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 16,
    imgsz: Annotated[int, typer.Option(help="Image size (rounded up to a multiple of 32).")] = 640,
    cache: Annotated[str, typer.Option(help="Image cache: none, ram or disk.")] = "none",
    workers: Annotated[int, typer.Option(help="Dataloader workers.")] = 0,
    amp: Annotated[str, typer.Option(help="Mixed precision: on or off.")] = "off",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 1,
    device: Annotated[str, typer.Option(help="cpu, or a CUDA device such as 0.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    train_images: Annotated[int | None, typer.Option(help="Train on this many images only.")] = None,
    train_fraction: Annotated[float | None, typer.Option(help="Train on this fraction only.")] = None,
    hyp: HypOption = None,
    memory_limit: MemoryLimitOption = None,
    gpu_memory_limit: GpuMemoryLimitOption = None,
    time_limit: TimeLimitOption = None,
    keep_cache: Annotated[bool, typer.Option(help="Keep the .npy files cache=disk writes.")] = False,
    json_path: RecordJsonOption = None,
) -> None:
    """Run one measured YOLO training trial in a child process."""
    device_option(device)
    use_amp = switch_option(amp, "--amp")
    try:
        config = TrialConfig(
            data=data,
            framework=framework,
            model=model,
            batch=batch,
            imgsz=imgsz,
            cache=cache,
            workers=workers,
            amp=use_amp,
            epochs=epochs,
            device=device,
            seed=seed,
            train_images=train_images,
            train_fraction=train_fraction,
            hyp=hyp,
        )
    except ValidationError as error:
        fail(f"--{validation_message(error).replace('_', '-')}")
    limits = TrialLimits(
        memory_limit_bytes=size_option(memory_limit, "--memory-limit"),
        gpu_memory_limit_bytes=size_option(gpu_memory_limit, "--gpu-memory-limit"),
        time_limit_s=duration_option(time_limit, "--time-limit"),
    )
    record = _run_with_bar(config, limits, keep_cache=keep_cache)
    _print_trial(record)
    if json_path is not None:
        record.write_json(json_path)
    if record.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)


def train(
    config: Annotated[
        Path | None, typer.Option(help="Train options from `memfront export --format yaml`.")
    ] = None,
    data: Annotated[str | None, typer.Option(help="YOLO data yaml.")] = None,
    model: Annotated[str | None, typer.Option(help="Model yaml or local .pt.")] = None,
    framework: FrameworkOption = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    imgsz: Annotated[int | None, typer.Option(help="Image size.")] = None,
    cache: Annotated[str | None, typer.Option(help="none, ram or disk.")] = None,
    workers: Annotated[int | None, typer.Option(help="Dataloader workers.")] = None,
    amp: Annotated[str | None, typer.Option(help="on or off.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or a CUDA device.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    hyp: HypOption = None,
    plots: Annotated[
        str | None,
        typer.Option(help="on or off (default off, as the study measured: plots add memory of their own)."),
    ] = None,
    project: Annotated[Path, typer.Option(help="Where the run folder goes.")] = Path("runs/train"),
    name: Annotated[str, typer.Option(help="Run folder name.")] = "exp",
    memory_limit: MemoryLimitOption = None,
    json_path: RecordJsonOption = None,
) -> None:
    """Run a full training with memfront's adaptations (what `export` prints)."""
    device_option(device)
    options: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    if config is not None:
        if config.is_dir():
            fail(f"--config: {config} is a folder, not a file")
        if not config.is_file():
            fail(f"--config: file not found: {config}")
        try:
            loaded = yaml.safe_load(config.read_text())
        except yaml.YAMLError as error:
            fail(f"--config: not valid YAML: {str(error).splitlines()[0]}")
        if not isinstance(loaded, dict) or not all(isinstance(key, str) for key in loaded):
            fail(f"{config}: expected a mapping of train options (data, batch, imgsz, ...)")
        options.update(loaded)
    use_amp, use_plots = switch_option(amp, "--amp"), switch_option(plots, "--plots")
    flags = {
        "data": data,
        "framework": framework,
        "model": model,
        "epochs": epochs,
        "batch": batch,
        "imgsz": imgsz,
        "cache": cache,
        "workers": workers,
        "amp": use_amp,
        "device": device,
        "seed": seed,
        "hyp": hyp,
        "plots": use_plots,
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    if "data" not in options:
        fail(
            "give --config or --data" if config is None else f"{config}: no data: give data: in it, or --data"
        )
    try:
        trial_config = TrialConfig(**options)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        message = f"{field}: unknown key" if first["type"] == "extra_forbidden" else validation_message(error)
        if config is not None and field in loaded and flags.get(field) is None:
            fail(f"{config}: {message}")  # the file said it, not a flag
        fail(f"--{message.replace('_', '-')}")
    limits = TrialLimits(memory_limit_bytes=size_option(memory_limit, "--memory-limit"))
    from search.data._dataset import load_dataset

    load_dataset(trial_config.data)  # a data yaml that cannot be read leaves no run folder behind
    destination = _new_run_folder(project, name)
    not_kept = None
    try:
        record = _run_with_bar(trial_config, limits, keep_run=destination)
    except RunNotKept as error:
        record, not_kept = error.record, error
    finally:
        if destination.is_dir() and not any(destination.iterdir()):
            destination.rmdir()  # reserved for a run that left nothing
    _print_trial(record)
    if not_kept is not None:
        console.print(f"memfront: error: {not_kept}")
    elif record.status == "ok":
        console.print(f"weights and results in {destination}")
    if json_path is not None:
        record.write_json(json_path)
    if record.status == "interrupted":
        raise typer.Exit(EXIT_INTERRUPTED)
    if record.status != "ok" or not_kept is not None:
        raise typer.Exit(1)


def _new_run_folder(project: Path, name: str) -> Path:
    """``project/name``, else ``name2``, ``name3``, ... (yolov5's and ultralytics' own rule: a
    second training never mixes its weights into the first's), made before the training starts."""
    try:
        project.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"--project: cannot create {project}: {error.strerror or error}")
    number = 1
    while True:
        destination = project / (name if number == 1 else f"{name}{number}")
        try:
            destination.mkdir()  # reserved now: two trainings started together never share one
            return destination
        except FileExistsError:
            number += 1
        except OSError as error:
            fail(f"--project: cannot create {destination}: {error.strerror or error}")


def _run_with_bar(config: TrialConfig, limits: TrialLimits, **options: Any) -> TrialRecord:
    from search.data._dataset import load_dataset
    from search.trial._supervisor import run_trial

    load_dataset(config.data)  # a data yaml that cannot be read says so before a bar is drawn

    with Progress(
        TextColumn("[bold]training[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        refresh_per_second=2,  # a trial shares the CPU with this display
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=config.epochs)

        def show(progress: Any) -> None:
            bar.update(
                task,
                completed=progress.epoch or 0,
                description=f"epoch {progress.epoch or 0}/{progress.epochs}  "
                f"host {format_bytes(progress.host_bytes)}",
            )

        return run_trial(config, limits=limits, on_progress=show, **options)


def _processes(count: int | None) -> str:
    return "1 process" if count == 1 else f"{count} processes"


def register(app: typer.Typer) -> None:
    """Adds the training commands to the CLI."""
    app.command()(trial)
    app.command()(train)
