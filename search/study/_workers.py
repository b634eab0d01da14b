"""Several workers on one study: who they are, their heartbeats, and what the study looks like now.

A worker is one ``memfront run`` process. It announces itself in the study (a study user attribute
``worker:<host>:<pid>``, refreshed at each trial and while it waits), records a heartbeat for its
running trial from a background thread, and fails other workers' trials that went silent (see
:mod:`search.study._storage`). :func:`study_status` reads all of that back for ``memfront status``.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from search.study._heartbeats import fail_stale_trials
from search.study._stored import StudyKeys, counts_toward_n_trials, read_trials

if TYPE_CHECKING:
    from search.accuracy._noise import NoiseRules

__all__ = [
    "Heartbeat",
    "StudyStatus",
    "WorkerIdentity",
    "WorkerSeen",
    "announce",
    "study_status",
    "workers_seen",
]

_WORKER_PREFIX = StudyKeys.WORKER_PREFIX
# How often a waiting or training worker refreshes its announcement.
_ANNOUNCE_EVERY_S = 30.0


@dataclasses.dataclass(frozen=True)
class WorkerIdentity:
    """One worker process: its host, pid, device and (for ``--jobs``) its index on the host."""

    host: str
    pid: int
    device: str
    index: int | None = None
    started_at: float = dataclasses.field(default_factory=time.time)

    @classmethod
    def here(cls, *, device: str, index: int | None = None) -> WorkerIdentity:
        """This process."""
        return cls(host=socket.gethostname(), pid=os.getpid(), device=device, index=index)

    @property
    def name(self) -> str:
        """``host:pid``, unique among the study's workers."""
        return f"{self.host}:{self.pid}"


def announce(
    study: optuna.Study,
    worker: WorkerIdentity,
    *,
    state: str,
    trial: int | None = None,
    times: dict[str, float] | None = None,
) -> None:
    """Records that ``worker`` is alive and what it does (``training``, ``waiting``, ``stopped``...).

    ``times`` (seconds by activity) is stored with the final announcement, for benchmarks.
    """
    study.set_user_attr(
        _WORKER_PREFIX + worker.name,
        {
            "host": worker.host,
            "pid": worker.pid,
            "device": worker.device,
            "index": worker.index,
            "state": state,
            "trial": trial,
            "started_at": worker.started_at,
            "last_seen_at": time.time(),
            **({"times": times} if times else {}),
        },
    )


@dataclasses.dataclass(frozen=True)
class WorkerSeen:
    """A worker as the study last heard of it."""

    name: str
    host: str
    pid: int
    device: str
    state: str
    trial: int | None
    seconds_since_seen: float


def workers_seen(study: optuna.Study, *, within_s: float | None = None) -> list[WorkerSeen]:
    """The workers that announced themselves, most recent first; only those seen within ``within_s``."""
    now = time.time()
    seen = []
    for key, info in study.user_attrs.items():
        if not key.startswith(_WORKER_PREFIX) or not isinstance(info, dict):
            continue
        age = max(0.0, now - float(info.get("last_seen_at", 0.0)))
        if within_s is not None and age > within_s:
            continue
        seen.append(
            WorkerSeen(
                name=key[len(_WORKER_PREFIX) :],
                host=str(info.get("host")),
                pid=int(info.get("pid", 0)),
                device=str(info.get("device")),
                state=str(info.get("state")),
                trial=info.get("trial"),
                seconds_since_seen=age,
            )
        )
    return sorted(seen, key=lambda w: w.seconds_since_seen)


