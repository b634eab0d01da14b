"""Options more than one command takes, defined once."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["FrameworkOption"]

FrameworkOption = Annotated[
    str | None, typer.Option(help="yolov5 or ultralytics (default: the model's; else yolov5).")
]
"""``--framework``: :func:`search.frameworks.resolve_framework` decides with ``--model``."""
