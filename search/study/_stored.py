"""Everything memfront stores in an Optuna study, and the one way to read it back.

A trial of a memfront study is a plain Optuna trial: its knobs as parameters, its objective values,
the memory constraint (``Trial.set_constraint``) and these user attributes. No other module reads or
writes them by name: they use :func:`read_trial` (a typed :class:`StoredTrial`) and the ``write_*`` /
``mark_*`` functions here.

The trial's record (:class:`search.trial._record.TrialRecord`) is stored under ``record`` with a version
and a ``kind`` (``training`` today). Its bulky parts (the memory series and the log tail) are left
out of it when a place for files is given: they go to a JSON file beside the study instead
(:mod:`search.study._record_files`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, Literal

import optuna
from optuna.trial import FrozenTrial, TrialState

from search.study._record_files import RecordFiles
from search.trial._record import (
    MEMORY_CONSTRAINT,
    RecordStatus,
    TrialRecord,
    epochs_seconds,
    memory_violation,
    trial_constraints,
    validation_seconds,
)

__all__ = [
    "COUNTED_STATUSES",
    "FIGURES",
    "RECORD_VERSION",
    "Status",
    "StoredTrial",
    "StudyKeys",
    "counts_toward_n_trials",
    "mark_discarded",
    "mark_duplicate",
    "mark_interrupted",
    "mark_requeued",
    "plan_attrs",
    "read_trial",
    "read_trials",
    "retry_of_lost",
    "write_planned",
    "write_proposal",
    "write_result",
    "write_seed",
]

RECORD_VERSION = 2
"""Version 1 (memfront before 0.2) had no ``version`` and ``kind`` and kept the series inline."""

Status = Literal[RecordStatus, "lost", "duplicate"]
"""A trial's status as reported: the record's own, or ``lost`` (its worker died: failed by the
heartbeat check with no record), or ``duplicate`` (a repeated proposal, told the earlier result)."""

INFEASIBLE_STATUSES = ("memory_limit", "predicted")
COUNTED_STATUSES = ("ok", "memory_limit", "predicted", "timeout")
"""Statuses of trials that count toward ``n_trials``: a configuration trained to a verdict (a result,
over the limit, too slow) or skipped by pre-flight. A failed training is no verdict on its config (a
broken setup fails every config alike): it does not count, and the config may train again."""

FIGURES = ("map50", "map50_95", "fitness", "peak_host_bytes", "peak_gpu_bytes", "epoch_seconds")
"""The record's headline figures, also stored as attributes of their own for Optuna's tools."""

# Trial user attributes.
_RECORD = "record"
_STATUS = "status"
_CONFIG = "config"
_WORKER = "worker"
_DEVICE = "device"
_RETRY_OF = "retry_of"
_REQUEUE_OF = "requeue_of"
_REQUEUED = "requeued"
_DUPLICATE_OF = "duplicate_of"
_DISCARDED = "discarded"
_PREDICTED_PEAK = "predicted_peak_bytes"
_RECORD_FILE = "record_file"
_SEED = "seed"
_PLANNED = "planned"
# Optuna's own system attributes: the trial a retried one replaces, and the trials of its chain
# (RetryFailedTrialCallback's); the parameters a queued trial trains (Study.enqueue_trial's).
_FAILED_TRIAL = "failed_trial"
_RETRY_HISTORY = "retry_history"
_FIXED_PARAMS = "fixed_params"
# Statuses whose trials are told COMPLETE (search.study._tell): one stored FAIL was never told.
_TOLD_COMPLETE = ("ok", *INFEASIBLE_STATUSES)


class StudyKeys:
    """Study user attributes memfront writes."""

    OBJECTIVES = "objectives"
    FRAMEWORK = "framework"
    MEMORY_LIMIT = "memory_limit_bytes"
    # The framework's footprint as the last run measured it: what the memory model is anchored on
    # when reading the study (a read measures nothing).
    FOOTPRINT = "framework_footprint_bytes"
    NOTES = "notes"
    # What every training depends on besides its knobs (search.study._compatible.setup_of).
    SETUP = "setup"
    # Names the study's record files apart from another storage's study of the same file.
    RECORDS_TOKEN = "records_token"
    REQUEUED = "requeued"
    WORKER_PREFIX = "worker:"


@dataclasses.dataclass(frozen=True)
class StoredTrial:
    """A trial as memfront stored it, typed.

    Attributes:
        number: Optuna's trial number.
        state: Optuna's trial state.
        status: See :data:`Status`; None for a trial still running or waiting, or a discarded proposal.
        config: The five knobs as trained on the worker's machine (None until suggested).
        record: The stored record (without its bulky parts when they went to a file), or None.
        figures: The headline figures (:data:`FIGURES`), None where not measured.
        violation: Peak host bytes minus the limit (<= 0: it fitted), None when not evaluated.
        duplicate_of: The evaluated trial a repeated proposal was told the result of.
        discarded: Why a proposal was never trained (another worker had it), or None.
        worker: The worker that ran it.
        device: The device it ran on.
        retry_of: The lost trial whose configuration it retries.
        requeue_of: The interrupted trial whose configuration it trains again.
        requeued: Whether this interrupted trial's configuration was handed to the queue.
        predicted_peak_bytes: Pre-flight's prediction before it trained (or skipped).
        kind: What the trial measured: ``training`` (a short YOLO training).
        record_file: The file holding the record's bulky parts, if any.
        seed: The training's seed (studies before 0.3 trained every trial with the study's seed,
            which their records keep); None until decided.
    """

    number: int
    state: TrialState
    status: Status | None
    config: dict[str, Any] | None
    record: dict[str, Any] | None
    figures: dict[str, float | None]
    violation: float | None
    duplicate_of: int | None
    discarded: str | None
    worker: str | None
    device: str | None
    retry_of: int | None
    requeue_of: int | None
    requeued: bool
    predicted_peak_bytes: float | None
    kind: str
    record_file: str | None
    seed: int | None = None

    @property
    def proposal_only(self) -> bool:
        """A proposal never trained: a repeat of an evaluated configuration, or discarded."""
        return self.duplicate_of is not None or self.discarded is not None

    @property
    def counts_toward_n_trials(self) -> bool:
        """Whether this trial is one of the study's ``n_trials``: a configuration trained to a verdict
        (or skipped by pre-flight); never a repeat, a discarded proposal, a failed, interrupted or lost
        one (:data:`COUNTED_STATUSES`)."""
        return self.state.is_finished() and not self.proposal_only and self.status in COUNTED_STATUSES

    @property
    def time_limit_s(self) -> float | None:
        """The wall-clock limit the training ran under, from its record (None: none, or no record)."""
        value = ((self.record or {}).get("limits") or {}).get("time_limit_s")
        return None if value is None else float(value)

    def cut_short(self, below_s: float | None) -> bool:
        """Whether this training was cut by a time limit below ``below_s``
        (:func:`search.study._budget.retry_below_s`: the study file now allows enough more time;
        None: it sets no limit). Such a training says nothing of its config, which may train again:
        a user who raised ``trial_time_limit`` or ``timeout`` and runs the study again gets what they
        asked for. It still counts toward ``n_trials`` (it took its time)."""
        limit = self.time_limit_s
        return self.status == "timeout" and limit is not None and (below_s is None or limit < below_s)

    @property
    def feasible(self) -> bool:
        """Evaluated, and within the memory limit."""
        return self.state == TrialState.COMPLETE and (self.violation is None or self.violation <= 0)

    @property
    def wall_seconds(self) -> float | None:
        """The trial's wall time, from its record."""
        value = (self.record or {}).get("wall_seconds")
        return None if value is None else float(value)

    @property
    def epochs_seconds(self) -> float | None:
        """The seconds of its epochs together (training and validation passes), from its record; the
        rest of its wall time is start-up and wind-down. None when its record holds no epoch."""
        return epochs_seconds((self.record or {}).get("epochs") or [])

    @property
    def validation_seconds(self) -> float | None:
        """The median seconds of its epochs' validation passes, from its record (None: no epoch ended)."""
        return validation_seconds((self.record or {}).get("epochs") or [])

    def full_record(self, files: RecordFiles | None = None) -> dict[str, Any] | None:
        """The record with its bulky parts put back from their file (when it can be read)."""
        return None if self.record is None else RecordFiles.restore(self.record, self.record_file, files)


