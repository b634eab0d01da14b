"""Options more than one command takes, defined once."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["FrameworkOption", "output_path"]

FrameworkOption = Annotated[
    str | None, typer.Option(help="yolov5 or ultralytics (default: the model's; else yolov5).")
]
"""``--framework``: :func:`search.frameworks.resolve_framework` decides with ``--model``."""


def output_path(value: Path | None) -> Path | None:
    """Checks a file option (``--json``, ``--csv``, ``-o``) before any work: a training or a study's
    reading must not end in an error about where its result goes (``-``: stdout)."""
    if value is None or str(value) == "-":
        return value
    if value.is_dir():
        raise typer.BadParameter(f"{value} is a folder; name a file in it")
    folder = value.parent
    if not folder.is_dir():
        raise typer.BadParameter(f"folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (value.exists() and not os.access(value, os.W_OK)):
        raise typer.BadParameter(f"{value} cannot be written (permission denied)")
    return value
