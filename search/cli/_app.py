"""The ``memfront`` command line. Parent side only: never imports torch or yolov5."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from search.cli._options import FrameworkOption, output_path
from search.errors import InputError, MemfrontError, RunNotKept
from search.study._storage import quiet_optuna
from search.trial._config import TrialConfig, TrialLimits, validation_message
from search.trial._record import TrialRecord
from search.units import format_bytes, format_seconds, parse_duration, parse_size

__all__ = ["app", "main"]

app = typer.Typer(
    name="memfront",
    help="Find the YOLO (yolov5, ultralytics) settings with the best accuracy for a given amount of memory.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = Console(stderr=True, soft_wrap=True)
RecordJsonOption = Annotated[
    Path | None,
    typer.Option("--json", callback=output_path, help="Write the full record here (- for stdout)."),
]
"""``--json`` of ``trial`` and ``train``: the trial's record, checked before it runs."""
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def fail(message: str) -> NoReturn:
    """Reports bad input as one line and exits with code 2."""
    raise InputError(message)


def size_option(value: str | None, flag: str) -> int | None:
    """Parses a size flag, naming the flag on error."""
    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as error:
        fail(f"{flag}: {error}")


def duration_option(value: str | None, flag: str) -> float | None:
    """Parses a duration flag, naming the flag on error."""
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        fail(f"{flag}: {error}")


