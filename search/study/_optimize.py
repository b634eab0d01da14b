"""The search loop: one worker trains until the study has ``n_trials`` trainings done.

What to train comes from :mod:`search.study._replicates`; what the study is told of each proposal
from :mod:`search.study._tell`; one training itself is :func:`search.study._train.train_proposal`.

Any number of workers may run the loop on one storage, on one host or many. ``n_trials`` counts
every worker's trials; a configuration another worker trains or trained is not trained again; a
worker with nothing left to start waits (another worker's trial may yet need a retry); the trials of
workers that went silent are failed and retried (see :mod:`search.study._storage`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
from collections.abc import Callable
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial

from search.probe._run import ProbeResult
from search.study._budget import (
    TOO_LITTLE_TIME,
    duration_bounds,
    end_game_seconds,
    retry_below_s,
    timeout_reason,
    trainings_left,
)
from search.study._discard import discard, discard_reason, trained_before
from search.study._heartbeats import fail_stale_trials
from search.study._interrupts import deferred_interrupts
from search.study._prepare import PreparedStudy
from search.study._probes import ProbePlan, planning_figures, run_due_probe
from search.study._space import sampled_choices, suggest
from search.study._storage import ask, storage_clock
from search.study._stored import (
    StoredTrial,
    StudyKeys,
    counts_toward_n_trials,
    plan_attrs,
    read_trial,
    read_trials,
    write_planned,
    write_proposal,
    write_seed,
)
from search.study._tell import ProposalGuard, tell_duplicate
from search.study._train import WorkerClock, requeue_interrupted, settle_interrupted, train_proposal
from search.study._trainings import SAMPLED_REPLICATE, TrainingState, replicate_identity
from search.study._unranked import unranked_lines
from search.study._workers import Heartbeat, announce
from search.trial._record import TrialRecord
from search.trial._supervisor import TrialProgress

__all__ = [
    "StudyEvents",
    "StudyOutcome",
    "failing_stop",
    "finished_count",
    "run_worker",
]

_REFUSALS_BEFORE_DIRECT = 3
"""Sampler proposals of measured configs in a row after which the next new config is planned whole."""
_ALIKE_FAILURES_TO_STOP = 3
"""Trainings in a row that fail with the same error after which a worker stops (a broken setup)."""
_FAILURES_PER_TRAINING = 1
"""Failed trainings a worker's run allows per training of ``n_trials`` (at least
:data:`_ALIKE_FAILURES_TO_STOP`): failures do not count toward ``n_trials``, so this bounds a run
whose configs keep failing in different ways."""
_KEEPS_PROPOSING = {
    "duplicate": "the sampler keeps proposing configurations already evaluated",
    "discarded": "the sampler keeps proposing configurations other workers train",
}


@dataclasses.dataclass
class StudyEvents:
    """Hooks for a progress display. All optional."""

    on_notes: Callable[[tuple[str, ...]], None] | None = None
    on_trial_start: Callable[[int, dict[str, Any]], None] | None = None
    on_progress: Callable[[TrialProgress], None] | None = None
    on_trial_end: Callable[[int, TrialRecord, str | None], None] | None = None
    on_probe_start: Callable[[ProbePlan], None] | None = None
    on_probe_end: Callable[[ProbePlan, ProbeResult], None] | None = None


@dataclasses.dataclass
class StudyOutcome:
    """How a ``run`` ended."""

    trained: int
    total_finished: int
    duplicates: int
    interrupted: bool
    stop_reason: str
    wall_seconds: float
    train_wall_seconds: float
    idle_seconds: float = 0.0
    storage_seconds: float = 0.0
    preflight_skipped: int = 0
    preflight_seconds_saved: float = 0.0
    replicates: int = 0
    accuracy_note: str | None = None
    unranked: tuple[str, ...] = ()
    probes: int = 0
    probe_seconds: float = 0.0
    probes_failed: int = 0
    failed: bool = False
    """Whether the worker stopped because its trainings kept failing (a setup to fix)."""


def failing_stop(failures: list[str], failed_count: int, *, n_trials: int) -> str | None:
    """Why a worker stops for its failed trainings, or None to go on.

    Args:
        failures: The error lines of the worker's last trainings, while they failed (in a row).
        failed_count: The worker's failed trainings in this run.
        n_trials: The study's ``n_trials``.
    """
    alike = failures[-_ALIKE_FAILURES_TO_STOP:]
    if len(alike) == _ALIKE_FAILURES_TO_STOP and len(set(alike)) == 1:
        # A broken setup (labels, data, model) fails every config the same way: the trainings left
        # would only repeat it.
        return (
            f"{len(alike)} trainings in a row failed alike ({alike[0]}): fix it and run again "
            "(failed trainings do not count toward n_trials)"
        )
    if failures and failed_count >= max(_ALIKE_FAILURES_TO_STOP, _FAILURES_PER_TRAINING * n_trials):
        return (
            f"{failed_count} trainings failed in this run (the last: {failures[-1]}): fix what fails "
            "and run again (failed trainings do not count toward n_trials)"
        )
    return None


def finished_count(study: optuna.Study) -> int:
    """Configurations done so far, counted as towards ``n_trials``."""
    return len(counts_toward_n_trials(study.get_trials(deepcopy=False)))


def run_worker(prepared: PreparedStudy, *, events: StudyEvents | None = None) -> StudyOutcome:
    """Trains until the study has ``n_trials`` trainings done, counting every worker's.

    Any number of workers may run this on one storage: a configuration another worker trains or
    trained is not trained again, a worker with nothing left to start waits for the others (one of
    their trials may yet need a retry), and the trials of workers that went silent are failed and
    retried (see :mod:`search.study._storage`).

    Args:
        prepared: The study from :func:`prepare_study`.
        events: Progress hooks.

    Returns:
        How this worker's run ended.
    """
    events = events or StudyEvents()
    spec, study, space, worker = prepared.spec, prepared.study, prepared.space, prepared.worker
    study.set_user_attr(StudyKeys.NOTES, list(space.notes))
    if space.notes and events.on_notes:
        events.on_notes(space.notes)
    requeue_interrupted(study)
    announce(study, worker, state="starting")
    clock = WorkerClock()
    trained = duplicates = skipped = 0
    failures: list[str] = []  # this worker's last trainings' errors, while they fail
    failed_here: set[int] = set()  # this worker's failed trainings in this run
    stopped_failing = False
    guard = ProposalGuard()
    refused = 0  # sampler proposals of measured configs in a row
    # The sampler draws from the study file's values (the same on every host); a value is capped to
    # this machine only when it trains (EffectiveSpace.here), so plans enqueue declared values.
    choices = {**space.choices, **sampled_choices(spec, space)}
    interrupted = False
    stop_reason = "n_trials reached"
    try:
        while True:
            fail_stale_trials(study)
            trials = study.get_trials(deepcopy=False)
            # One read of the probe store per iteration: pre-flight, the planner and the probe plan
            # all see the same probes.
            probed = prepared.probes.stored() if prepared.probes is not None else {}
            if prepared.preflight is not None:
                probed_rows = prepared.probes.rows(probed) if prepared.probes is not None else None
                prepared.preflight.load(trials, extra_rows=probed_rows)
            stored = read_trials(trials)
            done = [t for t in stored if t.counts_toward_n_trials]
            # What the planner judges configs on: a training cut by a time limit well below what the
            # study file now allows is left out (its config trains again), though it counts as done.
            retried = [t for t in stored if t.cut_short(retry_below_s(spec))]
            retried_numbers = {t.number for t in retried}
            judged = [t for t in stored if t.number not in retried_numbers]
            # A config that failed in this run is not trained again in this run (told the failure
            # instead), though failures count toward nothing: the next run, fixed, trains it.
            judged_done = [t for t in judged if t.counts_toward_n_trials or t.number in failed_here]
            finished = len(done) >= spec.n_trials
            # What each config's training may take, those not trained yet bounded from the trainings so
            # far: the timeout must not cut whatever the sampler proposes.
            durations = duration_bounds(stored, choices, prepared.roles, retried=retried)
            reason = (
                None
                if finished
                else timeout_reason(spec, elapsed=clock.elapsed(), trials=stored, durations=durations)
            )
            if reason is not None:
                stop_reason = reason
                break
            figures = planning_figures(prepared, trials, probed)
            state = TrainingState.of(
                judged, accuracy=spec.objectives[0], first_seed=spec.seed,
                rules=spec.noise_rules, roles=prepared.roles, systems_of=figures, memory=spec.memory_axis,
                failed_here=failed_here,
            )  # fmt: skip
            queued = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
            if prepared.probes is not None and not queued:
                probe_outcome, seconds = run_due_probe(
                    prepared, trials, probed, state.measured, elapsed_s=clock.elapsed(), events=events
                )
                clock.probing += seconds
                if probe_outcome == "interrupted":
                    interrupted, stop_reason = True, "interrupted"
                    break
                if probe_outcome == "probed":
                    continue
            if finished:
                break  # after the probes still due: the last trainings' front is probed too
            # One reading of the clock for every decision below (a probe may have run meanwhile).
            elapsed = clock.elapsed()
            reason = timeout_reason(spec, elapsed=elapsed, trials=stored, durations=durations)
            end_game = end_game_seconds(spec, elapsed=elapsed, trials=stored, durations=durations)
            if reason is not None or (queued and end_game is not None):
                # A queued retry's duration is not known to fit what is left: it waits for a resume.
                stop_reason = reason or TOO_LITTLE_TIME
                break
            plan = None if queued else state.plan(
                choices=choices, max_replicates=spec.max_replicates, fix_system=spec.sampler != "grid",
                explore_directly=refused >= _REFUSALS_BEFORE_DIRECT,
                trainings_left=trainings_left(
                    spec, elapsed=elapsed, trials=stored, running=state.running,
                    workers=1 + state.running,  # this one, and one per trial training elsewhere
                ),
                end_game_s=end_game, durations=durations,
            )  # fmt: skip
            if plan is None and end_game is not None:
                # Nothing this worker could start would end in time; what other workers train
                # ends (or is cut) by the timeout without it.
                stop_reason = TOO_LITTLE_TIME
                break
            if not queued and plan is None and not state.running:
                stop_reason = "nothing left to train can change the answer (every accuracy config tried)"
                break
            if (plan is None and not queued) or len(done) + state.running >= spec.n_trials:
                # What is left is being trained by other workers; wait, since one may yet fail.
                announce(study, worker, state="waiting")
                clock.idle(min(5.0, spec.heartbeat_interval))
                continue
            if plan is not None and (plan.fixed or plan.replicate):
                study.enqueue_trial(plan.fixed, user_attrs=plan_attrs(plan.seed, plan.reason))
            trial = None
            try:
                with contextlib.ExitStack() as beating:
                    with deferred_interrupts():  # the asked trial's proposal is stored whole, or not asked
                        trial = ask(study)
                        beating.enter_context(Heartbeat(
                            study, trial._trial_id, interval_s=spec.heartbeat_interval,
                            grace_s=spec.heartbeat_grace, worker=worker, trial=trial.number,
                        ))  # fmt: skip
                        proposal = _propose(prepared, trial, state, trials, judged_done)
                    if proposal.refused is not None:
                        if proposal.refused == "duplicate":
                            duplicates += 1
                            refused += 1
                        if guard.untrained():
                            stop_reason = _KEEPS_PROPOSING[proposal.refused]
                            break
                        if proposal.refused == "discarded":
                            clock.idle(guard.wait_s() * random.uniform(1.0, 1.5))
                        continue
                    guard.trained()
                    refused = 0
                    params, seed = proposal.params, proposal.seed
                    assert seed is not None  # only a refused proposal may have none
                    outcome, record, stop = train_proposal(prepared, trial, params, seed, clock, events)
                    skipped += outcome == "skipped"
                    trained += outcome == "trained"
                    if stop or outcome == "interrupted":
                        # An interrupted training is not one done (the next run trains its config
                        # again: requeued); a Ctrl-C while a result was stored stops after it.
                        interrupted, stop_reason = True, "interrupted"
                        break
                    if outcome == "skipped":
                        continue
                    if record.status == "failed":
                        failures.append(record.error_line() or "?")
                        failed_here.add(trial.number)
                    else:
                        failures = []
                    why_stop = failing_stop(failures, len(failed_here), n_trials=spec.n_trials)
                    if why_stop is not None:
                        stop_reason, stopped_failing = why_stop, True
                        break
            except optuna.exceptions.UpdateFinishedTrialError:
                # This worker was silent past the grace period (suspended, or cut off from the
                # storage) while proposing: another worker failed the proposal and retries it.
                continue
            except KeyboardInterrupt:
                if trial is not None:
                    settle_interrupted(study, trial)  # asked, and not trained yet
                raise
    except KeyboardInterrupt:
        # Ctrl-C between trials (while asking or waiting): nothing is running, so stop cleanly.
        interrupted, stop_reason = True, "interrupted"
    storage = storage_clock(study)
    times = {
        "wall": clock.elapsed(),
        "training": clock.training,
        "waiting": clock.idle_total,
        "storage": storage.seconds if storage else 0.0,
        "storage_calls": float(storage.calls) if storage else 0.0,
        "heartbeat_storage": storage.background_seconds if storage else 0.0,
    }
    announce(study, worker, state="interrupted" if interrupted else "stopped", times=times)
    stored = read_trials(study.get_trials(deepcopy=False))
    final = TrainingState.of(
        stored, accuracy=spec.objectives[0], first_seed=spec.seed,
        rules=spec.noise_rules, roles=prepared.roles, memory=spec.memory_axis,
    )  # fmt: skip
    return StudyOutcome(
        trained=trained,
        total_finished=finished_count(study),
        duplicates=duplicates,
        interrupted=interrupted,
        stop_reason=stop_reason,
        wall_seconds=clock.elapsed(),
        train_wall_seconds=clock.training,
        idle_seconds=clock.idle_total,
        storage_seconds=times["storage"],
        preflight_skipped=skipped,
        preflight_seconds_saved=prepared.preflight.seconds_saved(skipped) if prepared.preflight else 0.0,
        replicates=sum(c.replicates - 1 for c in final.estimates.configs.values()),
        accuracy_note=final.estimates.signal_text(),
        unranked=tuple(unranked_lines(stored, spec)),
        probes=prepared.probes.measured if prepared.probes else 0,
        probes_failed=len(prepared.probes.failed) if prepared.probes else 0,
        probe_seconds=prepared.probes.seconds if prepared.probes else 0.0,
        failed=stopped_failing,
    )


@dataclasses.dataclass(frozen=True)
class _Proposal:
    """A trial's sampled knobs and seed, or why it must not train (the study was told so)."""

    params: dict[str, Any]
    seed: int | None
    refused: Literal["duplicate", "discarded"] | None = None


