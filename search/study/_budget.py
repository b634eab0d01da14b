"""What is left of a study for a worker to start: its timeout and ``n_trials``, counted in trainings.

A trial cut by the study's timeout measures nothing, so no training starts that the timeout may cut.
The duration of a new accuracy config is unknown, and is counted at the slowest training so far (in
the demo a config at imgsz 160 took 1.3 times the median). Once even that would not end in the time
left, the study is in its *end game*: only a replicate of a config whose own trainings would end in
it (with :data:`END_GAME_MARGIN`) may still start, where a worker would otherwise sit idle for
minutes (the noise benchmark's studies stopped with 1-2 minutes of 9 unused).
"""

from __future__ import annotations

from search.accuracy._estimates import AccuracyKey, accuracy_key
from search.study._space import DEFAULT_ROLES, KnobRoles
from search.study._spec import StudySpec
from search.study._stored import StoredTrial

__all__ = [
    "END_GAME_MARGIN",
    "TOO_LITTLE_TIME",
    "end_game_seconds",
    "known_durations",
    "timeout_reason",
    "trainings_left",
]

TOO_LITTLE_TIME = "too little of the study's timeout left for another trial"
"""Why a worker stops before the study's timeout: nothing it could start would end in time."""

END_GAME_MARGIN = 1.15
"""A replicate in the end game must fit this many times its config's slowest training (its system
setting may be one the config was not measured with)."""


def _longest_training(trials: list[StoredTrial]) -> float | None:
    walls = [t.wall_seconds for t in trials if t.status == "ok" and t.wall_seconds is not None]
    return max(walls) if walls else None


def known_durations(trials: list[StoredTrial], roles: KnobRoles = DEFAULT_ROLES) -> dict[AccuracyKey, float]:
    """Each trained accuracy config's slowest training that ended (seconds, wall time)."""
    durations: dict[AccuracyKey, float] = {}
    for t in trials:
        if t.status == "ok" and t.wall_seconds is not None and t.config is not None:
            key = accuracy_key(t.config, roles)
            durations[key] = max(durations.get(key, 0.0), t.wall_seconds)
    return durations


def end_game_seconds(spec: StudySpec, *, elapsed: float, trials: list[StoredTrial]) -> float | None:
    """The seconds left when the study is in its end game (the slowest training so far would not
    end in them); None otherwise (no timeout, nothing trained, or time for any training)."""
    if spec.timeout is None:
        return None
    longest = _longest_training(trials)
    left = spec.timeout - elapsed
    return left if longest is not None and 0 < left < longest else None


def timeout_reason(
    spec: StudySpec, *, elapsed: float, trials: list[StoredTrial], roles: KnobRoles = DEFAULT_ROLES
) -> str | None:
    """Why this worker must not start another trial under the study's timeout (None: it may)."""
    if spec.timeout is None:
        return None
    if elapsed >= spec.timeout:
        return "study timeout reached"
    left = end_game_seconds(spec, elapsed=elapsed, trials=trials)
    if left is not None:
        durations = known_durations(trials, roles).values()
        if not durations or END_GAME_MARGIN * min(durations) > left:
            return TOO_LITTLE_TIME
    return None


def trainings_left(
    spec: StudySpec, *, elapsed: float, trials: list[StoredTrial], running: int, workers: int = 1
) -> int:
    """How many more trainings the study's workers can start, the next one included.

    The fewer of what ``n_trials`` leaves (every worker's trials counted, those running too) and of
    what the timeout leaves ``workers`` workers at the slowest training so far (the bound
    :func:`timeout_reason` stops at), so the estimate errs low: the end is seen coming early. In the
    end game (:func:`end_game_seconds`) the next one is the last.
    """
    left = spec.n_trials - sum(t.counts_toward_n_trials for t in trials) - running
    longest = _longest_training(trials)
    if spec.timeout is not None and longest:
        by_time = max(1, workers) * int((spec.timeout - elapsed) // longest)
        if by_time == 0 and end_game_seconds(spec, elapsed=elapsed, trials=trials) is not None:
            by_time = 1
        left = min(left, by_time)
    return max(left, 0)
