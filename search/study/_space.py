"""The search space as searched on this machine, and how a trial samples it."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from search.frameworks import get_framework
from search.study._spec import IntRange, StudySpec
from search.study._stored import write_capped_workers, write_fixed_knob
from search.units import plural

__all__ = [
    "ACCURACY_KNOBS",
    "DEFAULT_ROLES",
    "KNOBS",
    "SYSTEM_KNOBS",
    "EffectiveSpace",
    "KnobRoles",
    "effective_space",
    "knob_distributions",
    "leanest_accuracy",
    "leanest_system",
    "make_sampler",
    "sampled_choices",
    "suggest",
]

KNOBS = ("batch", "imgsz", "cache", "workers", "amp")
ACCURACY_KNOBS = ("batch", "imgsz", "amp")
"""Knobs that change what the network sees or how it is optimised: they change the result."""
SYSTEM_KNOBS = ("cache", "workers")
"""Knobs that change memory and speed, not the result in expectation: the cache holds the same pixels
(trainings that differ only in it score the same to the digit), and a worker count only picks another
random stream for the augmentations (``bench/noise_bench.py`` tests both). yolov5's; a framework
may count fewer (:attr:`search.frameworks.Framework.system_knobs`)."""


@dataclasses.dataclass(frozen=True)
class KnobRoles:
    """Which knobs change a training's result (accuracy knobs) and which only its memory and speed
    (system knobs), for one framework.

    Attributes:
        accuracy: The knobs of an accuracy config, in :data:`KNOBS` order.
        system: The knobs of a system setting, in :data:`KNOBS` order.
    """

    accuracy: tuple[str, ...] = ACCURACY_KNOBS
    system: tuple[str, ...] = SYSTEM_KNOBS

    @classmethod
    def of(cls, framework: str) -> KnobRoles:
        """The roles for a framework: its system knobs; every other knob changes the result."""
        system = tuple(k for k in KNOBS if k in get_framework(framework).system_knobs)
        return cls(accuracy=tuple(k for k in KNOBS if k not in system), system=system)


DEFAULT_ROLES = KnobRoles()
"""yolov5's roles: :data:`ACCURACY_KNOBS` and :data:`SYSTEM_KNOBS`."""


