"""Errors that memfront reports to the user as one line."""

from __future__ import annotations

__all__ = ["InputError"]


class InputError(ValueError):
    """Bad input from the user: reported as one clear line, exit code 2, no traceback."""
