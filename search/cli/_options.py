"""What more than one command shares, defined once: options, their parsing, exit codes."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn, overload

import typer

from search.errors import InputError
from search.units import parse_duration, parse_size

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "FrameworkOption",
    "GpuMemoryLimitOption",
    "HypOption",
    "MemoryLimitOption",
    "TimeLimitOption",
    "duration_option",
    "fail",
    "output_path",
    "size_option",
    "spare_the_study",
    "switch_option",
]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # as a shell reports a process ended by SIGINT

FrameworkOption = Annotated[
    str | None, typer.Option(help="yolov5 or ultralytics (default: the model's; else yolov5).")
]
"""``--framework``: :func:`search.frameworks.resolve_framework` decides with ``--model``."""
HypOption = Annotated[str | None, typer.Option(help="Hyperparameter yaml (the framework's format), or demo.")]
"""``--hyp``: :func:`search.trial._config.resolve_hyp` reads it (``demo``: memfront's own)."""
MemoryLimitOption = Annotated[str | None, typer.Option(help="Host memory limit, e.g. 6GiB.")]
"""``--memory-limit``: parsed with :func:`size_option`."""
GpuMemoryLimitOption = Annotated[str | None, typer.Option(help="CUDA memory cap, e.g. 8GiB.")]
"""``--gpu-memory-limit``: parsed with :func:`size_option`."""
TimeLimitOption = Annotated[str | None, typer.Option(help="Wall-clock limit, e.g. 10m.")]
"""``--time-limit``: parsed with :func:`duration_option`."""


def fail(message: str) -> NoReturn:
    """Reports bad input as one line and exits with code 2."""
    raise InputError(message)


def device_option(value: str | None) -> None:
    """Refuses a ``--device`` that is malformed or names a CUDA device this machine lacks, before
    anything starts (a trial would fail on it only after its imports)."""
    if value is None or value == "cpu":
        return
    from search.measure._footprint import check_device

    check_device(value)


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


@overload
def switch_option(value: str, flag: str) -> bool: ...
@overload
def switch_option(value: None, flag: str) -> None: ...
def switch_option(value: str | None, flag: str) -> bool | None:
    """Parses an on/off flag (``--amp``, ``--plots``), naming the flag on error."""
    if value is None:
        return None
    if value not in ("on", "off"):
        fail(f"{flag}: expected on or off, got {value!r}")
    return value == "on"


def output_path(value: Path | None) -> Path | None:
    """Checks a file option (``--json``, ``--csv``, ``-o``) before any work: a training or a study's
    reading must not end in an error about where its result goes (``-``: stdout)."""
    if value is None or str(value) == "-":
        return value
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; name a file in it")
    folder = value.parent
    if folder.exists() and not folder.is_dir():
        raise typer.BadParameter(f"{folder} is a file, not a folder")
    if not folder.is_dir():
        raise typer.BadParameter(f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (value.exists() and not os.access(value, os.W_OK)):
        raise typer.BadParameter(f"{value} cannot be written (permission denied)")
    return value


def spare_the_study(study_file: Path, storage: str | None, *outputs: Path | None) -> None:
    """Refuses an output file that is the study file, its storage file or one of its trial records:
    writing a table or a command there would destroy what the study stored.

    Raises:
        InputError: For such an output (checked before anything is read or written).
    """
    from search.study._prepare import record_files, storage_url
    from search.study._spec import load_study_spec
    from search.study._storage import storage_file

    files = [output for output in outputs if output is not None and str(output) != "-"]
    if not files:
        return  # nothing is written to a file: no study file to read for it
    spec = load_study_spec(study_file)
    stored = storage_file(storage_url(spec, study_file, storage))
    records = record_files(spec, study_file).folder.resolve()
    kept = {study_file.resolve(), *([] if stored is None else [stored.resolve()])}
    for output in files:
        target = output.resolve()
        if target in kept or target.parent == records:
            raise InputError(
                f"{output} is one of this study's own files (its study file, storage or records): "
                "writing there would destroy them; name another"
            )