def read_trial(trial: FrozenTrial) -> StoredTrial:
    """The typed view of one stored trial (records of every version load)."""
    attrs = trial.user_attrs
    record = attrs.get(_RECORD)
    status = attrs.get(_STATUS)
    if status is None and trial.state.is_finished() and _DISCARDED not in attrs:
        # Failed with no record: its worker died, and the heartbeat check failed it.
        status = "duplicate" if _DUPLICATE_OF in attrs else "lost"
    elif trial.state == TrialState.FAIL and status in _TOLD_COMPLETE and _DUPLICATE_OF not in attrs:
        # Its result was written (its constraint with it) but never told: the heartbeat check failed
        # the trial in between (its worker died, or fell silent past the grace period) and retries
        # its configuration. Without a constraint, memfront before 2026-12-07 told it FAIL itself: a
        # training that ended without an objective's figure.
        status = "lost" if memory_violation(trial) is not None else "failed"
    retry_of = attrs.get(_RETRY_OF, trial.system_attrs.get(_FAILED_TRIAL))
    return StoredTrial(
        number=trial.number,
        state=trial.state,
        status=status,
        config=attrs.get(_CONFIG),
        record=record,
        figures={name: attrs.get(name) for name in FIGURES},
        violation=memory_violation(trial),
        duplicate_of=attrs.get(_DUPLICATE_OF),
        discarded=attrs.get(_DISCARDED),
        worker=attrs.get(_WORKER),
        device=attrs.get(_DEVICE),
        retry_of=retry_of,
        requeue_of=attrs.get(_REQUEUE_OF),
        requeued=bool(attrs.get(_REQUEUED)),
        predicted_peak_bytes=attrs.get(_PREDICTED_PEAK),
        kind=str((record or {}).get("kind", "training")),
        record_file=attrs.get(_RECORD_FILE),
        seed=_seed(attrs, record),
    )


