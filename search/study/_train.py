"""One training of the search loop: pre-flight, the trial's own process, and what the study is told.

:func:`search.study._optimize.run_worker` decides what to train; :func:`train_proposal` trains it
(or skips it on pre-flight's prediction) and tells the study. A training stopped by Ctrl-C or by its
worker's failure is never left RUNNING: its configuration and seed are queued for the next worker
(:func:`requeue`), and a run that finds an interrupted trial not queued yet queues it
(:func:`requeue_interrupted`).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import optuna

from search._pause import clock
from search.study._interrupts import deferred_interrupts
from search.study._stored import (
    StudyKeys,
    mark_interrupted,
    mark_requeued,
    read_trial,
    read_trials,
    requeue_attrs,
    write_prediction,
)
from search.study._tell import tell
from search.study._workers import announce
from search.trial._config import TrialConfig, TrialLimits
from search.trial._record import TrialRecord
from search.trial._supervisor import run_trial

if TYPE_CHECKING:
    from search.study._optimize import StudyEvents
    from search.study._prepare import PreparedStudy

__all__ = [
    "TrainOutcome",
    "TrainResult",
    "WorkerClock",
    "requeue",
    "requeue_interrupted",
    "settle_interrupted",
    "train_proposal",
]

TrainOutcome = Literal["trained", "skipped", "interrupted"]
"""``skipped``: pre-flight predicted it over the limit; ``interrupted``: it trains again later."""


class TrainResult(NamedTuple):
    """What :func:`train_proposal` did, the record, and whether the worker must stop (a Ctrl-C came
    while the result was being stored: it is stored, and the worker stops after it)."""

    outcome: TrainOutcome
    record: TrialRecord
    stop: bool = False


class WorkerClock:
    """Where a worker's time goes: training, probing, waiting for other workers, and the rest.

    On :func:`search._pause.clock`: a study stopped by Ctrl-Z does not spend its timeout meanwhile.
    """

    def __init__(self) -> None:
        self.started = clock()
        self.training = 0.0
        self.probing = 0.0
        self.idle_total = 0.0

    def elapsed(self) -> float:
        """Seconds since the worker started."""
        return clock() - self.started

    def idle(self, seconds: float) -> None:
        """Waits, counting the time as idle."""
        time.sleep(seconds)
        self.idle_total += seconds


def train_proposal(
    prepared: PreparedStudy,
    trial: optuna.Trial,
    params: dict[str, Any],
    seed: int,
    clock: WorkerClock,
    events: StudyEvents,
) -> TrainResult:
    """Trains (or pre-flight skips) one configuration and tells the study.

    Args:
        prepared: The study.
        trial: The running trial, its proposal written.
        params: The knobs it trains with (the study file's values; capped to this machine by the
            trial itself).
        seed: The seed it trains with.
        clock: The worker's clock (its timeout bounds the training; the training's time is added).
        events: Progress hooks.

    Returns:
        What happened, the training's record (pre-flight's own for a skip), and whether the worker
        was interrupted while the result was stored.
    """
    spec, study, preflight = prepared.spec, prepared.study, prepared.preflight
    config = TrialConfig(
        data=prepared.data, framework=spec.framework, model=spec.model, hyp=prepared.hyp, epochs=spec.epochs,
        device=spec.device,
        seed=seed, train_images=spec.train_images, threads=prepared.threads, **params,
    )  # fmt: skip
    remaining = None if spec.timeout is None else max(1.0, spec.timeout - clock.elapsed())
    limits = TrialLimits(
        memory_limit_bytes=spec.memory_limit,
        gpu_memory_limit_bytes=spec.gpu_memory_limit,
        time_limit_s=min(filter(None, [spec.trial_time_limit, remaining]), default=None),
    )
    if preflight is not None:
        prediction = preflight.predict(params, train_images=spec.train_images)
        write_prediction(trial, prediction.total_bytes)
        if preflight.should_skip(prediction):
            record = preflight.skip_record(config, limits, prediction)
            note, stop = _tell_whole(prepared, trial, record)
            if events.on_trial_end:
                events.on_trial_end(trial.number, record, note)
            return TrainResult("skipped", record, stop)
    if events.on_trial_start:
        events.on_trial_start(trial.number, params)
    announce(study, prepared.worker, state="training", trial=trial.number)
    try:
        record = run_trial(config, limits=limits, on_progress=events.on_progress)
    except BaseException:
        settle_interrupted(study, trial)
        raise
    clock.training += record.wall_seconds
    requeued = (params, seed) if record.status == "interrupted" else None
    note, stop = _tell_whole(prepared, trial, record, requeued=requeued)
    if events.on_trial_end:
        events.on_trial_end(trial.number, record, note)
    return TrainResult("interrupted" if record.status == "interrupted" else "trained", record, stop)


def _tell_whole(
    prepared: PreparedStudy,
    trial: optuna.Trial,
    record: TrialRecord,
    *,
    requeued: tuple[dict[str, Any], int] | None = None,
) -> tuple[str | None, bool]:
    """Tells the study a result in hand, whole (its configuration queued again first, for an
    interrupted one): a Ctrl-C meanwhile lands after it.

    Returns:
        A note for the display (the result was not stored), and whether the worker was interrupted
        meanwhile (the trial is settled then, if the tell did not end).
    """
    try:
        with deferred_interrupts():
            if requeued is not None:
                requeue(prepared.study, trial, *requeued)
            tell(prepared.study, trial, record, prepared.spec, prepared.record_files)
    except optuna.exceptions.UpdateFinishedTrialError:
        return _DROPPED, False
    except KeyboardInterrupt as stop:
        settle_interrupted(prepared.study, trial)  # told already, unless a second Ctrl-C cut the tell
        dropped = isinstance(stop.__cause__, optuna.exceptions.UpdateFinishedTrialError)
        return (_DROPPED if dropped else None), True
    return None, False


# This worker was silent past the grace period (suspended, or cut off from the storage): another
# worker failed the trial and retries its configuration, so this result is dropped.
_DROPPED = "not stored: another worker declared this trial lost and retries it"


def settle_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Closes a trial whose worker is stopping before its result was told: marked ``interrupted``, its
    configuration and seed (where already stored) queued for the next worker, told FAIL.

    Never leaves a RUNNING trial behind: a resumed study would wait out the heartbeat grace period
    to fail it. A trial told already is left as it is. If the storage itself failed, the trial's
    heartbeats stop and other workers retry it.
    """
    with contextlib.suppress(Exception), deferred_interrupts():
        frozen = study._storage.get_trial(trial._trial_id)
        if frozen.state.is_finished():
            return
        stored = read_trial(frozen)
        mark_interrupted(trial)
        if stored.config is not None and stored.seed is not None and not stored.requeued:
            requeue(study, trial, stored.config, stored.seed)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def requeue(study: optuna.Study, trial: optuna.Trial, params: dict[str, Any], seed: int) -> None:
    """Hands an interrupted trial's configuration and seed to the next worker that asks."""
    mark_requeued(trial)
    study.enqueue_trial(params, user_attrs=requeue_attrs(trial.number, seed))


def requeue_interrupted(study: optuna.Study) -> None:
    """Enqueues the configuration of each interrupted trial not requeued yet (stores before 0.2 did not)."""
    requeued = set(study.user_attrs.get(StudyKeys.REQUEUED, []))
    for stored in read_trials(study.get_trials(deepcopy=False)):
        pending = not stored.requeued and stored.number not in requeued
        if stored.status == "interrupted" and pending and stored.config is not None:
            study.enqueue_trial(stored.config, user_attrs=requeue_attrs(stored.number, stored.seed))
            requeued.add(stored.number)
    study.set_user_attr(StudyKeys.REQUEUED, sorted(requeued))
