"""What a study trains next: a new accuracy config, or a replicate of one whose rank is still open.

How trainings map onto Optuna trials: every training is one Optuna trial (one process, one record,
its five knobs as parameters, its own seed as the user attribute ``seed``), and ``n_trials`` counts
trainings, replicates included. The sampler proposes the accuracy knobs of new configs; memfront
decides the rest:

* **Replicates** (the same accuracy knobs, a new seed) go where they can change the answer: first
  the best config, while no config has been trained twice (the noise is unknown until then); then
  the front's configs whose accuracy is not distinguishable from a front neighbour's, fewest
  replicates first, up to ``max_replicates``. A config beaten beyond noise is never trained again.
  While new configs remain, at most one training in three is a replicate.
* **System knobs** (cache, workers) cannot change accuracy in expectation, so they are not searched
  for it: each training takes the system setting measured least so far (for a replicate, least for
  its own config), so that memory and speed get learned across the space without a training spent
  on re-measuring accuracy.
* A proposal of the sampler that repeats a measured accuracy config becomes that config's next
  replicate when it is a candidate for one, and is told the earlier result otherwise.

The decisions are pure functions of the study's trials (:func:`plan_next`, :func:`judge_proposal`),
tested on synthetic studies.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from optuna.trial import TrialState

from search.accuracy._estimates import (
    AccuracyEstimates,
    AccuracyKey,
    Training,
    accuracy_key,
    estimate_accuracy,
    random_stream,
    system_key,
    trainings_of,
)
from search.accuracy._front import noise_front
from search.study._space import ACCURACY_KNOBS, SYSTEM_KNOBS
from search.study._stored import StoredTrial

__all__ = [
    "Plan",
    "Running",
    "TrainingState",
    "judge_proposal",
    "next_seed",
    "plan_next",
    "replicate_candidates",
    "replicate_identity",
    "training_key",
]

DEFAULT_MAX_REPLICATES = 3


@dataclasses.dataclass(frozen=True)
class Running:
    """A training in progress (any worker's): its knobs and seed, once decided."""

    config: dict[str, Any]
    seed: int | None


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
        best = max(configs.values(), key=lambda c: c.mean)
        return [best.key] if best.replicates < max_replicates else []
    front = [p.estimate.key for p in noise_front(estimates)]
    open_keys = []
    for index, key in enumerate(front):
        neighbours = front[max(0, index - 1) : index] + front[index + 1 : index + 2]
        if any(not estimates.distinguishable(key, other) for other in neighbours):
            open_keys.append(key)
    wanted = [k for k in open_keys if configs[k].replicates < max_replicates]
    return sorted(wanted, key=lambda k: (configs[k].replicates, -configs[k].mean))


def next_seed(
    key: AccuracyKey, trainings: Iterable[Training], running: Iterable[Running], *, first: int
) -> int:
    """The lowest seed from ``first`` that no training of accuracy config ``key`` used or uses."""
    used = {t.seed for t in trainings if accuracy_key(t.config) == key}
    used |= {r.seed for r in running if r.seed is not None and accuracy_key(r.config) == key}
    return next(s for s in itertools.count(first) if s not in used)


def _least_measured_system(
    systems: list[dict[str, Any]], trainings: list[Training], running: list[Running], key: AccuracyKey | None
) -> dict[str, Any]:
    """The system setting with the fewest trainings (for ``key``'s config first, then overall)."""
    overall = Counter(system_key(c) for c in [t.config for t in trainings] + [r.config for r in running])
    own = Counter(
        system_key(c)
        for c in [t.config for t in trainings] + [r.config for r in running]
        if key is not None and accuracy_key(c) == key
    )
    ranked = sorted(systems, key=lambda s: (own[system_key(s)], overall[system_key(s)]))
    return ranked[0]


def plan_next(
    estimates: AccuracyEstimates,
    trainings: list[Training],
    running: list[Running],
    *,
    tried: set[AccuracyKey],
    choices: Mapping[str, list[Any]],
    first_seed: int,
    max_replicates: int = DEFAULT_MAX_REPLICATES,
    fix_system: bool = True,
) -> Plan | None:
    """What to train next; None when nothing left can change the answer.

    Args:
        estimates: The study's accuracy estimates (feasible trainings).
        trainings: Those trainings.
        running: Trainings in progress on any worker.
        tried: Every accuracy config trained so far, feasible or not.
        choices: Per knob, the values searched on this machine (one value: not searched).
        first_seed: The study's seed (a new config's first training uses it).
        max_replicates: The most replicates of one accuracy config.
        fix_system: Choose the system setting of a new config (the grid sampler chooses its own).
    """
    systems = [
        dict(zip(SYSTEM_KNOBS, values, strict=True))
        for values in itertools.product(*(choices[k] for k in SYSTEM_KNOBS))
    ]
    accuracy_space = 1
    for name in ACCURACY_KNOBS:
        accuracy_space *= len(choices[name])
    started = set(estimates.configs) | tried | {accuracy_key(r.config) for r in running}
    all_started = len(started) >= accuracy_space
    candidates = [
        k for k in replicate_candidates(estimates, max_replicates=max_replicates)
        if not any(accuracy_key(r.config) == k for r in running)
    ]  # fmt: skip
    replicates_done = sum(c.replicates - 1 for c in estimates.configs.values())
    # At most one training in three is a replicate while new configs remain; the first one comes as
    # soon as two configs are measured, since no accuracy difference counts before the noise is known.
    due = all_started or (
        not estimates.noise.known and len(estimates.configs) >= 2
    ) or 2 * replicates_done < len(estimates.configs) - 1  # fmt: skip
    if candidates and due:
        key = candidates[0]
        knobs = dict(zip(ACCURACY_KNOBS, key, strict=True))
        system = _least_measured_system(systems, trainings, running, key)
        seed = next_seed(key, trainings, running, first=first_seed)
        reason = (
            "replicate of the best config: the accuracy noise is not measured yet"
            if not estimates.noise.known
            else "replicate: its accuracy is not distinguishable from a front neighbour's"
        )
        return Plan(fixed=_searched({**knobs, **system}, choices), seed=seed, reason=reason)
    if all_started:
        return None
    system = _least_measured_system(systems, trainings, running, None) if fix_system else {}
    return Plan(fixed=_searched(system, choices), seed=None, reason="a new accuracy config")


def _searched(values: dict[str, Any], choices: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Only the knobs the sampler searches can be enqueued (the others are fixed, not parameters)."""
    return {k: v for k, v in values.items() if len(choices[k]) > 1}


def judge_proposal(
    config: Mapping[str, Any],
    estimates: AccuracyEstimates,
    trainings: list[Training],
    running: list[Running],
    *,
    first_seed: int,
    max_replicates: int = DEFAULT_MAX_REPLICATES,
) -> int | None:
    """The seed to train a sampled configuration with; None when it must not be trained.

    An accuracy config without a feasible training trains with the study's seed; a measured one only
    as the next replicate of a replicate candidate (else it repeats what is known: the caller tells
    the earlier result, :meth:`TrainingState.earlier`).
    """
    key = accuracy_key(config)
    if key not in estimates.configs:
        # Not measured yet (or only over the limit, or in training elsewhere: a repeat of that one's
        # random stream is discarded as such, another stream is a replicate of its own).
        return first_seed
    if key not in replicate_candidates(estimates, max_replicates=max_replicates):
        return None
    return next_seed(key, trainings, running, first=first_seed)


def training_key(config: Mapping[str, Any], seed: int | None) -> tuple[Any, ...]:
    """What makes two trainings the same one: the five knobs and the seed."""
    return (*accuracy_key(config), *system_key(config), seed)


def replicate_identity(config: Mapping[str, Any], seed: int | None) -> tuple[Any, ...]:
    """Trainings with the same identity are one replicate: the same accuracy config and random stream."""
    return (*accuracy_key(config), *random_stream(config, seed))


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """A study's trainings as the next decision sees them.

    Attributes:
        estimates: The accuracy estimates of its feasible trainings.
        trainings: Those trainings.
        running: Trainings in progress on any worker, by trial number.
        tried: Every accuracy config with a counted training, feasible or not.
        first_seed: The study's seed.
    """

    estimates: AccuracyEstimates
    trainings: list[Training]
    running: dict[int, Running]
    tried: set[AccuracyKey]
    first_seed: int

    @classmethod
    def of(
        cls, trials: list[StoredTrial], *, accuracy: str, first_seed: int, resolution: float
    ) -> TrainingState:
        """Reads the state from a study's stored trials."""
        trainings = trainings_of(trials, accuracy=accuracy, default_seed=first_seed)
        running = {
            t.number: Running(config=dict(t.config), seed=t.seed)
            for t in trials
            if t.state == TrialState.RUNNING and not t.proposal_only and t.config is not None
        }
        tried = {accuracy_key(t.config) for t in trials if t.counts_toward_n_trials and t.config is not None}
        return cls(
            estimates=estimate_accuracy(trainings, resolution=resolution),
            trainings=trainings,
            running=running,
            tried=tried,
            first_seed=first_seed,
        )

    def plan(self, *, choices: Mapping[str, list[Any]], max_replicates: int, fix_system: bool) -> Plan | None:
        """:func:`plan_next` on this state."""
        return plan_next(
            self.estimates, self.trainings, list(self.running.values()), tried=self.tried, choices=choices,
            first_seed=self.first_seed, max_replicates=max_replicates, fix_system=fix_system,
        )  # fmt: skip

    def judge(self, config: Mapping[str, Any], *, max_replicates: int) -> int | None:
        """:func:`judge_proposal` on this state."""
        return judge_proposal(
            config, self.estimates, self.trainings, list(self.running.values()),
            first_seed=self.first_seed, max_replicates=max_replicates,
        )  # fmt: skip

    def earlier(self, config: Mapping[str, Any]) -> int:
        """A measured trial of the same accuracy config (the one a refused proposal is told)."""
        estimate = self.estimates.configs[accuracy_key(config)]
        for system in estimate.systems:
            if system_key(system.config) == system_key(config):
                return system.trial
        return estimate.leanest.trial