def _seed(attrs: dict[str, Any], record: dict[str, Any] | None) -> int | None:
    if _SEED in attrs:
        return int(attrs[_SEED])
    requested = (record or {}).get("requested") or {}
    return None if requested.get("seed") is None else int(requested["seed"])


def read_trials(trials: Iterable[FrozenTrial]) -> list[StoredTrial]:
    """The typed view of stored trials, in the order given."""
    return [read_trial(t) for t in trials]


def counts_toward_n_trials(trials: Iterable[FrozenTrial]) -> list[StoredTrial]:
    """The trials that are among the study's ``n_trials`` (see :attr:`StoredTrial.counts_toward_n_trials`)."""
    return [t for t in read_trials(trials) if t.counts_toward_n_trials]


def write_proposal(trial: optuna.Trial, config: dict[str, Any], *, worker: str, device: str) -> StoredTrial:
    """Stores what a worker is about to train, and who; returns the trial as now stored."""
    trial.set_user_attr(_CONFIG, config)
    trial.set_user_attr(_WORKER, worker)
    trial.set_user_attr(_DEVICE, device)
    frozen = trial.study._storage.get_trial(trial._trial_id)
    if _FAILED_TRIAL in frozen.system_attrs:
        trial.set_user_attr(_RETRY_OF, frozen.system_attrs[_FAILED_TRIAL])
    return read_trial(frozen)


def plan_attrs(seed: int | None, reason: str) -> dict[str, Any]:
    """User attributes of a queued trial: the seed it trains with (if decided), and why it was planned."""
    return {_PLANNED: reason, **({} if seed is None else {_SEED: seed})}


def write_planned(trial: optuna.Trial, reason: str) -> None:
    """Replaces why the trial was planned, when what it trains turned out otherwise."""
    trial.set_user_attr(_PLANNED, reason)


def write_seed(trial: optuna.Trial, seed: int) -> None:
    """Stores the seed the trial trains with (before it trains, so that other workers see it)."""
    trial.set_user_attr(_SEED, seed)


def write_fixed_knob(trial: optuna.Trial, name: str, value: Any) -> None:
    """Notes a knob with a single choice on this machine (not sampled: no Optuna parameter)."""
    trial.set_user_attr(f"fixed_{name}", value)


def write_capped_workers(trial: optuna.Trial, *, sampled: int, cpus: int) -> None:
    """Notes that the sampled workers were capped to this machine's CPU count."""
    trial.set_user_attr("capped_workers", {"sampled": sampled, "cpus": cpus})


def write_prediction(trial: optuna.Trial, peak_bytes: float) -> None:
    """Stores pre-flight's prediction of the trial's peak."""
    trial.set_user_attr(_PREDICTED_PEAK, peak_bytes)


