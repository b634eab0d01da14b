"""What is left of a study for a worker to start: its timeout and ``n_trials``, counted in trainings."""

from __future__ import annotations

from search.study._spec import StudySpec
from search.study._stored import StoredTrial

__all__ = ["timeout_reason", "trainings_left"]


def _longest_training(trials: list[StoredTrial]) -> float | None:
    walls = [t.wall_seconds for t in trials if t.status == "ok" and t.wall_seconds is not None]
    return max(walls) if walls else None


def timeout_reason(spec: StudySpec, *, elapsed: float, trials: list[StoredTrial]) -> str | None:
    """Why this worker must not start another trial under the study's timeout (None: it may)."""
    if spec.timeout is None:
        return None
    if elapsed >= spec.timeout:
        return "study timeout reached"
    longest = _longest_training(trials)
    if longest is not None and spec.timeout - elapsed < longest:
        # A trial cut by the study's timeout measures nothing: do not start one that may not end (the
        # median was not enough: in the demo a config at imgsz 160 took 1.3 times the median).
        return "too little of the study's timeout left for another trial"
    return None


def trainings_left(
    spec: StudySpec, *, elapsed: float, trials: list[StoredTrial], running: int, workers: int = 1
) -> int:
    """How many more trainings the study's workers can start, the next one included.

    The fewer of what ``n_trials`` leaves (every worker's trials counted, those running too) and of
    what the timeout leaves ``workers`` workers at the slowest training so far (the bound
    :func:`timeout_reason` stops at), so the estimate errs low: the end is seen coming early.
    """
    left = spec.n_trials - sum(t.counts_toward_n_trials for t in trials) - running
    longest = _longest_training(trials)
    if spec.timeout is not None and longest:
        left = min(left, max(1, workers) * int((spec.timeout - elapsed) // longest))
    return max(left, 0)
