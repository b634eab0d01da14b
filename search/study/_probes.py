"""A study's probes: which full config to probe next, and running it under the study's limits.

Trainings measure accuracy (on a subset when the study sets ``train_images``); probes
(:mod:`search.probe`) measure memory and speed on the whole dataset. The memory model predicts every
full config; a worker probes, between trainings, in this order:

1. *anchor*: when the trainings use a subset and nothing of this dataset and machine is probed yet:
   the leanest system setting of the most accurate config trained so far (trainings on the whole
   dataset measure that themselves);
2. *uncertain*: a memory term no probe has exercised yet (the RAM cache, worker processes, the
   cache pages workers copy): one full config that exercises it, when even twice its predicted peak
   might not fit (a term that could be off by its whole size changes no decision far below the
   limit: there a probe would cost a training's time and tell nothing);
3. *near the budget*: a full config of a measured accuracy config whose prediction lies within
   ``max(10%, 3 x the model's median error)`` of the memory limit, closest first;
4. *front*: when the trainings used a subset, each front config's leanest system setting (so that
   the front's memory is measured, not modelled); with ``epoch_seconds`` an objective, every system
   setting of a front config (what workers and the RAM cache buy in speed).

Probes take at most ``probe_share`` of the worker's time (the first is always allowed), and never
start when the study's timeout leaves less than twice the longest probe so far. Each probe refits the
model (its rows join the study's, :class:`search.model.Preflight`). A probe is never retaken for a
config already probed on the same dataset and machine (:class:`search.probe.ProbeStore`).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import optuna

from search.accuracy._estimates import AccuracyEstimates
from search.accuracy._front import noise_front
from search.model._predict import DatasetStats, MemoryModel
from search.model._preflight import study_memory_model
from search.probe._run import ProbeResult, run_probe
from search.probe._store import ProbeStore, StoredProbe, knobs_key
from search.probe._systems import SystemFigures, in_space, probe_rows, study_figures, whole_dataset_predictor
from search.study._space import KNOBS, KnobRoles
from search.trial._config import TrialConfig, TrialLimits
from search.trial._supervisor import TrialProgress

if TYPE_CHECKING:
    from search.study._optimize import StudyEvents
    from search.study._prepare import PreparedStudy

__all__ = ["ProbePlan", "StudyProbes", "plan_probe", "planning_figures", "run_due_probe"]

_NEAR_BUDGET = 0.10
_CLAIM_REFRESH_S = 30.0
_UNCERTAIN_TERMS = ("ram_cache", "worker_processes", "worker_cache_copies")


@dataclasses.dataclass(frozen=True)
class ProbePlan:
    """The next full config to probe, and why."""

    knobs: dict[str, Any]
    reason: str


def _terms(knobs: Mapping[str, Any]) -> set[str]:
    used = set()
    if knobs["cache"] == "ram":
        used.add("ram_cache")
    if knobs["workers"] > 0:
        used.add("worker_processes")
        if knobs["cache"] == "ram":
            used.add("worker_cache_copies")
    return used


def plan_probe(
    estimates: AccuracyEstimates,
    *,
    systems: Mapping[str, list[Any]],
    probed: Mapping[tuple[Any, ...], StoredProbe],
    skip: set[tuple[Any, ...]],
    predict: Callable[[Mapping[str, Any]], float],
    model_error: float | None,
    limit_bytes: int,
    subset: bool,
    speed_objective: bool,
) -> ProbePlan | None:
    """The next probe of a study, or None when no probe can change what it knows.

    Args:
        estimates: The study's accuracy estimates from its trainings.
        systems: The system knobs' values here (the framework's: ``cache`` and ``workers`` for yolov5).
        probed: The probes stored for this dataset and machine, by knobs.
        skip: Knobs not to plan (being probed by another worker, or failed in this run).
        predict: The model's whole-dataset peak of a full config.
        model_error: The model's median relative error on the study's runs (None: not fitted yet).
        limit_bytes: The study's memory limit.
        subset: Whether the trainings use a subset of the training images.
        speed_objective: Whether ``epoch_seconds`` is an objective.
    """
    if not estimates.configs:
        return None
    known = {k for k, p in probed.items() if p.settles(limit_bytes)}
    ranked = sorted(estimates.configs.values(), key=lambda e: -e.mean)

    names = list(systems)  # the framework's system knobs; the others are the accuracy config's

    def variants(knobs: Mapping[str, Any]) -> list[dict[str, Any]]:
        found = []
        for values in itertools.product(*(systems[name] for name in names)):
            full = {**knobs, **dict(zip(names, values, strict=True))}
            if knobs_key(full) not in known and knobs_key(full) not in skip:
                found.append(full)
        return found

    lean: dict[str, Any] = {}
    if "cache" in systems:
        lean["cache"] = next(c for c in ("none", "disk", "ram") if c in systems["cache"])
    if "workers" in systems:
        lean["workers"] = min(systems["workers"])

    def leanest(knobs: Mapping[str, Any]) -> dict[str, Any]:
        return {**knobs, **lean}

    best = ranked[0].knobs
    if subset and not any(p.result.ok for p in probed.values()):
        anchor = leanest(best)
        if knobs_key(anchor) not in known and knobs_key(anchor) not in skip:
            return ProbePlan(anchor, "anchor: nothing probed on this dataset and machine yet")
    covered = set().union(*(_terms(p.result.knobs) for p in probed.values() if p.result.ok))
    for term in _UNCERTAIN_TERMS:
        if term in covered:
            continue
        for candidate in variants(best):
            if term in _terms(candidate) and 2 * predict(candidate) > limit_bytes:
                return ProbePlan(
                    candidate, f"uncertain: no probe has measured the {term.replace('_', ' ')} yet"
                )
    near = []
    band = max(_NEAR_BUDGET, 3 * (model_error or 0.0))
    for estimate in ranked:
        for candidate in variants(estimate.knobs):
            distance = abs(predict(candidate) - limit_bytes) / limit_bytes
            if distance <= band:
                near.append((distance, candidate))
    if near:
        distance, candidate = min(near, key=lambda item: item[0])
        return ProbePlan(candidate, f"near the budget: predicted within {100 * distance:.0f}% of the limit")
    if subset or speed_objective:
        for point in noise_front(estimates):
            knobs = point.estimate.knobs
            wanted = variants(knobs) if speed_objective else [leanest(knobs)]
            for candidate in wanted:
                new = knobs_key(candidate) not in known and knobs_key(candidate) not in skip
                if new and predict(candidate) <= limit_bytes * (1 + band):
                    return ProbePlan(candidate, "front: its memory and speed on the whole dataset")
    return None


class StudyProbes:
    """One worker's probes of a study: plans them, runs them under the study's limits, stores them.

    Args:
        store: The storage's probes of this dataset and machine.
        stats: The dataset's image sizes (the model's features).
        base_config: What every probe shares with the study's trainings (data, model, hyp, device).
        limits: The study's memory limits (a probe's time limit is set per probe).
        probe_share: The most of the worker's time that probes may take.
        worker: This worker's name (for claims).
    """

    def __init__(
        self,
        *,
        store: ProbeStore,
        stats: DatasetStats,
        base_config: TrialConfig,
        limits: TrialLimits,
        probe_share: float,
        worker: str,
    ) -> None:
        self.store = store
        self.stats = stats
        self.base_config = base_config
        self.limits = limits
        self.probe_share = probe_share
        self.worker = worker
        self.seconds = 0.0
        self.longest_s = 0.0
        self.count = 0
        self.measured = 0  # probes that ended with a figure (ok, or over the limit)
        self.failed: set[tuple[Any, ...]] = set()

    def stored(self) -> dict[tuple[Any, ...], StoredProbe]:
        """Every probe of this dataset and machine in the storage."""
        return self.store.probes()

    def rows(self, probes: Mapping[tuple[Any, ...], StoredProbe]) -> list[tuple[dict[str, float], float]]:
        """The model's (features, peak) rows of the probes that ran to their end."""
        return probe_rows(probes, self.stats)

    def predictor(self, model: MemoryModel) -> Callable[[Mapping[str, Any]], float]:
        """The model's whole-dataset prediction of a full config's peak."""
        base = self.base_config
        return whole_dataset_predictor(model, self.stats, framework=base.framework, device=base.device)

    def allowed(self, *, elapsed_s: float, remaining_s: float | None) -> bool:
        """Whether the worker may spend time on a probe now."""
        if remaining_s is not None and remaining_s < 2 * max(self.longest_s, 30.0):
            return False
        return self.count == 0 or self.seconds <= self.probe_share * max(elapsed_s, 1.0)

    def run(
        self,
        plan: ProbePlan,
        *,
        time_limit_s: float | None,
        threads: int | None = None,
        on_progress: Callable[[TrialProgress], None] | None = None,
    ) -> ProbeResult | None:
        """Claims, runs and stores one probe; None when another worker has claimed it."""
        claim = self.store.claim(plan.knobs, worker=self.worker)
        if claim is None:
            return None
        config = self.base_config.model_copy(update={**plan.knobs, "threads": threads})
        limits = self.limits.model_copy(update={"time_limit_s": time_limit_s})
        refreshed = [time.monotonic()]

        def progress(update: TrialProgress) -> None:
            # A live claim says so: other workers fail claims that stop being refreshed.
            if time.monotonic() - refreshed[0] > _CLAIM_REFRESH_S:
                refreshed[0] = time.monotonic()
                self.store.refresh(claim)
            if on_progress is not None:
                on_progress(update)

        stored = False
        try:
            result = run_probe(config, limits=limits, on_progress=progress)
            self.count += 1
            self.seconds += result.seconds
            self.longest_s = max(self.longest_s, result.seconds)
            if result.status in ("ok", "memory_limit"):
                self.measured += 1
                stored = self.store.store(claim, result)
            elif result.status != "interrupted":
                self.failed.add(knobs_key(plan.knobs))
        finally:
            if not stored:
                # Failed, interrupted, or Ctrl-C between the probe and the storage: free the claim.
                self.store.release(claim, "the probe did not end with a result (failed or interrupted)")
        return result


