"""memfront: the most accurate YOLOv5 training settings for a given amount of memory.

In a notebook::

    import search
    search.run_study("studies/demo.yaml")          # what `memfront run` does
    results = search.load_study("studies/demo.yaml")
    results.front(); results.figure(); results.best(max_memory="4GiB")

The parent side (this package's public surface) never imports torch or yolov5; only the trial's
child process (:mod:`search.trainer`) does.
"""

from __future__ import annotations

from search.api import StudyResults, load_study, run_study
from search.config import TrialConfig, TrialLimits
from search.errors import InputError, MemfrontError, StorageError, TrialError
from search.memory import MemoryReport, TreeSampler
from search.notebook import WithImage
from search.record import TrialRecord
from search.supervisor import TrialProgress, run_trial

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
