"""Where probes are kept: an Optuna study of their own, in the study's storage.

Every probe of a storage is a trial of the study ``memfront-probes``: its params are the five knobs,
its values ``(peak_host_bytes, projected_epoch_seconds)`` (both minimised), so Optuna's own tools
(``optuna trials``, the dashboard) show them. A probe over its memory limit is a FAIL trial with its
result attached. User attributes say what the measurement is valid for (:class:`ProbeKey`: the
dataset's files, the machine, the model, the hyperparameters, the device); a probe is reused by
every study and worker with the same key and never taken again.

Several workers share the store: a worker claims a probe with a RUNNING trial before running it and
refreshes the claim while it runs; a live claim of another worker means "being probed" (the lowest
trial number wins when two claim at once), and a claim not refreshed for ``stale_after_s`` is a
worker that died, and is failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution

from search.child.compat import allocator_environment
from search.data._dataset import DatasetSpec
from search.frameworks import DEFAULT_FRAMEWORK, get_framework
from search.probe._run import ProbeResult
from search.study._storage import quiet_optuna

__all__ = ["PROBE_STUDY", "ProbeKey", "ProbeStore", "knobs_key"]

PROBE_STUDY = "memfront-probes"
_KEY_ATTR = "memfront:probe_key"
_RESULT_ATTR = "memfront:probe"
_CLAIMED_ATTR = "memfront:claimed_at"
_WORKER_ATTR = "memfront:worker"
_DISCARDED_ATTR = "memfront:discarded"
# How a probe measures: a probe stored by another method (before two validation passes: 1; ended
# before its last checkpoint was saved: 2) is not this one's figure, so it is taken again.
_METHOD = 3
_KNOBS = ("batch", "imgsz", "cache", "workers", "amp")
_DISTRIBUTIONS = {
    "batch": IntDistribution(1, 1 << 20),
    "imgsz": IntDistribution(1, 1 << 20),
    "cache": CategoricalDistribution(("none", "ram", "disk")),
    "workers": IntDistribution(0, 1 << 12),
    "amp": CategoricalDistribution((False, True)),
}


def knobs_key(knobs: Mapping[str, Any]) -> tuple[Any, ...]:
    """The five knobs as a hashable key."""
    return tuple(knobs[k] for k in _KNOBS)


def _packages(framework: str) -> dict[str, str | None]:
    versions: dict[str, str | None] = {"torch": None, "yolov5": None}  # the keys of stored yolov5 probes
    versions.update({k: None if v == "none" else v for k, v in get_framework(framework).versions().items()})
    if framework != DEFAULT_FRAMEWORK:
        versions["framework"] = framework
    return versions


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbeKey:
    """What a probe's figures hold for: the same files, machine, model and run settings.

    Attributes:
        dataset: A digest of every train and val image's path (relative to their common folder) and
            size.
        machine: A digest of the host name, CPU count, total memory, the framework, the torch and
            framework versions, the allocator's settings (:func:`search.child.compat.allocator_environment`)
            and the probe's method.
        model: The model yaml or checkpoint (its file name: the same architecture costs the same).
        hyp: The hyperparameter yaml's file name, if any (augmentations cost memory).
        device: ``cpu`` or the CUDA device.
    """

    dataset: str
    machine: str
    model: str
    hyp: str | None
    device: str

    @classmethod
    def of(
        cls,
        dataset: DatasetSpec,
        *,
        model: str,
        hyp: str | None,
        device: str,
        framework: str = DEFAULT_FRAMEWORK,
    ) -> ProbeKey:
        """The key for probing ``dataset`` on this machine."""
        files = hashlib.sha256()
        # Paths relative to the images' common folder: a dataset moved or copied whole is the same.
        paths = sorted(dataset.all_images)
        root = Path(os.path.commonpath(paths)) if paths else Path()
        for path in paths:
            try:
                size = path.stat().st_size
            except OSError:
                size = -1
            files.update(f"{path.relative_to(root)}\0{size}\n".encode())
        import psutil

        machine = json.dumps(
            [
                platform.node(), os.cpu_count(), psutil.virtual_memory().total // 2**30,
                _packages(framework), allocator_environment(), _METHOD,
            ],
            sort_keys=True,
        )  # fmt: skip
        return cls(
            dataset=files.hexdigest()[:16],
            machine=hashlib.sha256(machine.encode()).hexdigest()[:16],
            model=os.path.basename(model),
            hyp=None if hyp is None else os.path.basename(hyp),
            device=device,
        )

    def text(self) -> str:
        """The key as stored (a JSON object)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


@dataclasses.dataclass(frozen=True)
class StoredProbe:
    """A probe as the store holds it: its trial number in ``memfront-probes`` and its result."""

    number: int
    result: ProbeResult
    limit_bytes: int | None

    def settles(self, limit_bytes: int) -> bool:
        """Whether this probe answers for a study under ``limit_bytes``: it ran to its end, or it went
        over a limit no lower than that one (a probe stopped under a lower limit says nothing)."""
        return self.result.ok or (self.limit_bytes or 0) >= limit_bytes