def run_due_probe(
    prepared: PreparedStudy,
    trials: list[optuna.trial.FrozenTrial],
    stored: Mapping[tuple[Any, ...], StoredProbe],
    estimates: AccuracyEstimates,
    *,
    elapsed_s: float,
    events: StudyEvents,
) -> tuple[str | None, float]:
    """Runs the study's next probe if one is due; returns what happened (``probed``,
    ``interrupted`` or None: nothing due) and the probe's seconds.

    ``stored`` is the probe store as the loop read it in this iteration (:meth:`StudyProbes.stored`).
    """
    spec, probes = prepared.spec, prepared.probes
    assert probes is not None
    remaining = None if spec.timeout is None else spec.timeout - elapsed_s
    if not probes.allowed(elapsed_s=elapsed_s, remaining_s=remaining):
        return None, 0.0
    model = _memory_model(prepared, trials, stored, probes.stats)
    plan = plan_probe(
        estimates, systems={k: prepared.space.choices[k] for k in prepared.roles.system}, probed=stored,
        skip=probes.store.probing() | probes.failed, predict=probes.predictor(model),
        model_error=model.median_error, limit_bytes=spec.memory_limit,
        subset=spec.train_images is not None and spec.train_images < len(probes.stats.train_sizes),
        speed_objective="epoch_seconds" in spec.objectives,
    )  # fmt: skip
    if plan is None:
        return None, 0.0
    if events.on_probe_start:
        events.on_probe_start(plan)
    time_limit = min(filter(None, [spec.trial_time_limit, remaining]), default=None)
    result = probes.run(
        plan, time_limit_s=time_limit, threads=prepared.threads, on_progress=events.on_progress
    )
    if result is None:
        return "probed", 0.0  # another worker claimed it: plan again
    if events.on_probe_end:
        events.on_probe_end(plan, result)
    return ("interrupted" if result.status == "interrupted" else "probed"), result.seconds


