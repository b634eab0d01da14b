"""One measured trial: its config and limits, the supervised child process, its record and cleanup."""

from __future__ import annotations

from typing import TYPE_CHECKING

from search._lazy import lazy_exports

if TYPE_CHECKING:
    from search.trial._config import TrialConfig, TrialLimits
    from search.trial._record import STATUSES, TrialRecord
    from search.trial._supervisor import TrialProgress, run_trial

__all__ = [
    "STATUSES",
    "TrialConfig",
    "TrialLimits",
    "TrialProgress",
    "TrialRecord",
    "run_trial",
]
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrialConfig": "search.trial._config",
        "TrialLimits": "search.trial._config",
        "STATUSES": "search.trial._record",
        "TrialRecord": "search.trial._record",
        "TrialProgress": "search.trial._supervisor",
        "run_trial": "search.trial._supervisor",
    },
)
