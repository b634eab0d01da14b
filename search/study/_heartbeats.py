"""Heartbeats for every storage a study may live in, and the retry of a trial whose worker fell silent.

A worker records a heartbeat for its running trial every ``heartbeat_interval`` seconds; any worker
that finds a running trial silent for longer than ``grace_period`` (its worker was killed, or its
machine lost) fails it, and the trial's configuration is retried once (:func:`retry_lost_trial`:
Optuna's retry, carrying only what trains the same configuration). Optuna's RDB storage has this
built in, though it never fails a trial whose first heartbeat was not recorded (a worker killed right
after asking): :class:`HeartbeatRDBStorage` counts such a trial's start as its heartbeat, as
:class:`HeartbeatJournalStorage` does for the journal storage, which has no heartbeats of its own
(there the heartbeat is a trial system attribute). Optuna's own ``fail_stale_trials`` works on both.
"""

from __future__ import annotations

import datetime
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend
from optuna.trial import FrozenTrial, TrialState

from search._pause import resumed_within
from search.study._stored import retry_of_lost

__all__ = [
    "HEARTBEAT_ATTR",
    "HeartbeatJournalStorage",
    "HeartbeatRDBStorage",
    "fail_stale_trials",
    "retry_lost_trial",
]

HEARTBEAT_ATTR = "memfront:heartbeat"


class HeartbeatRDBStorage(RDBStorage):
    """Optuna's RDB storage, whose stale check also fails a running trial that never recorded a
    heartbeat once its start is older than the grace period (Optuna's skips it, forever)."""

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        grace = self.grace_period if self.grace_period is not None else 2 * (self.heartbeat_interval or 1)
        # datetime_start is the asking worker's local time (Optuna's datetime.now()), as here.
        oldest = datetime.datetime.now() - datetime.timedelta(seconds=grace)
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start
            if trial._trial_id in stale or started is None or started > oldest:
                continue
            if self._get_trial_heartbeat(trial._trial_id) is None:
                stale.append(trial._trial_id)
        return [] if resumed_within(grace) else stale

    def _get_trial_heartbeat(self, trial_id: int) -> datetime.datetime | None:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            found = session.query(models.TrialHeartbeatModel).filter_by(trial_id=trial_id).one_or_none()
            return None if found is None else found.heartbeat


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """Optuna's journal file storage with the heartbeats its RDB storage has.

    Args:
        path: The journal file (created if missing).
        heartbeat_interval: Seconds between a running trial's heartbeats.
        grace_period: Seconds of silence after which a running trial is stale.
        stale_trial_callback: Called for each trial failed as stale.
    """

    def __init__(
        self,
        path: Path,
        *,
        heartbeat_interval: float,
        grace_period: float,
        stale_trial_callback: Callable[[optuna.Study, FrozenTrial], None] | None = None,
    ) -> None:
        super().__init__(JournalFileBackend(str(path)))
        self._heartbeat_interval = heartbeat_interval
        self._grace_period = grace_period
        self._stale_trial_callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            # Its start counts as a heartbeat: a worker may die before it records its first.
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            last = max(float(trial.system_attrs.get(HEARTBEAT_ATTR, 0.0)), started)
            if now - last > self._grace_period:
                stale.append(trial._trial_id)
        return [] if resumed_within(self._grace_period) else stale

    def get_heartbeat_interval(self) -> int | None:
        return int(self._heartbeat_interval)

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._stale_trial_callback


def retry_lost_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """The stale-trial callback: queues a lost trial's configuration once (see
    :func:`search.study._stored.retry_of_lost`)."""
    retry = retry_of_lost(trial)
    if retry is not None:
        study.add_trial(retry)


def fail_stale_trials(study: optuna.Study) -> None:
    """Fails the study's running trials whose worker went silent, and retries each once (Optuna's own).

    None for a grace period after this process was continued from a Ctrl-Z (the storages'
    ``_get_stale_trial_ids``, judged after the trials are read, so that a stop between the reads
    and the judgement counts too): the workers stopped with it (the other jobs of its ``run
    --jobs``) have not beaten again yet, and their trials would be failed and trained again.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
