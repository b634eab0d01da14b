"""The ``memfront`` command line: thin commands over the package's API (never imports torch or yolov5).

Each command turns a :class:`search.MemfrontError` into one line ``memfront: error: ...`` and exit 2.
"""

from __future__ import annotations

from search.cli._app import app, main

__all__ = ["app", "main"]
