"""memfront: the most accurate YOLO training settings (yolov5, ultralytics) for a given amount of memory.

In a notebook::

    import search
    search.run_study("studies/demo.yaml")          # what `memfront run` does
    results = search.load_study("studies/demo.yaml")
    results.front(); results.show(); results.best(max_memory="4GiB")

The parent side (this package's public surface) never imports torch or a YOLO package; only the trial's
child process (:mod:`search.child.trainer`) does. The names below are imported on first use: the child
is a module of this package too, and what it imports is counted in every trial's memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.errors import InputError, MemfrontError, RunNotKept, StorageError, TrialError
    from search.measure._memory import MemoryReport, TreeSampler
    from search.results._load import load_study
    from search.results._notebook import WithImage
    from search.results._results import StudyResults
    from search.study._run import run_study
    from search.trial._config import TrialConfig, TrialLimits
    from search.trial._record import TrialRecord
    from search.trial._supervisor import TrialProgress, run_trial
    from search.units import format_bytes, parse_size

_PUBLIC = {
    "StudyResults": "search.results._results",
    "load_study": "search.results._load",
    "run_study": "search.study._run",
    "TrialConfig": "search.trial._config",
    "TrialLimits": "search.trial._config",
    "InputError": "search.errors",
    "MemfrontError": "search.errors",
    "RunNotKept": "search.errors",
    "StorageError": "search.errors",
    "TrialError": "search.errors",
    "MemoryReport": "search.measure._memory",
    "TreeSampler": "search.measure._memory",
    "WithImage": "search.results._notebook",
    "TrialRecord": "search.trial._record",
    "TrialProgress": "search.trial._supervisor",
    "run_trial": "search.trial._supervisor",
    "parse_size": "search.units",
    "format_bytes": "search.units",
}
__all__ = [
    "InputError",
    "MemfrontError",
    "MemoryReport",
    "RunNotKept",
    "StorageError",
    "StudyResults",
    "TreeSampler",
    "TrialConfig",
    "TrialError",
    "TrialLimits",
    "TrialProgress",
    "TrialRecord",
    "WithImage",
    "format_bytes",
    "load_study",
    "parse_size",
    "run_study",
    "run_trial",
]
__version__ = "0.1.0"


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC)