class Heartbeat:
    """Records heartbeats for one running trial from a background thread, while in the ``with`` block.

    The first heartbeat is recorded on entry (until then the trial's start counts as one).
    A heartbeat that fails (the storage is briefly unreachable) is skipped; if the silence outlasts
    the grace period, other workers fail the trial and its result is refused when told.

    Args:
        study: The study of the trial.
        trial_id: The storage's id of the trial (``trial._trial_id``).
        interval_s: Seconds between heartbeats.
        grace_s: The storage's grace period: every half of it, the thread also fails other workers'
            silent trials.
        worker: Also refreshes this worker's announcement every 30 s, so that a long trial's worker
            stays "seen recently".
        trial: The trial's number, for the announcement.
    """

    def __init__(
        self,
        study: optuna.Study,
        trial_id: int,
        *,
        interval_s: float,
        grace_s: float,
        worker: WorkerIdentity,
        trial: int,
    ) -> None:
        self._study = study
        self._trial_id = trial_id
        self._interval_s = interval_s
        self._grace_s = grace_s
        self._worker = worker
        self._trial = trial
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="memfront-heartbeat", daemon=True)
        self.failures = 0

    def __enter__(self) -> Heartbeat:
        self._record()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _record(self) -> None:
        storage = self._study._storage
        try:
            if hasattr(storage, "record_heartbeat"):
                storage.record_heartbeat(self._trial_id)
        except Exception:  # a transient storage error must not kill the trial it reports on
            self.failures += 1

    def _beat(self) -> None:
        announced = checked = time.monotonic()
        while not self._stop.wait(self._interval_s):
            self._record()
            now = time.monotonic()
            try:
                if now - announced >= _ANNOUNCE_EVERY_S:
                    announced = now
                    announce(self._study, self._worker, state="training", trial=self._trial)
                if now - checked >= self._grace_s / 2:
                    # Other workers' silent trials are failed (and retried) within the grace period,
                    # not only when this worker's trial ends, which may be hours away.
                    checked = now
                    fail_stale_trials(self._study)
            except Exception:
                self.failures += 1


@dataclasses.dataclass(frozen=True)
class RunningTrial:
    """A trial being trained now."""

    number: int
    worker: str | None
    config: dict[str, Any]
    seconds_running: float
    retry_of: int | None


@dataclasses.dataclass(frozen=True)
class StudyStatus:
    """What ``memfront status`` shows: counts, the front's size, workers and running trials."""

    name: str
    n_trials: int
    done: int
    counts: dict[str, int]
    front_size: int
    workers: list[WorkerSeen]
    running: list[RunningTrial]
    waiting: int


def study_status(
    study: optuna.Study,
    *,
    n_trials: int,
    recent_s: float,
    rules: NoiseRules,
    systems_of: Any = None,
    roles: Any = None,
) -> StudyStatus:
    """Summarises the study as stored now (reads only: a status check never changes a study).

    Args:
        study: The study.
        n_trials: The study's target (a total across workers).
        recent_s: Workers seen within this many seconds are listed.
        rules: The study file's ``accuracy_*`` keys (the front is the one ``report`` shows).
        systems_of: The whole-dataset figures ``report`` uses (:func:`search.results._load.whole_dataset`).
    """
    from search.results._frame import front, read_results, status_counts
    from search.study._space import DEFAULT_ROLES

    frame, _ = read_results(study, rules=rules, systems_of=systems_of, roles=roles or DEFAULT_ROLES)
    trials = study.get_trials(deepcopy=False)
    now = time.time()
    running = [
        RunningTrial(
            number=t.number,
            worker=stored.worker,
            config=stored.config or dict(t.params),
            seconds_running=now - t.datetime_start.timestamp() if t.datetime_start else 0.0,
            retry_of=stored.retry_of,
        )
        for t, stored in zip(trials, read_trials(trials), strict=True)
        if t.state == TrialState.RUNNING and not stored.proposal_only
    ]
    return StudyStatus(
        name=study.study_name,
        n_trials=n_trials,
        done=len(counts_toward_n_trials(trials)),
        counts=status_counts(frame),
        front_size=len(front(frame)),
        workers=workers_seen(study, within_s=recent_s),
        running=running,
        waiting=sum(t.state == TrialState.WAITING for t in trials),
    )