def write_result(
    trial: optuna.Trial,
    record: TrialRecord,
    *,
    knobs: Iterable[str],
    violation: float | None,
    files: RecordFiles | None = None,
) -> None:
    """Stores a trial's record, status, knobs, figures and memory constraint (before it is told).

    Args:
        trial: The running trial.
        record: What the trial produced.
        knobs: The knob names to store as its configuration.
        violation: Peak host bytes minus the limit, for Optuna's constraint; None for a crash.
        files: Where the record's bulky parts go (else they stay in the record).
    """
    stored = record.to_dict()
    stored["version"], stored["kind"] = RECORD_VERSION, "training"
    if files is not None:
        trial.set_user_attr(_RECORD_FILE, files.write(trial.number, stored))
    trial.set_user_attr(_RECORD, stored)
    trial.set_user_attr(_CONFIG, {k: record.requested[k] for k in knobs})
    for name in FIGURES:
        trial.set_user_attr(name, getattr(record, name))
    if violation is not None:
        trial.set_constraint(MEMORY_CONSTRAINT, violation)
    # The status last: it is what makes a trial count toward n_trials, and another worker may fail
    # this one (declared lost, its configuration retried) between any two of these writes.
    trial.set_user_attr(_STATUS, record.status)


def mark_duplicate(trial: optuna.Trial, earlier: FrozenTrial) -> None:
    """Marks a proposal that repeats an evaluated configuration, with that evaluation's figures."""
    trial.set_user_attr(_DUPLICATE_OF, earlier.number)
    for key in (_STATUS, "map50", "map50_95", "peak_host_bytes"):
        if key in earlier.user_attrs:
            trial.set_user_attr(key, earlier.user_attrs[key])
    for key, value in trial_constraints(earlier).items():
        trial.set_constraint(key, value)


def mark_discarded(trial: optuna.Trial, reason: str) -> None:
    """Marks a proposal that must not be trained (another worker trains it, or n_trials is reached)."""
    trial.set_user_attr(_DISCARDED, reason)


def mark_interrupted(trial: optuna.Trial) -> None:
    """Marks a trial stopped by Ctrl-C or by its worker's failure."""
    trial.set_user_attr(_STATUS, "interrupted")


def mark_requeued(trial: optuna.Trial) -> None:
    """Marks an interrupted trial whose configuration was handed to the queue."""
    trial.set_user_attr(_REQUEUED, True)


def requeue_attrs(trial_number: int, seed: int | None = None) -> dict[str, Any]:
    """User attributes of a queued trial that trains an interrupted trial's configuration again."""
    return {_REQUEUE_OF: trial_number, **({} if seed is None else {_SEED: seed})}


def carried_attrs(trial: FrozenTrial) -> dict[str, Any]:
    """User attributes a queued trial keeps when its proposal is discarded and queued again."""
    return {k: v for k, v in trial.user_attrs.items() if k in (_REQUEUE_OF, _RETRY_OF, _SEED)}


def retry_of_lost(trial: FrozenTrial) -> FrozenTrial | None:
    """The queued trial that trains a lost trial's configuration again, or None when it needs none.

    The heartbeat check fails a trial whose worker fell silent; this is what is queued in its place
    (:func:`search.study._storage.make_storage`'s stale-trial callback). Optuna's own retry copies
    every attribute, so a proposal's ``discarded`` or ``duplicate_of``, a written result and its
    constraint would come with it and the retry's own training would not count (or not be judged).
    Here the retry carries only what trains the same configuration: its parameters, seed, why it
    was planned, and the chain of retries. Only a lost trial is retried (status ``lost``: no result,
    or one never told); not a proposal never trained (discarded, or a repeat), an interrupted one
    (its worker queued it already, or the next run does), one whose crash or timeout was written
    (that is its result), one that never sampled its parameters, or a retry lost in turn.
    """
    history = list(trial.system_attrs.get(_RETRY_HISTORY, []))
    stored = read_trial(trial)
    # Requeued: its worker queued its configuration itself (Ctrl-C) before its status was written.
    if stored.status != "lost" or stored.requeued or not trial.params or history:
        return None
    system_attrs: dict[str, Any] = {
        _FAILED_TRIAL: trial.system_attrs.get(_FAILED_TRIAL, trial.number),
        _RETRY_HISTORY: [trial.number],
    }
    if _FIXED_PARAMS in trial.system_attrs:
        system_attrs[_FIXED_PARAMS] = trial.system_attrs[_FIXED_PARAMS]
    return optuna.trial.create_trial(
        state=TrialState.WAITING,
        params=trial.params,
        distributions=trial.distributions,
        user_attrs={k: v for k, v in trial.user_attrs.items() if k in (_REQUEUE_OF, _SEED, _PLANNED)},
        system_attrs=system_attrs,
    )


def is_queued_retry(trial: FrozenTrial) -> bool:
    """Whether the trial came from the queue to train a configuration again: a retry of a lost trial
    or an interrupted one's configuration (not a replicate or system setting the study planned,
    which the next plan decides afresh)."""
    return bool(trial.params) and (_FAILED_TRIAL in trial.system_attrs or _REQUEUE_OF in trial.user_attrs)
