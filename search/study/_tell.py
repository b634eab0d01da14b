"""What the study is told of each proposal: a trained result, an infeasible one, a repeat.

Infeasible is not failed: a trial that crossed its memory limit is COMPLETE with a positive
constraint violation (``peak - limit``), so that Optuna's constrained samplers learn to avoid that
region; crashed and timed-out trials are FAIL (samplers ignore those). A proposal that repeats a
measured training is told that training's result again, and the guard bounds how many come in a row.
"""

from __future__ import annotations

import dataclasses
import math

import optuna

from search.study._record_files import RecordFiles
from search.study._space import KNOBS
from search.study._spec import ACCURACY_OBJECTIVES, StudySpec
from search.study._stored import (
    INFEASIBLE_STATUSES,
    mark_duplicate,
    read_trials,
    write_result,
)
from search.trial._record import TrialRecord

__all__ = ["ProposalGuard", "infeasible_values", "objective_values", "tell", "tell_duplicate", "tell_running"]

_MAX_CONSECUTIVE_UNTRAINED = 30


class ProposalGuard:
    """Bounds the proposals a worker makes in a row without training any.

    A proposal is not trained when it repeats an evaluated configuration (told that result again)
    or when another worker is training it (discarded). Each one in a row makes the worker wait a
    little longer before it asks again (another worker's trial has to end before the sampler can
    learn anything new), and after ``limit`` in a row the worker stops.
    """

    def __init__(self, *, limit: int = _MAX_CONSECUTIVE_UNTRAINED, max_wait_s: float = 5.0) -> None:
        self.limit = limit
        self.max_wait_s = max_wait_s
        self.consecutive = 0

    def untrained(self) -> bool:
        """Counts a proposal that was not trained; True when the worker should stop."""
        self.consecutive += 1
        return self.consecutive >= self.limit

    def wait_s(self) -> float:
        """How long to wait before the next proposal after a discarded one: doubling from 0.2 s."""
        return min(self.max_wait_s, 0.2 * 2 ** (self.consecutive - 1))

    def trained(self) -> None:
        """A proposal was trained: the count starts again."""
        self.consecutive = 0


def objective_values(record: TrialRecord, objectives: list[str]) -> list[float] | None:
    """The trial's objective values in study order; None if any is missing."""
    figures = {
        "map50_95": record.map50_95,
        "map50": record.map50,
        "fitness": record.fitness,
        "peak_host": record.peak_host_bytes,
        "peak_gpu": record.peak_gpu_bytes,
        "epoch_seconds": record.epoch_seconds,
    }
    values = [figures[name] for name in objectives]
    return None if any(v is None for v in values) else [float(v) for v in values]  # type: ignore[arg-type]


def infeasible_values(
    record: TrialRecord, spec: StudySpec, trials: list[optuna.trial.FrozenTrial]
) -> list[float]:
    """What an infeasible trial (over the limit, or skipped by pre-flight) tells each objective.

    Optuna's constrained samplers rank infeasible trials by their violation alone, so these values
    only have to be honest, in each objective's own unit: accuracy 0 (the run was stopped, it has no
    result); host memory the peak measured (or predicted), at least the limit; GPU memory the peak
    measured, else the GPU limit, else the device's memory (a CUDA out-of-memory error with no limit
    used all of it: never the 0 that would read as the best); epoch time the trial's own median if
    an epoch ended, else the slowest epoch of the study's completed trials (else the trial's wall
    time), a pessimistic figure.
    """
    values = []
    for name in spec.objectives:
        if name in ACCURACY_OBJECTIVES:
            values.append(0.0)
        elif name == "peak_host":
            values.append(float(max(record.peak_host_bytes or 0, spec.memory_limit)))
        elif name == "peak_gpu":
            device_total = record.gpu.get("total_bytes") if record.gpu else None
            values.append(float(record.peak_gpu_bytes or spec.gpu_memory_limit or device_total or 0))
        else:
            seen = [
                float(t.figures["epoch_seconds"]) for t in read_trials(trials)
                if t.state == optuna.trial.TrialState.COMPLETE and t.figures["epoch_seconds"]
            ]  # fmt: skip
            values.append(float(record.epoch_seconds or max(seen, default=record.wall_seconds)))
    return values


def tell(
    study: optuna.Study,
    trial: optuna.Trial,
    record: TrialRecord,
    spec: StudySpec,
    files: RecordFiles | None = None,
) -> None:
    """Stores the trial's result and tells the study (COMPLETE, infeasible, or FAIL).

    A training that ended ``ok`` without a finite figure for one of the study's objectives is stored
    as ``failed``, saying which: a FAIL trial with status ``ok`` and a constraint reads as one whose
    result was written but never told.

    Raises:
        optuna.exceptions.UpdateFinishedTrialError: If another worker failed the trial meanwhile (this
            worker was silent past the grace period) and retries its configuration.
    """
    values = objective_values(record, spec.objectives)
    peak = record.peak_host_bytes
    if values is not None and not all(math.isfinite(value) for value in values):
        values = None  # Optuna would fail the trial itself, on a result it was told
    if record.status == "ok" and values is None:
        missing = [
            name for name in spec.objectives
            if not all(math.isfinite(value) for value in objective_values(record, [name]) or [math.nan])
        ]  # fmt: skip
        error = f"the training ended without a finite {' or '.join(missing)}, an objective of this study"
        error = "\n".join(filter(None, [record.error, error]))
        record = dataclasses.replace(record, status="failed", error=error)
    if record.status == "ok" and values is not None:
        write_result(
            trial, record, knobs=KNOBS, violation=float((peak or 0) - spec.memory_limit), files=files
        )
        tell_running(study, trial, values)
    elif record.status in INFEASIBLE_STATUSES:
        violation = max(1.0, float((peak or spec.memory_limit) - spec.memory_limit))
        write_result(trial, record, knobs=KNOBS, violation=violation, files=files)
        tell_running(study, trial, infeasible_values(record, spec, study.get_trials(deepcopy=False)))
    else:
        write_result(trial, record, knobs=KNOBS, violation=None, files=files)
        tell_running(study, trial, state=optuna.trial.TrialState.FAIL)


def tell_running(
    study: optuna.Study,
    trial: optuna.Trial,
    values: list[float] | None = None,
    state: optuna.trial.TrialState | None = None,
) -> None:
    """``study.tell``, raising Optuna's error for a finished trial when another worker failed it
    between this worker's last write and the tell (Optuna raises a plain ValueError then)."""
    try:
        study.tell(trial, values, state=state)
    except ValueError:
        if study._storage.get_trial(trial._trial_id).state.is_finished():
            raise optuna.exceptions.UpdateFinishedTrialError(
                f"trial {trial.number} was finished by another worker before it was told"
            ) from None
        raise


def tell_duplicate(study: optuna.Study, trial: optuna.Trial, earlier: optuna.trial.FrozenTrial) -> None:
    """Closes a proposal of an evaluated configuration with that evaluation, so the sampler learns."""
    mark_duplicate(trial, earlier)
    complete = earlier.state == optuna.trial.TrialState.COMPLETE
    tell_running(study, trial, earlier.values if complete else None, state=earlier.state)