def _memory_model(
    prepared: PreparedStudy,
    trials: list[optuna.trial.FrozenTrial],
    stored: Mapping[tuple[Any, ...], StoredProbe],
    stats: DatasetStats,
) -> MemoryModel:
    if prepared.preflight is not None:
        return prepared.preflight.model  # the loop loaded it with these trials and probes
    spec = prepared.spec
    return study_memory_model(
        trials, stats, model_name=spec.model, device=spec.device, framework=spec.framework,
        extra_rows=probe_rows(stored, stats), footprint_bytes=prepared.footprint_bytes,
    )  # fmt: skip


def planning_figures(
    prepared: PreparedStudy,
    trials: list[optuna.trial.FrozenTrial],
    stored: Mapping[tuple[Any, ...], StoredProbe],
) -> SystemFigures | None:
    """The whole-dataset figures the planner ranks on: those report and export rank on
    (:func:`search.probe._systems.study_figures`). None where they are the trainings' own (the
    trainings saw the whole dataset and nothing is probed).

    ``stored`` is the probe store as the loop read it in this iteration (empty without probes).
    """
    spec, stats = prepared.spec, prepared.stats
    if stats is None:
        return None
    subset = spec.train_images is not None and spec.train_images < len(stats.train_sizes)
    if not subset and not stored:
        return None
    return study_figures(
        probes=in_space(stored, {knob: spec.space.choices(knob) for knob in KNOBS}), stats=stats,
        model=_memory_model(prepared, trials, stored, stats), limit_bytes=spec.memory_limit,
        train_images=spec.train_images, framework=spec.framework, device=spec.device,
        roles=KnobRoles.of(spec.framework),
    )  # fmt: skip
