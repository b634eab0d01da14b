"""Proposals a worker must not train: the same training done before, or being done by another worker.

Several workers share one storage. A proposal is checked after its configuration and seed are stored
(:func:`discard_reason`), so that of two workers that proposed the same replicate at the same moment,
at least one sees the other; the one that must not train closes its trial (:func:`discard`), handing
a queued retry back to the queue.
"""

from __future__ import annotations

from typing import Any

import optuna

from search.study._space import DEFAULT_ROLES, KnobRoles
from search.study._stored import (
    StoredTrial,
    carried_attrs,
    counts_toward_n_trials,
    is_queued_retry,
    mark_discarded,
    read_trials,
)
from search.study._tell import tell_running
from search.study._trainings import replicate_identity, training_key

__all__ = ["discard", "discard_reason", "trained_before"]


def trained_before(
    done: list[StoredTrial], params: dict[str, Any], seed: int, default_seed: int
) -> int | None:
    """The counted trial that trained these knobs with this seed, if any."""
    key = training_key(params, seed)
    for trial in done:
        if (
            trial.config
            and training_key(trial.config, default_seed if trial.seed is None else trial.seed) == key
        ):
            return trial.number
    return None


def _running(trials: list[optuna.trial.FrozenTrial], roles: KnobRoles) -> dict[int, tuple[Any, ...] | None]:
    """The trainings in progress on any worker: number -> replicate identity (None until suggested)."""
    return {
        t.number: None if t.config is None else replicate_identity(t.config, t.seed, roles)
        for t in read_trials(trials)
        if t.state == optuna.trial.TrialState.RUNNING and not t.proposal_only
    }


def discard_reason(
    trials: list[optuna.trial.FrozenTrial],
    number: int,
    identity: tuple[Any, ...],
    n_trials: int,
    roles: KnobRoles = DEFAULT_ROLES,
    *,
    cut_below_s: float | None = None,
) -> str | None:
    """Why trial ``number``, just asked, must not be trained: workers asked at the same moment.

    Checked after this trial's configuration and seed are stored, so that of two workers that proposed
    the same replicate at once, at least one sees the other, running or ended: the proposal was
    judged on the trials as they were when the worker's iteration began, and another worker's
    training of the same replicate may have ended since (the next iteration judges afresh). Trial
    numbers rank the workers that asked at once for the last trials of ``n_trials``: the lowest
    numbers train. A training cut by a time limit below ``cut_below_s``
    (:func:`search.study._budget.retry_below_s`) trained nothing: its replicate may train again.
    """
    running = _running(trials, roles)
    for other, config in running.items():
        if other != number and config == identity:
            return f"trial {other} trains the same replicate"
    counted = counts_toward_n_trials(trials)
    for ended in counted:
        if ended.cut_short(cut_below_s):
            continue
        if ended.config is not None and replicate_identity(ended.config, ended.seed, roles) == identity:
            return f"trial {ended.number} trained the same replicate while this one was proposed"
    rank = sorted(running).index(number) if number in running else 0
    if len(counted) + rank >= n_trials:
        return "n_trials is reached by the trials already running"
    return None


def discard(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Closes a proposal that must not be trained; a queued one (a retry) goes back to the queue."""
    mark_discarded(trial, reason)
    frozen = study._storage.get_trial(trial._trial_id)
    if is_queued_retry(frozen):
        study.add_trial(
            optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING,
                params=frozen.params,
                distributions=frozen.distributions,
                user_attrs=carried_attrs(frozen),
                system_attrs={k: v for k, v in frozen.system_attrs.items() if not k.startswith("memfront:")},
            )
        )
    tell_running(study, trial, state=optuna.trial.TrialState.FAIL)
