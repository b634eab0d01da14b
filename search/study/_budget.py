"""What is left of a study for a worker to start: its timeout and ``n_trials``, counted in trainings.

A trial cut by the study's timeout measures nothing, so no training starts that the timeout may cut.
The sampler picks the next config, so the next training is counted at what any training it may
propose could take: the slowest training so far, or an accuracy config not trained yet, counted at
its bound from the trainings so far (:func:`duration_bounds`: their epochs scaled by what the
config costs more, their start-up and wind-down as they were), whichever is longer. (Counted at
the slowest training alone, the demo's last new config, batch 8 at imgsz 160, was started with 82 s
left, needed ~95 s and was cut at its last epoch.) Once that, with :data:`END_GAME_MARGIN`, would
not end in the time left, the study is in its *end game*: only a config whose training is known or
bounded to end in it (with the margin) may still start, a replicate first, else a new config the
planner names (not the sampler), where a worker would otherwise sit idle for minutes (the noise
benchmark's studies stopped with 1-2 minutes of 9 unused).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from search.accuracy._trainings import AccuracyKey, accuracy_key
from search.study._space import DEFAULT_ROLES, KnobRoles, leanest_system
from search.study._spec import StudySpec
from search.study._stored import StoredTrial

__all__ = [
    "END_GAME_MARGIN",
    "TOO_LITTLE_TIME",
    "duration_bounds",
    "end_game_seconds",
    "known_durations",
    "retry_below_s",
    "timeout_reason",
    "trainings_left",
]

TOO_LITTLE_TIME = "too little of the study's timeout left for another trial"
"""Why a worker stops before the study's timeout: nothing it could start would end in time."""

END_GAME_MARGIN = 1.15
"""A training in the end game must fit this many times its config's slowest training or bound (a
replicate's system setting may be one the config was not measured with)."""


def retry_below_s(spec: StudySpec) -> float | None:
    """A training cut by a time limit below this trains again (:meth:`StoredTrial.cut_short`): the
    study file now allows :data:`END_GAME_MARGIN` times that limit or more (the least of
    ``trial_time_limit`` and ``timeout``, each run having its whole ``timeout``). None: the file
    sets no limit, and any cut training trains again. A training cut nearer than that to what is
    allowed would need more than a run can give it (the end game starts nothing that long)."""
    allowed = spec.time_allowed_s
    # A hair above the quotient: 15% more is "15% or more" whatever the floats round to.
    return None if allowed is None else allowed / END_GAME_MARGIN * (1 + 1e-9)


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


def _scale(knob: str, new: Any, measured: Any) -> float | None:
    """How many times longer a training with ``new`` may take than one with ``measured``, at most
    (None: no bound). An epoch's work grows at most with the pixels per image (imgsz squared) and
    with the steps per epoch (the batch's inverse; a step's cost does not fall with its batch); AMP
    on is not slower than off; any other knob bounds nothing unless equal."""
    if new == measured:
        return 1.0
    if knob == "imgsz":
        return max(1.0, (float(new) / float(measured)) ** 2)
    if knob == "batch":
        return max(1.0, float(measured) / float(new))
    if knob == "amp" and bool(new) and not bool(measured):
        return 1.0
    return None


def _bound(
    key: Sequence[Any], system: Mapping[str, Any], trials: list[StoredTrial], roles: KnobRoles
) -> float | None:
    """The tightest upper bound on a training of accuracy config ``key`` at ``system`` (the setting a
    new config trains with): each training at that setting that ended, its epochs scaled by
    :func:`_scale` on every accuracy knob and the rest of its wall time (start-up, wind-down) as it
    was, the least of them (None: none bounds it). Trainings at other settings bound nothing:
    workers can make a training several times faster on a many-core machine."""
    bounds = []
    for t in trials:
        if t.status != "ok" or t.wall_seconds is None or t.config is None:
            continue
        if any(t.config[k] != v for k, v in system.items()):
            continue
        factor = 1.0
        for knob, value in zip(roles.accuracy, key, strict=True):
            scale = _scale(knob, value, t.config[knob])
            if scale is None:
                break
            factor *= scale
        else:
            # Start-up and wind-down do not grow with the pixels or the steps (the demo's 8/96, 8/160
            # and 16/96: 12, 10 and 9 s of 44-86 s), so only the epochs are scaled; a record without
            # its epochs scales the whole wall time.
            epochs = t.epochs_seconds
            fixed = t.wall_seconds - epochs if epochs is not None and epochs <= t.wall_seconds else 0.0
            bounds.append(fixed + (t.wall_seconds - fixed) * factor)
    return min(bounds) if bounds else None


