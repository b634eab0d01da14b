"""memfront: the most accurate YOLOv5 training settings for a given amount of memory.

The parent side (this package's public surface) never imports torch or yolov5; only the trial's
child process (:mod:`search.trainer`) does.
"""

from __future__ import annotations

from search.config import TrialConfig, TrialLimits
from search.errors import InputError
from search.memory import MemoryReport, TreeSampler
from search.record import TrialRecord
from search.supervisor import TrialProgress, run_trial

__all__ = [
    "InputError",
    "MemoryReport",
    "TreeSampler",
    "TrialConfig",
    "TrialLimits",
    "TrialProgress",
    "TrialRecord",
    "run_trial",
]
__version__ = "0.1.0"
