"""memfront: the most accurate YOLOv5 training settings for a given amount of memory.

In a notebook::

    import search
    search.run_study("studies/demo.yaml")          # what `memfront run` does
    results = search.load_study("studies/demo.yaml")
    results.front(); results.show(); results.best(max_memory="4GiB")

The parent side (this package's public surface) never imports torch or yolov5; only the trial's
child process (:mod:`search.trainer`) does. The names below are imported on first use: the child
is a module of this package too, and what it imports is counted in every trial's memory.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from search.api import StudyResults, load_study, run_study
    from search.config import TrialConfig, TrialLimits
    from search.errors import InputError, MemfrontError, StorageError, TrialError
    from search.memory import MemoryReport, TreeSampler
    from search.notebook import WithImage
    from search.record import TrialRecord
    from search.supervisor import TrialProgress, run_trial

_PUBLIC = {
    "StudyResults": "search.api",
    "load_study": "search.api",
    "run_study": "search.api",
    "TrialConfig": "search.config",
    "TrialLimits": "search.config",
    "InputError": "search.errors",
    "MemfrontError": "search.errors",
    "StorageError": "search.errors",
    "TrialError": "search.errors",
    "MemoryReport": "search.memory",
    "TreeSampler": "search.memory",
    "WithImage": "search.notebook",
    "TrialRecord": "search.record",
    "TrialProgress": "search.supervisor",
    "run_trial": "search.supervisor",
}
__all__ = [
    "InputError",
    "MemfrontError",
    "MemoryReport",
    "StorageError",
    "StudyResults",
    "TreeSampler",
    "TrialConfig",
    "TrialError",
    "TrialLimits",
    "TrialProgress",
    "TrialRecord",
    "WithImage",
    "load_study",
    "run_study",
    "run_trial",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'search' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
