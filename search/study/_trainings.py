"""A study's trainings as the next decision sees them, and what a sampler's proposal becomes.

:class:`TrainingState` reads the stored trials once per decision; :func:`judge_proposal` says
whether a configuration the sampler proposed trains (a new config, or a replicate the planner of
:mod:`search.study._replicates` would want) or is told an earlier result; :func:`training_key` and
:func:`replicate_identity` say when two trainings are the same one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any

from optuna.trial import TrialState

from search.accuracy._estimates import AccuracyEstimates, SystemsOf, estimate_accuracy
from search.accuracy._noise import NoiseRules
from search.accuracy._trainings import AccuracyKey, accuracy_key, random_stream, system_key, trainings_of
from search.study._replicates import (
    DEFAULT_MAX_REPLICATES,
    Plan,
    Running,
    next_seed,
    plan_next,
    replicate_candidates,
)
from search.study._space import DEFAULT_ROLES, KnobRoles
from search.study._spec import MemoryAxis
from search.study._stored import StoredTrial

__all__ = ["SAMPLED_REPLICATE", "TrainingState", "judge_proposal", "replicate_identity", "training_key"]


SAMPLED_REPLICATE = "replicate: the sampler proposed a measured config whose accuracy may change the front"
"""Why a training trains when the planner asked the sampler for a new config and it proposed a
measured one that is a replicate candidate (:func:`judge_proposal`)."""


def judge_proposal(
    config: Mapping[str, Any],
    estimates: AccuracyEstimates,
    attempts: list[Running],
    *,
    first_seed: int,
    max_replicates: int = DEFAULT_MAX_REPLICATES,
    measured: AccuracyEstimates | None = None,
) -> int | None:
    """The seed to train a sampled configuration with; None when it must not be trained.

    An accuracy config without a feasible training trains with the study's seed; a measured one only
    as the next replicate of a replicate candidate that no worker is replicating now (else it repeats
    what is known: the caller tells the earlier result, :meth:`TrainingState.earlier`).
    ``measured``: the estimates on the trainings' own figures, when ``estimates`` has whole-dataset
    ones (a config trained on a subset that does not fit the whole dataset is measured, not new).
    """
    key = estimates.key_of(config)
    if key not in (estimates if measured is None else measured).configs:
        # Not measured yet (or only over the limit, or in training elsewhere: a repeat of that one's
        # random stream is discarded as such, another stream is a replicate of its own).
        return first_seed
    if key not in estimates.configs:
        return None  # trained, but no setting of it fits on the whole dataset: nothing to replicate
    busy = any(r.feasible is None and estimates.key_of(r.config) == key for r in attempts)
    if busy or key not in replicate_candidates(estimates, max_replicates=max_replicates):
        return None
    return next_seed(key, attempts, first=first_seed, roles=estimates.roles)


def training_key(config: Mapping[str, Any], seed: int | None) -> tuple[Any, ...]:
    """What makes two trainings the same one: the five knobs and the seed."""
    return (*accuracy_key(config), *system_key(config), seed)


def replicate_identity(
    config: Mapping[str, Any], seed: int | None, roles: KnobRoles = DEFAULT_ROLES
) -> tuple[Any, ...]:
    """Trainings with the same identity are one replicate: the same accuracy config and random stream."""
    return (*accuracy_key(config, roles), *random_stream(config, seed))


@dataclasses.dataclass(frozen=True)
class TrainingState:
    """A study's trainings as the next decision sees them.

    Attributes:
        estimates: The accuracy estimates of its feasible trainings, with the figures report and
            export rank on (on the whole dataset).
        attempts: Every training counted toward ``n_trials`` and every one in progress.
        running: How many trials are in progress (including any whose knobs are not stored yet).
        first_seed: The study's seed.
        measured: The same estimates on the trainings' own figures: what probes are planned from
            (a config the model puts just over the limit is left out of ``estimates``, and a probe
            is what settles it).
    """

    estimates: AccuracyEstimates
    attempts: list[Running]
    running: int
    first_seed: int
    measured: AccuracyEstimates

    @classmethod
    def of(
        cls,
        trials: list[StoredTrial],
        *,
        accuracy: str,
        first_seed: int,
        rules: NoiseRules,
        roles: KnobRoles = DEFAULT_ROLES,
        systems_of: SystemsOf | None = None,
        memory: MemoryAxis = "host",
        failed_here: Collection[int] = (),
    ) -> TrainingState:
        """Reads the state from a study's stored trials (``roles``: the study's framework's;
        ``systems_of``: the whole-dataset figures report and export rank on, when they are not the
        trainings' own; ``memory``: the memory its front ranks, :attr:`StudySpec.memory_axis`;
        ``failed_here``: trials that failed in this worker's run, attempts without a result, so that
        the planner does not plan their configs again in this run, though they count toward nothing
        and a later run, the failure fixed, trains them)."""
        trainings = trainings_of(trials, accuracy=accuracy, default_seed=first_seed)
        feasible = {t.number for t in trainings}
        attempts = []
        running = 0
        for t in trials:
            in_progress = t.state == TrialState.RUNNING and not t.proposal_only
            running += in_progress
            if t.config is not None and (in_progress or t.counts_toward_n_trials or t.number in failed_here):
                seed = first_seed if t.seed is None else t.seed
                attempts.append(
                    Running(
                        config=dict(t.config),
                        seed=seed,
                        feasible=None if in_progress else t.number in feasible,
                    )
                )
        measured = estimate_accuracy(trainings, rules=rules, roles=roles, memory=memory)
        return cls(
            estimates=measured
            if systems_of is None
            else estimate_accuracy(trainings, rules=rules, roles=roles, systems_of=systems_of, memory=memory),
            attempts=attempts,
            running=running,
            first_seed=first_seed,
            measured=measured,
        )

    def plan(
        self,
        *,
        choices: Mapping[str, list[Any]],
        max_replicates: int,
        fix_system: bool,
        explore_directly: bool,
        trainings_left: int | None = None,
        end_game_s: float | None = None,
        durations: Mapping[AccuracyKey, float] | None = None,
    ) -> Plan | None:
        """:func:`plan_next` on this state."""
        return plan_next(
            self.estimates, self.attempts, choices=choices, first_seed=self.first_seed,
            max_replicates=max_replicates, fix_system=fix_system, explore_directly=explore_directly,
            trainings_left=trainings_left, end_game_s=end_game_s, durations=durations,
        )  # fmt: skip

    def is_measured(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config``'s accuracy config has a training within its limit (the trainings' own
        figures): a proposal of it that :meth:`judge` lets train is a replicate."""
        return self.measured.key_of(config) in self.measured.configs

    def judge(self, config: Mapping[str, Any], *, max_replicates: int) -> int | None:
        """:func:`judge_proposal` on this state."""
        return judge_proposal(
            config, self.estimates, self.attempts, first_seed=self.first_seed, max_replicates=max_replicates,
            measured=self.measured,
        )  # fmt: skip

    def earlier(self, config: Mapping[str, Any]) -> int:
        """A measured trial of the same accuracy config (the one a refused proposal is told)."""
        estimate = self.measured.configs[self.measured.key_of(config)]
        for system in estimate.systems:
            if self.estimates.system_of(system.config) == self.estimates.system_of(config) and system.trials:
                return system.trials[0]
        return next((s.trials[0] for s in estimate.systems if s.trials), estimate.trials[0])