def _propose(
    prepared: PreparedStudy,
    trial: optuna.Trial,
    state: TrainingState,
    trials: list[FrozenTrial],
    judged_done: list[StoredTrial],
) -> _Proposal:
    """Samples the trial's knobs, decides its seed and stores the proposal before it trains.

    A proposal that must not train is told at once: ``duplicate`` when the same training was done
    already (or, with no seed, a measured accuracy config whose rank another training cannot change),
    ``discarded`` when another worker trains it or the study has its ``n_trials`` meanwhile.
    """
    spec, study = prepared.spec, prepared.study
    params = suggest(trial, spec, prepared.space)
    seed = read_trial(study._storage.get_trial(trial._trial_id)).seed  # a queued plan's
    if seed is None:
        seed = state.judge(params, max_replicates=spec.max_replicates)
        if seed is not None and state.is_measured(params):
            write_planned(trial, SAMPLED_REPLICATE)  # the queue had asked for a new config
    if seed is not None:
        write_seed(trial, seed)
    write_proposal(trial, params, worker=prepared.worker.name, device=spec.device)
    earlier = state.earlier(params) if seed is None else trained_before(judged_done, params, seed, spec.seed)
    if earlier is not None:
        tell_duplicate(study, trial, trials[earlier])
        return _Proposal(params, seed, refused="duplicate")
    assert seed is not None  # no seed always has an earlier trial
    reason = discard_reason(
        study.get_trials(deepcopy=False), trial.number, replicate_identity(params, seed, prepared.roles),
        spec.n_trials, prepared.roles, cut_below_s=retry_below_s(spec),
    )  # fmt: skip
    if reason is not None:
        discard(study, trial, reason)
        return _Proposal(params, seed, refused="discarded")
    return _Proposal(params, seed)