def _leanest(choices: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Each knob's value expected to need least memory: memory grows with batch, image size and workers,
    the RAM or disk cache adds to it, and AMP halves activation memory."""
    return {
        "batch": min(choices["batch"]),
        "imgsz": min(choices["imgsz"]),
        "cache": "none" if "none" in choices["cache"] else choices["cache"][0],
        "workers": min(choices["workers"]),
        "amp": True in choices["amp"],
    }


def leanest_system(choices: Mapping[str, Sequence[Any]], roles: KnobRoles = DEFAULT_ROLES) -> dict[str, Any]:
    """The system setting a new accuracy config trains with: no cache (else the first listed) and the
    fewest workers, where it needs least memory. ``choices``: per knob, the values searched."""
    lean = _leanest(choices)
    return {k: lean[k] for k in roles.system}


def leanest_accuracy(
    choices: Mapping[str, Sequence[Any]], roles: KnobRoles = DEFAULT_ROLES
) -> dict[str, Any]:
    """The accuracy config expected to need least memory: the smallest batch and image size, AMP on
    where it is searched (a framework's accuracy knobs among cache and workers: their leanest value).
    At its leanest system setting it is on the memory front whatever its accuracy, since no config
    needs less. ``choices``: per knob, the values searched."""
    lean = _leanest(choices)
    return {k: lean[k] for k in roles.accuracy}


@dataclasses.dataclass(frozen=True)
class EffectiveSpace:
    """The knobs as searched on this machine.

    Attributes:
        choices: Per knob, the values that train differently here (AMP off on a CPU, workers up to
            the CPU count): they make the distinct configurations.
        notes: What was fixed or clipped, and why.
        cpus: This machine's CPU count, which caps the workers.
    """

    choices: dict[str, list[Any]]
    notes: tuple[str, ...]
    cpus: int

    @property
    def searched(self) -> list[str]:
        """Knobs with more than one choice."""
        return [k for k in KNOBS if len(self.choices[k]) > 1]

    @property
    def size(self) -> int:
        """Number of distinct configurations."""
        total = 1
        for values in self.choices.values():
            total *= len(values)
        return total

    def here(self, params: dict[str, Any]) -> dict[str, Any]:
        """A sampled configuration as it trains on this machine: workers capped at the CPU count."""
        return {**params, "workers": min(int(params["workers"]), self.cpus)}


def effective_space(spec: StudySpec, *, cpus: int | None = None) -> EffectiveSpace:
    """Removes the knobs that cannot matter here, saying so: AMP on a CPU, workers beyond the cores.

    Args:
        spec: The study definition.
        cpus: This machine's CPU count (default: ``os.cpu_count()``).
    """
    choices = {name: spec.space.choices(name) for name in KNOBS}
    notes = []
    if spec.device == "cpu" and True in choices["amp"]:
        choices["amp"] = [False]
        notes.append(f"amp fixed off: this study runs on the CPU and {spec.framework}'s AMP is CUDA-only")
    cpus = cpus or os.cpu_count() or 1
    framework = get_framework(spec.framework)
    # A large batch: only the device and the CPU count may stop workers from starting.
    started = {
        framework.loader_workers(w, 1 << 20, device=spec.device, cpus=cpus) for w in choices["workers"]
    }
    if started == {(0, 0)} and choices["workers"] != [0]:
        notes.append(f"workers fixed at 0: {spec.framework} starts no dataloader worker on {spec.device}")
        choices["workers"] = [0]
    elif max(choices["workers"]) > cpus:
        clipped = sorted({min(w, cpus) for w in choices["workers"]})
        notes.append(f"workers clipped to this machine's {cpus} CPUs: {choices['workers']} -> {clipped}")
        choices["workers"] = clipped
    unreachable = _unreachable_noise(spec, choices)
    if unreachable:
        notes.append(unreachable)
    return EffectiveSpace(choices=choices, notes=tuple(notes), cpus=cpus)


def _unreachable_noise(spec: StudySpec, choices: dict[str, list[Any]]) -> str | None:
    """Why the study can never rank accuracy, when its noise cannot reach ``accuracy_min_df``
    degrees of freedom: each accuracy config gives at most ``max_replicates - 1``, and two configs
    take two of ``n_trials``' trainings before any replicate."""
    configs = math.prod(len(choices[name]) for name in KnobRoles.of(spec.framework).accuracy)
    prior = spec.accuracy_noise_prior
    by_replicates = configs * (spec.max_replicates - 1)
    by_trials = max(0, spec.n_trials - 2)
    reachable = min(by_replicates, by_trials) + (prior.df if prior else 0)
    if configs < 2 or reachable >= spec.accuracy_min_df:
        return None
    why = (
        f"n_trials {spec.n_trials} leaves {plural(by_trials, 'training')} for replicates "
        "after the first two configs"
        if by_trials <= by_replicates
        else f"{configs} accuracy configs x (max_replicates {spec.max_replicates} - 1)"
    )
    return (
        f"accuracy will not be ranked: the noise can reach {reachable} of the {spec.accuracy_min_df} degrees "
        f"of freedom ranking needs ({why}); raise max_replicates or n_trials, or give accuracy_noise_prior"
    )


def sampled_choices(spec: StudySpec, space: EffectiveSpace) -> dict[str, list[Any]]:
    """The values the sampler draws from for each searched knob: the study file's, on every host.

    Optuna refuses a parameter whose distribution differs from the one stored with the study, so a
    worker on a smaller machine samples the same workers range as the others and caps it when it
    trains (:meth:`EffectiveSpace.here`).
    """
    return {name: spec.space.choices(name) for name in space.searched}


def knob_distributions(spec: StudySpec, space: EffectiveSpace) -> dict[str, BaseDistribution]:
    """The distribution each searched knob is sampled from: an integer range where the study file
    gives one (the grid sampler takes its points as choices), else the file's choices.

    Optuna stores each parameter's distribution with the study and refuses another kind, or other
    choices, later (:func:`search.study._prepare.open_study` says so before a run starts).
    """
    distributions: dict[str, BaseDistribution] = {}
    for name in space.searched:
        declared = getattr(spec.space, name)
        if isinstance(declared, IntRange) and spec.sampler != "grid":
            distributions[name] = IntDistribution(declared.low, declared.high, step=declared.step)
        else:
            distributions[name] = CategoricalDistribution(spec.space.choices(name))
    return distributions


def suggest(trial: optuna.Trial, spec: StudySpec, space: EffectiveSpace) -> dict[str, Any]:
    """Samples one configuration, as it trains on this machine.

    A knob with a single choice here is fixed and noted on the trial; the others are drawn from the
    study file's distribution (the same on every host, :func:`knob_distributions`) and then capped
    to this machine (a capped value is noted as ``capped_workers``).
    """
    distributions = knob_distributions(spec, space)
    params: dict[str, Any] = {}
    for name in KNOBS:
        distribution = distributions.get(name)
        if distribution is None:
            params[name] = space.choices[name][0]
            write_fixed_knob(trial, name, params[name])
        elif isinstance(distribution, IntDistribution):
            low, high, step = distribution.low, distribution.high, distribution.step
            params[name] = trial.suggest_int(name, low, high, step=step)
        else:
            assert isinstance(distribution, CategoricalDistribution)
            params[name] = trial.suggest_categorical(name, list(distribution.choices))
    here = space.here(params)
    if here["workers"] != params["workers"]:
        write_capped_workers(trial, sampled=params["workers"], cpus=space.cpus)
    return here


class _AskTellGridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler for ask-and-tell.

    Its ``after_trial`` calls ``study.stop()`` once the grid is exhausted, which raises outside
    ``study.optimize``; :func:`search.study._optimize.run_worker` stops by itself when every configuration
    is evaluated.
    """

    def after_trial(
        self,
        study: optuna.Study,
        trial: optuna.trial.FrozenTrial,
        state: optuna.trial.TrialState,
        values: Any,
    ) -> None:
        return None


def make_sampler(spec: StudySpec, space: EffectiveSpace, seed: int) -> optuna.samplers.BaseSampler:
    """The study file's ``sampler`` over the effective space, seeded (workers of one study need
    different seeds, or they propose the same configurations)."""
    # Constraints come from each trial's own `Trial.set_constraint` (search.study._optimize), which the
    # constrained samplers read; `constant_liar` makes TPE treat other workers' running trials as
    # poor results, so that parallel workers propose different configurations.
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    if spec.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return _AskTellGridSampler(sampled_choices(spec, space), seed=seed)