@app.command("demo-data")
def demo_data(
    folder: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    images: Annotated[int, typer.Option(help="Training images.")] = 256,
    val_images: Annotated[int | None, typer.Option(help="Validation images (default: a quarter).")] = None,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 320,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Generate the deterministic synthetic shapes dataset."""
    from search.data._demo import make_demo_dataset

    if folder.exists() and not folder.is_dir():
        fail(f"{folder} is a file, not a folder")
    try:
        data_yaml = make_demo_dataset(folder, images=images, val_images=val_images, size=size, seed=seed)
    except ValueError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot write the dataset to {folder}: {error.strerror or error}")
    print(data_yaml)


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


@app.command()
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
    hyp: Annotated[
        str | None, typer.Option(help="Hyperparameter yaml (the framework's format), or demo.")
    ] = None,
    memory_limit: Annotated[str | None, typer.Option(help="Host memory limit, e.g. 6GiB.")] = None,
    gpu_memory_limit: Annotated[str | None, typer.Option(help="CUDA memory cap, e.g. 8GiB.")] = None,
    time_limit: Annotated[str | None, typer.Option(help="Wall-clock limit, e.g. 10m.")] = None,
    keep_cache: Annotated[bool, typer.Option(help="Keep the .npy files cache=disk writes.")] = False,
    json_path: RecordJsonOption = None,
) -> None:
    """Run one measured YOLO training trial in a child process."""
    if amp not in ("on", "off"):
        fail(f"--amp: expected on or off, got {amp!r}")
    try:
        config = TrialConfig(
            data=data,
            framework=framework,
            model=model,
            batch=batch,
            imgsz=imgsz,
            cache=cache,
            workers=workers,
            amp=amp == "on",
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


@app.command()
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
    hyp: Annotated[
        str | None, typer.Option(help="Hyperparameter yaml (the framework's format), or demo.")
    ] = None,
    plots: Annotated[
        str | None,
        typer.Option(help="on or off (default off, as the study measured: plots add memory of their own)."),
    ] = None,
    project: Annotated[Path, typer.Option(help="Where the run folder goes.")] = Path("runs/train"),
    name: Annotated[str, typer.Option(help="Run folder name.")] = "exp",
    memory_limit: Annotated[str | None, typer.Option(help="Host memory limit, e.g. 6GiB.")] = None,
    json_path: RecordJsonOption = None,
) -> None:
    """Run a full training with memfront's adaptations (what `export` prints)."""
    options: dict[str, Any] = {}
    loaded: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            fail(f"--config: file not found: {config}")
        try:
            loaded = yaml.safe_load(config.read_text())
        except yaml.YAMLError as error:
            fail(f"--config: not valid YAML: {str(error).splitlines()[0]}")
        if not isinstance(loaded, dict) or not all(isinstance(key, str) for key in loaded):
            fail(f"{config}: expected a mapping of train options (data, batch, imgsz, ...)")
        options.update(loaded)
    for flag, switch in (("--amp", amp), ("--plots", plots)):
        if switch is not None and switch not in ("on", "off"):
            fail(f"{flag}: expected on or off, got {switch!r}")
    flags = {
        "data": data,
        "framework": framework,
        "model": model,
        "epochs": epochs,
        "batch": batch,
        "imgsz": imgsz,
        "cache": cache,
        "workers": workers,
        "amp": None if amp is None else amp == "on",
        "device": device,
        "seed": seed,
        "hyp": hyp,
        "plots": None if plots is None else plots == "on",
    }
    options.update({k: v for k, v in flags.items() if v is not None})
    if "data" not in options:
        fail("give --config or --data")
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
    from search.trial._supervisor import run_trial

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


from search.cli import _export as export_cli  # noqa: E402 - register their commands on `app`
from search.cli import _predict as predict_cli  # noqa: E402 - register their commands on `app`
from search.cli import _probe as probe_cli  # noqa: E402 - register their commands on `app`
from search.cli import _results as study_cli  # noqa: E402 - register their commands on `app`
from search.cli import _run as run_cli  # noqa: E402 - register their commands on `app`

run_cli.register(app)
study_cli.register(app)
export_cli.register(app)
predict_cli.register(app)
probe_cli.register(app)


def _terminate(signum: int, frame: Any) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Runs the CLI; bad input is one line on stderr and exit code 2."""
    signal.signal(signal.SIGTERM, _terminate)
    # A process started in the background by a script inherits SIGINT ignored; memfront still stops
    # its trial cleanly on SIGINT (what --jobs forwards, and what a user's `kill -INT` means).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    command = typer.main.get_command(app)
    try:
        with quiet_optuna():  # the command prints its own lines
            result = command.main(args=argv, prog_name="memfront", standalone_mode=False)
    except MemfrontError as error:
        print(f"memfront: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as done:
        return done.exit_code
    except click.ClickException as error:
        # typer and click each suggest a near command name: say it once.
        message = re.sub(r" \(Did you mean one of: [^)]*\?\)$", "", error.format_message())
        print(f"memfront: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Abort:
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print("memfront: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of a pipe left (`memfront report ... | head`): nothing to say, and Python's
        # last flush of stdout must not fail again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except OSError as error:
        # A file or folder the system refused (full disk, permissions) after the checks: one line,
        # as for bad input, but not exit 2 (the input may have been right).
        print(f"memfront: error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        failed = _storage_failure(error)
        if failed is None:
            raise
        # The storage failed after it was opened (a server gone, a file another process locks):
        # every trial it holds was stored whole, and a run resumes from them.
        from search.study._storage import error_line

        print(
            f"memfront: error: the study's storage failed: {error_line(failed)}; "
            "what it stored is kept: run the command again",
            file=sys.stderr,
        )
        return 1
    return result if isinstance(result, int) else 0


def _storage_failure(error: BaseException) -> BaseException | None:
    """The database driver's error behind ``error`` (SQLAlchemy's, or Optuna's wrapper of one), or None."""
    # Only what raised it on purpose (``raise ... from``): a bug raised while a driver's error was
    # being handled keeps its traceback.
    seen: BaseException | None = error
    while seen is not None:
        if type(seen).__module__.startswith("sqlalchemy"):
            return seen
        seen = seen.__cause__
    return error if type(error).__name__ == "StorageInternalError" else None


def _processes(count: int | None) -> str:
    return "1 process" if count == 1 else f"{count} processes"
