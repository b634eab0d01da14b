"""memfront's one exception hierarchy: what it reports to the user as one line.

The CLI turns a :class:`MemfrontError` into ``memfront: error: ...`` and exit code 2; a notebook
catches the same classes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["InputError", "MemfrontError", "RunNotKept", "StorageError", "TrialError"]


class MemfrontError(Exception):
    """Base of every error memfront raises on purpose (never a bug): one clear line."""


class InputError(MemfrontError, ValueError):
    """Bad input from the user (a study file, a flag, a dataset, a model): nothing was stored."""


class StorageError(InputError):
    """The study's storage cannot be reached, opened or read (wrong URL, server, credentials)."""


class TrialError(MemfrontError):
    """A trial or probe could not be started or measured (a broken installation, a probe that hangs)."""


class RunNotKept(TrialError):
    """A training ended, but its run folder could not be copied where it was asked to go.

    Attributes:
        record: The training's record (a :class:`search.trial.TrialRecord`).
    """

    def __init__(self, message: str, *, record: Any) -> None:
        super().__init__(message)
        self.record = record