def duration_bounds(
    trials: list[StoredTrial],
    choices: Mapping[str, Sequence[Any]],
    roles: KnobRoles = DEFAULT_ROLES,
    *,
    retried: Sequence[StoredTrial] = (),
) -> dict[AccuracyKey, float]:
    """How long a training of each accuracy config of the space may take (seconds, wall time): a
    trained config's slowest training (:func:`known_durations`), another's bound from the trainings
    so far at the leanest setting, where a new config trains (:func:`_bound`), or the slowest
    training so far where none bounds it. ``choices``: per knob, the values the sampler draws from.
    ``retried``: trainings cut by a time limit whose configs may train again
    (:meth:`StoredTrial.cut_short`): each such config at least the time its training ran (a config
    cut for good is not, since it never trains again, and would only start the end game early).
    Empty until a training has ended."""
    bounds = known_durations(trials, roles)
    longest = _longest_training(trials)
    if longest is not None:
        system = leanest_system(choices, roles)
        for values in itertools.product(*(choices[k] for k in roles.accuracy)):
            key = tuple(values)
            if key not in bounds:
                bounds[key] = _bound(key, system, trials, roles) or longest
    for t in retried:
        if t.wall_seconds is not None and t.config is not None:
            key = accuracy_key(t.config, roles)
            bounds[key] = max(bounds.get(key, 0.0), t.wall_seconds)
    return bounds


def end_game_seconds(
    spec: StudySpec,
    *,
    elapsed: float,
    trials: list[StoredTrial],
    durations: Mapping[AccuracyKey, float] | None = None,
) -> float | None:
    """The seconds left when the study is in its end game: the longest of ``durations``
    (:func:`duration_bounds`: the slowest training so far, or a config not trained yet that the
    sampler may propose) would not end in them with :data:`END_GAME_MARGIN`; without
    ``durations``, the slowest training so far. None otherwise (no timeout, nothing trained, or time
    for any training)."""
    if spec.timeout is None:
        return None
    longest = max(durations.values()) if durations else _longest_training(trials)
    left = spec.timeout - elapsed
    # The margin here too, not only in the end game: the slowest training so far is no bound on the
    # next one of its config (a tiny training is mostly start-up, whose time varies by seconds), and
    # one started with just its duration left was cut once in CI.
    return left if longest is not None and 0 < left < END_GAME_MARGIN * longest else None


def timeout_reason(
    spec: StudySpec,
    *,
    elapsed: float,
    trials: list[StoredTrial],
    roles: KnobRoles = DEFAULT_ROLES,
    durations: Mapping[AccuracyKey, float] | None = None,
) -> str | None:
    """Why this worker must not start another trial under the study's timeout (None: it may).

    ``durations``: each accuracy config's training time at most (:func:`duration_bounds`); without
    it, only the trained configs' (:func:`known_durations`)."""
    if spec.timeout is None:
        return None
    if elapsed >= spec.timeout:
        return "study timeout reached"
    durations = durations if durations is not None else known_durations(trials, roles)
    left = end_game_seconds(spec, elapsed=elapsed, trials=trials, durations=durations)
    if left is not None and (not durations or END_GAME_MARGIN * min(durations.values()) > left):
        return TOO_LITTLE_TIME
    return None


def trainings_left(
    spec: StudySpec, *, elapsed: float, trials: list[StoredTrial], running: int, workers: int = 1
) -> int:
    """How many more trainings the study's workers can start, the next one included.

    The fewer of what ``n_trials`` leaves (every worker's trials counted, those running too) and of
    what the timeout leaves ``workers`` workers at the slowest training so far with
    :data:`END_GAME_MARGIN` (the bound :func:`timeout_reason` stops at), so the estimate errs low:
    the end is seen coming early. In the
    end game (:func:`end_game_seconds`) the next one is the last.
    """
    left = spec.n_trials - sum(t.counts_toward_n_trials for t in trials) - running
    longest = _longest_training(trials)
    if spec.timeout is not None and longest:
        by_time = max(1, workers) * int((spec.timeout - elapsed) // (END_GAME_MARGIN * longest))
        if by_time == 0 and end_game_seconds(spec, elapsed=elapsed, trials=trials) is not None:
            by_time = 1
        left = min(left, by_time)
    return max(left, 0)
