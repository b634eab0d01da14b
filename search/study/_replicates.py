"""What a study trains next: a new accuracy config, or a replicate of one whose rank is still open.

How trainings map onto Optuna trials: every training is one Optuna trial (one process, one record,
its five knobs as parameters, its own seed as the user attribute ``seed``), and ``n_trials`` counts
trainings, replicates included. The sampler proposes the accuracy knobs of new configs; memfront
decides the rest:

* **Replicates** (the same accuracy knobs, a new seed) go where they can change the answer. While
  the noise is not known (fewer degrees of freedom than ``accuracy_min_df``), any config below
  ``max_replicates``, fewest replicates first and the best mean among those (so the first is the
  best config's); then the front's configs whose accuracy is not distinguishable from a front
  neighbour's, fewest replicates first, up to ``max_replicates``. A config beaten beyond noise is
  never trained again. While new configs remain, at most one training in two is a replicate until
  the noise is known (the first as soon as two configs are measured), one in three after.
* **The last trainings** (as many as fit in what is left of ``n_trials`` or of the study's timeout)
  go to the configs export would pick at some budget (:func:`search.accuracy.export_decisions`)
  that were trained only once, the study-wide pick first: a pick on one training is a pick on one
  draw of the noise, and a new config found at the very end could not be confirmed anyway.
* **The end game** of a timed study (:mod:`search.study._budget`): when a training the sampler may
  propose (the slowest so far, or a config not trained yet at its bound) would not end in the time
  left, only a replicate whose config's own trainings would end in it starts, at a system setting
  that config trained with, else a new config this module names whose bound would end in it.
* **The first new config** is the space's leanest accuracy config (the smallest batch and image
  size, AMP on where searched), at the leanest system setting: no config needs less memory, so it
  is on the front whatever its accuracy, and it answers the smallest budget. It is known before any
  training, and the cheapest to train; the sampler proposes the others. (Not with the grid sampler,
  which keeps its own order.)
* **System knobs** (cache, workers) cannot change accuracy in expectation, so they are not searched
  for it: a new config trains at the leanest setting (cache none, fewest workers: its front point is
  where it needs least memory), and each replicate at the setting its config was measured with least
  (never one where it went over the limit), so that what the other settings cost and buy in speed
  is learned on the configs that matter, without a training spent on re-measuring accuracy.
* A proposal of the sampler that repeats a measured accuracy config becomes that config's next
  replicate when it is a candidate for one (before the noise is known, any config below
  ``max_replicates`` is: every replicate adds a degree of freedom), and is told the earlier result
  otherwise.

The decisions are pure functions of the study's trials (:func:`plan_next`, and
:func:`search.study._trainings.judge_proposal` for the sampler's proposals),
tested on synthetic studies.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from search.accuracy._estimates import AccuracyEstimates
from search.accuracy._front import noise_front
from search.accuracy._pick import export_decisions
from search.accuracy._trainings import AccuracyKey, accuracy_key, system_key
from search.study._budget import END_GAME_MARGIN
from search.study._space import DEFAULT_ROLES, KnobRoles, leanest_accuracy, leanest_system

__all__ = [
    "Plan",
    "Running",
    "next_seed",
    "plan_next",
    "replicate_candidates",
]

DEFAULT_MAX_REPLICATES = 3


@dataclasses.dataclass(frozen=True)
class Running:
    """A training counted so far or in progress (any worker's): its knobs, seed, and whether it fitted.

    Attributes:
        config: The five knobs.
        seed: Its seed (None: a legacy trial without one).
        feasible: True within the limit, False over it (or failed, timed out, skipped by pre-flight),
            None while in progress.
    """

    config: dict[str, Any]
    seed: int | None
    feasible: bool | None = None


@dataclasses.dataclass(frozen=True)
class Plan:
    """The next training.

    Attributes:
        fixed: Knob values decided before the sampler is asked (to enqueue): the system setting, and
            for a replicate its accuracy knobs too.
        seed: A replicate's seed; None for a new config (the study's seed, once its knobs are known).
        reason: Why, for the progress log.
    """

    fixed: dict[str, Any]
    seed: int | None
    reason: str

    @property
    def replicate(self) -> bool:
        """Whether this plan trains a measured accuracy config again."""
        return self.seed is not None


def replicate_candidates(estimates: AccuracyEstimates, *, max_replicates: int) -> list[AccuracyKey]:
    """The accuracy configs whose next replicate can change the answer, most useful first."""
    configs = estimates.configs
    if not configs:
        return []
    if not estimates.noise.known:
        if estimates.noise.measured and len(configs) < 2:
            return []  # one config: more degrees of freedom have nothing to rank
        # Any replicate adds a degree of freedom; the best config's first, since its rank matters most.
        # Not a config that scored 0 at two seeds already: a third adds nothing to the noise.
        below = [
            c for c in configs.values()
            if c.replicates < max_replicates and not (c.replicates >= 2 and c.at_range_bound)
        ]  # fmt: skip
        return [c.key for c in sorted(below, key=lambda c: (c.replicates, -c.mean))]
    front = [p.estimate.key for p in noise_front(estimates)]
    open_keys = []
    for index, key in enumerate(front):
        neighbours = front[max(0, index - 1) : index] + front[index + 1 : index + 2]
        if any(not estimates.distinguishable(key, other) for other in neighbours):
            open_keys.append(key)
    wanted = [k for k in open_keys if configs[k].replicates < max_replicates]
    return sorted(wanted, key=lambda k: (configs[k].replicates, -configs[k].mean))


def next_seed(
    key: AccuracyKey, attempts: Iterable[Running], *, first: int, roles: KnobRoles = DEFAULT_ROLES
) -> int:
    """The lowest seed from ``first`` that no training of accuracy config ``key`` used or uses."""
    used = {r.seed for r in attempts if r.seed is not None and accuracy_key(r.config, roles) == key}
    return next(s for s in itertools.count(first) if s not in used)


def _system_for(
    systems: list[dict[str, Any]],
    attempts: list[Running],
    key: AccuracyKey,
    roles: KnobRoles,
    *,
    end_game: bool,
) -> dict[str, Any] | None:
    """A replicate's system setting: the least measured (:func:`_least_measured_system`); in the end
    game, one its config trained with (within the time that config is known to take: another setting
    may be slower, by 26% with workers on 2 cores)."""
    if end_game:
        measured = [r.config for r in attempts if r.feasible and accuracy_key(r.config, roles) == key]
        return {k: measured[0][k] for k in roles.system} if measured else None
    return _least_measured_system(systems, attempts, key, roles)


def _least_measured_system(
    systems: list[dict[str, Any]], attempts: list[Running], key: AccuracyKey | None, roles: KnobRoles
) -> dict[str, Any] | None:
    """The system setting with the fewest trainings (for ``key``'s config first, then overall).

    For a config's replicate, a setting where that config went over the limit (or failed) is never
    taken again; None when no setting is left.
    """

    def mine(r: Running) -> bool:
        return key is not None and accuracy_key(r.config, roles) == key

    overall = Counter(system_key(r.config, roles) for r in attempts)
    own = Counter(system_key(r.config, roles) for r in attempts if mine(r))
    refused = {system_key(r.config, roles) for r in attempts if mine(r) and r.feasible is False}
    ranked = sorted(
        (s for s in systems if system_key(s, roles) not in refused),
        key=lambda s: (own[system_key(s, roles)], overall[system_key(s, roles)]),
    )
    return ranked[0] if ranked else None


def plan_next(
    estimates: AccuracyEstimates,
    attempts: list[Running],
    *,
    choices: Mapping[str, list[Any]],
    first_seed: int,
    max_replicates: int = DEFAULT_MAX_REPLICATES,
    fix_system: bool = True,
    explore_directly: bool = False,
    trainings_left: int | None = None,
    end_game_s: float | None = None,
    durations: Mapping[AccuracyKey, float] | None = None,
) -> Plan | None:
    """What to train next; None when nothing left can change the answer (or, in the end game,
    nothing left would end in time).

    Args:
        estimates: The study's accuracy estimates (feasible trainings).
        attempts: Every training counted so far (any status) and every one in progress.
        choices: Per knob, the values the sampler draws from (one value: not searched).
        first_seed: The study's seed (a new config's first training uses it).
        max_replicates: The most replicates of one accuracy config.
        fix_system: Choose the system setting of a new config (the grid sampler chooses its own).
        explore_directly: The sampler keeps repeating measured configs: plan a config not started
            yet with all its knobs, instead of asking the sampler for one.
        trainings_left: How many more trainings, this one included, the study's workers can still
            start (None: no end in sight); the last ones confirm export's picks.
        end_game_s: The seconds left when a training the sampler may propose would not end in them
            (:func:`search.study._budget.end_game_seconds`): only a config whose ``durations``
            entry would end in them is planned, a replicate first, else a new config named here.
        durations: Each accuracy config's slowest training, or for one not trained its bound
            (seconds; :func:`search.study._budget.duration_bounds`), for the end game.
    """
    roles = estimates.roles
    systems = [
        dict(zip(roles.system, values, strict=True))
        for values in itertools.product(*(choices[k] for k in roles.system))
    ]
    leanest = system_key(leanest_system(choices, roles), roles)
    systems.sort(key=lambda s: system_key(s, roles) != leanest)  # ties go to the leanest
    space = {tuple(v) for v in itertools.product(*(choices[k] for k in roles.accuracy))}
    # A config is started once it trained within the limit, or was tried at the leanest setting (a
    # config that only went over the limit at a heavier one deserves a try at the leanest).
    started = set(estimates.configs) | {
        estimates.key_of(r.config)
        for r in attempts
        if r.feasible is None or estimates.system_of(r.config) == leanest
    }
    started &= space
    all_started = len(started) >= len(space)
    busy = {estimates.key_of(r.config) for r in attempts if r.feasible is None}

    def in_time(key: AccuracyKey) -> bool:
        if end_game_s is None:
            return True
        known = (durations or {}).get(key)
        return known is not None and END_GAME_MARGIN * known <= end_game_s

    candidates = [
        k
        for k in replicate_candidates(estimates, max_replicates=max_replicates)
        if k in space and k not in busy and in_time(k)
    ]
    if end_game_s is not None:
        trainings_left = 1 if trainings_left is None else min(trainings_left, 1)  # the last to start
    if trainings_left is not None and max_replicates > 1:
        once = [
            k
            for k in export_decisions(estimates)
            if k in space and k not in busy and estimates.configs[k].replicates == 1 and in_time(k)
        ]
        for key in once if 0 < trainings_left <= len(once) else []:
            system = _system_for(systems, attempts, key, roles, end_game=end_game_s is not None)
            if system is not None:
                knobs = dict(zip(roles.accuracy, key, strict=True))
                return Plan(
                    fixed=_searched({**knobs, **system}, choices),
                    seed=next_seed(key, attempts, first=first_seed, roles=roles),
                    reason="replicate of a pick of export trained once (the last trainings confirm picks)",
                )
    replicates_done = sum(c.replicates - 1 for c in estimates.configs.values())
    # While new configs remain: until the noise is known, every other training is a replicate (the
    # first as soon as two configs are measured), since no accuracy difference counts before; then
    # at most one in three.
    share = 1 if not estimates.noise.known else 2
    due = all_started or end_game_s is not None or share * replicates_done < len(estimates.configs) - 1
    for key in candidates if due else []:
        system = _system_for(systems, attempts, key, roles, end_game=end_game_s is not None)
        if system is None:
            continue
        knobs = dict(zip(roles.accuracy, key, strict=True))
        seed = next_seed(key, attempts, first=first_seed, roles=roles)
        noise = estimates.noise
        if not noise.measured:
            best = max(estimates.configs.values(), key=lambda c: c.mean).key == key
            reason = (
                f"replicate{' of the best config' if best else ''}: the accuracy noise is not measured yet"
            )
        elif not noise.known:
            reason = f"replicate: the accuracy noise has {noise.shortfall()}"
        else:
            reason = "replicate: its accuracy is not distinguishable from a front neighbour's"
        return Plan(fixed=_searched({**knobs, **system}, choices), seed=seed, reason=reason)
    if all_started:
        return None
    # A new config trains at the leanest setting: its point on the front is where it needs least
    # memory, which is what a budget asks about; its replicates then measure the other settings.
    system = systems[0] if fix_system else {}
    if end_game_s is not None:
        # The sampler could propose a config that would not end: name one bounded to end in time.
        fitting = sorted(k for k in space - started - busy if in_time(k))
        if not fitting:
            return None
        fixed = _searched({**dict(zip(roles.accuracy, fitting[0], strict=True)), **systems[0]}, choices)
        return Plan(fixed=fixed, seed=None, reason="a new accuracy config bounded to end before the timeout")
    lean_knobs = leanest_accuracy(choices, roles)
    if fix_system and accuracy_key(lean_knobs, roles) not in started:
        # Whatever its accuracy, no config needs less memory: it is the front's low-memory end (the
        # answer at the smallest budget, the widest memory range of the hypervolume), known before
        # any training.
        fixed = _searched({**lean_knobs, **systems[0]}, choices)
        return Plan(fixed=fixed, seed=None, reason="the leanest accuracy config: the front's low-memory end")
    if explore_directly:
        key = min(space - started)
        system = system if system else systems[0]
        fixed = _searched({**dict(zip(roles.accuracy, key, strict=True)), **system}, choices)
        return Plan(fixed=fixed, seed=None, reason="a new accuracy config (the sampler kept repeating)")
    return Plan(fixed=_searched(system or {}, choices), seed=None, reason="a new accuracy config")


def _searched(values: dict[str, Any], choices: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Only the knobs the sampler searches can be enqueued (the others are fixed, not parameters)."""
    return {k: v for k, v in values.items() if len(choices[k]) > 1}