class ProbeStore:
    """The probes of one :class:`ProbeKey` in a storage.

    Args:
        storage: The Optuna storage (the study's).
        key: What the probes must hold for.
        stale_after_s: A claim older than this is a dead worker's.
        create: Add the probes' study to the storage if it is not there (else the store reads only,
            and holds nothing until a study has probed).
    """

    def __init__(
        self,
        *,
        storage: optuna.storages.BaseStorage,
        key: ProbeKey,
        stale_after_s: float = 600,
        create: bool = True,
    ) -> None:
        self.key = key
        self.stale_after_s = stale_after_s
        self.study: optuna.Study | None = None
        if create:
            with quiet_optuna():
                self.study = optuna.create_study(
                    study_name=PROBE_STUDY,
                    storage=storage,
                    directions=["minimize", "minimize"],
                    load_if_exists=True,
                )
        elif PROBE_STUDY in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
            self.study = optuna.load_study(study_name=PROBE_STUDY, storage=storage)
        self._key_text = key.text()

    @property
    def _study(self) -> optuna.Study:
        if self.study is None:
            raise RuntimeError("a read-only probe store cannot claim or store probes")
        return self.study

    def _mine(
        self, states: Iterable[optuna.trial.TrialState] | None = None
    ) -> list[optuna.trial.FrozenTrial]:
        if self.study is None:
            return []
        chosen = None if states is None else tuple(states)
        trials = self.study.get_trials(deepcopy=False, states=chosen)
        return [t for t in trials if t.user_attrs.get(_KEY_ATTR) == self._key_text]

    def probes(self) -> dict[tuple[Any, ...], StoredProbe]:
        """Every finished probe of this key (ok, or over its limit), by :func:`knobs_key`; the latest wins."""
        found: dict[tuple[Any, ...], StoredProbe] = {}
        finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
        for trial in sorted(self._mine(finished), key=lambda t: t.number):
            data = trial.user_attrs.get(_RESULT_ATTR)
            if not data or trial.user_attrs.get(_DISCARDED_ATTR):
                continue
            result = ProbeResult.from_dict(data)
            if result.status in ("ok", "memory_limit"):
                limit = (result.record.get("limits") or {}).get("memory_limit_bytes")
                found[knobs_key(result.knobs)] = StoredProbe(trial.number, result, limit)
        return found

    def probing(self) -> set[tuple[Any, ...]]:
        """The knobs other workers are probing now (live claims); stale claims are failed on the way."""
        now = time.time()
        live = set()
        for trial in self._mine([optuna.trial.TrialState.RUNNING]):
            if now - float(trial.user_attrs.get(_CLAIMED_ATTR, 0)) > self.stale_after_s:
                self._close(trial._trial_id, "claim went stale (its worker stopped)")
            else:
                live.add(knobs_key(trial.params))
        return live

    def claim(self, knobs: Mapping[str, Any], *, worker: str) -> int | None:
        """Claims the probe of ``knobs``; returns the claim's trial id, or None if another worker has it."""
        trial = optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING,
            params={k: knobs[k] for k in _KNOBS},
            distributions=_DISTRIBUTIONS,
            user_attrs={_KEY_ATTR: self._key_text, _CLAIMED_ATTR: time.time(), _WORKER_ATTR: worker},
        )
        trial_id = self._study._storage.create_new_trial(self._study._study_id, template_trial=trial)
        mine = self._study._storage.get_trial(trial_id).number
        wanted = knobs_key(knobs)
        rivals = [
            t.number for t in self._mine([optuna.trial.TrialState.RUNNING]) if knobs_key(t.params) == wanted
        ]
        if min(rivals, default=mine) < mine or wanted in self.probes():
            self._close(trial_id, "another worker claimed (or finished) this probe first")
            return None
        return trial_id

    def refresh(self, claim: int) -> None:
        """Marks a claim as live (a claim not refreshed for ``stale_after_s`` is a dead worker's)."""
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            self._study._storage.set_trial_user_attr(claim, _CLAIMED_ATTR, time.time())

    def store(self, claim: int, result: ProbeResult) -> bool:
        """Stores a claimed probe's result; False if another worker failed the claim meanwhile.

        A probe that failed or was interrupted is not stored: :meth:`release` frees its claim.
        """
        compact = result.to_dict()
        record = dict(compact["record"])
        record["memory"] = {k: v for k, v in (record.get("memory") or {}).items() if k != "series"}
        record.pop("epochs", None)
        compact["record"] = record
        storage = self._study._storage
        try:
            storage.set_trial_user_attr(claim, _RESULT_ATTR, compact)
            if result.ok and result.peak_host_bytes and result.projected_epoch_seconds:
                storage.set_trial_state_values(
                    claim,
                    optuna.trial.TrialState.COMPLETE,
                    [float(result.peak_host_bytes), float(result.projected_epoch_seconds)],
                )
            else:
                storage.set_trial_state_values(claim, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            return False  # declared stale by another worker, which probes it again
        return True

    def release(self, claim: int, reason: str) -> None:
        """Frees a claim without a result (the probe could not run)."""
        self._close(claim, reason)

    def _close(self, trial_id: int, reason: str) -> None:
        storage = self._study._storage
        try:
            storage.set_trial_user_attr(trial_id, _DISCARDED_ATTR, reason)
            storage.set_trial_state_values(trial_id, optuna.trial.TrialState.FAIL)
        except optuna.exceptions.UpdateFinishedTrialError:
            pass  # another worker closed it first
