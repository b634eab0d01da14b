"""What a trial stores in Optuna and how it reads back (synthetic studies, no training)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from search.study._record_files import RecordFiles
from search.study._space import KNOBS
from search.study._stored import (
    RECORD_VERSION,
    counts_toward_n_trials,
    mark_discarded,
    mark_duplicate,
    mark_interrupted,
    mark_requeued,
    plan_attrs,
    read_trial,
    retry_of_lost,
    write_proposal,
    write_result,
)
from search.trial._record import validation_seconds

from .synthetic import GIB, knobs, record, stored_trial


def _finished(study: optuna.Study, status: str, **figures: object) -> optuna.trial.FrozenTrial:
    trial = study.ask()
    write_proposal(trial, knobs(), worker="host:1", device="cpu")
    told = record(status, **figures)  # type: ignore[arg-type]
    write_result(trial, told, knobs=KNOBS, violation=-1.0 if status == "ok" else None)
    if status == "ok":
        study.tell(trial, [0.3, float(GIB)])
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return study.trials[-1]


def test_which_trials_count_toward_n_trials() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    _finished(study, "ok")
    _finished(study, "failed", map50_95=None, peak=None)
    _finished(study, "timeout", map50_95=None)
    interrupted = study.ask()
    mark_interrupted(interrupted)
    study.tell(interrupted, state=optuna.trial.TrialState.FAIL)
    lost = study.ask()  # failed by the heartbeat check: no record at all
    study.tell(lost, state=optuna.trial.TrialState.FAIL)
    repeat = study.ask()
    mark_duplicate(repeat, study.trials[0])
    study.tell(repeat, study.trials[0].values)
    dropped = study.ask()
    mark_discarded(dropped, "trial 0 trains the same configuration")
    study.tell(dropped, state=optuna.trial.TrialState.FAIL)
    running = study.ask()
    write_proposal(running, knobs(16), worker="host:2", device="cpu")
    study.add_trial(
        stored_trial(config=knobs(32), values=[0.0, 3 * GIB], violation=GIB, status="memory_limit")
    )
    counted = counts_toward_n_trials(study.trials)
    assert [t.status for t in counted] == ["ok", "timeout", "memory_limit"]  # a failure is no verdict
    statuses = [read_trial(t).status for t in study.trials]
    assert statuses == ["ok", "failed", "timeout", "interrupted", "lost", "ok", None, None, "memory_limit"]
    assert read_trial(study.trials[5]).duplicate_of == 0 and read_trial(study.trials[6]).proposal_only
    assert read_trial(study.trials[7]).worker == "host:2" and read_trial(study.trials[7]).config == knobs(16)


def test_the_record_is_versioned_and_its_bulky_parts_go_to_a_file(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    told = record()
    told.memory["series"] = {"t": [0.0, 1.0], "estimate": [1, 2]}
    told.log_tail = [f"line {i}" for i in range(40)]
    files = RecordFiles(folder=tmp_path / "demo.records")
    write_result(trial, told, knobs=KNOBS, violation=-1.0, files=files)
    study.tell(trial, [0.3, float(GIB)])
    stored = read_trial(study.trials[0])
    assert stored.record is not None and stored.record["version"] == RECORD_VERSION
    assert stored.kind == "training" and "series" not in stored.record["memory"]
    assert stored.record["log_tail"] == ["line 37", "line 38", "line 39"]
    full = stored.full_record(files)
    assert (
        full is not None and full["memory"]["series"] == told.memory["series"] and len(full["log_tail"]) == 40
    )
    assert stored.violation == -1.0 and stored.feasible and stored.figures["map50_95"] == pytest.approx(0.3)


def test_a_record_of_an_older_study_still_loads() -> None:
    # memfront before 0.2: no version, no kind, the series inline, the constraint a user attribute.
    legacy = stored_trial(config=knobs(), values=[0.0, 3.0 * GIB], violation=None, status="memory_limit")
    legacy.user_attrs["constraint"] = [float(GIB)]
    legacy.user_attrs["record"]["memory"]["series"] = {"t": [0.0]}
    stored = read_trial(legacy)
    assert stored.kind == "training" and stored.violation == float(GIB) and not stored.feasible
    assert stored.full_record() == legacy.user_attrs["record"]


def test_a_trainings_validation_pass_is_the_median_of_its_epochs() -> None:
    trial = stored_trial(config=knobs(8, 96), values=[0.3, GIB], violation=-GIB)
    assert read_trial(trial).validation_seconds is None  # no epoch ended
    trial.user_attrs["record"]["epochs"] = [
        {"seconds": 10.0, "train_seconds": 6.0},
        {"seconds": 12.0, "train_seconds": 7.0},
        {"seconds": 11.0, "train_seconds": 8.0},
        {"seconds": 9.0},  # an epoch of an older record, without its training part
    ]
    assert read_trial(trial).validation_seconds == 4.0
    assert validation_seconds(trial.user_attrs["record"]["epochs"]) == 4.0  # a TrialRecord's, too


def _lost(study: optuna.Study, write: str) -> optuna.trial.FrozenTrial:
    """A trial the heartbeat check failed after its worker wrote ``write`` (as the check does it)."""
    study.enqueue_trial({"batch": 8, "imgsz": 96}, user_attrs=plan_attrs(3, "replicate of the best"))
    trial = study.ask()
    trial.suggest_categorical("batch", [4, 8, 16, 32])
    trial.suggest_int("imgsz", 64, 640, step=32)
    write_proposal(trial, knobs(), worker="host:1", device="cpu")
    if write == "result":
        write_result(trial, record(), knobs=KNOBS, violation=-1.0)  # the tell never came
    elif write == "discarded":
        mark_discarded(trial, "trial 7 trains the same replicate")
    elif write == "duplicate":
        mark_duplicate(trial, study.trials[0])
    elif write == "interrupted":
        mark_interrupted(trial)
    elif write == "requeued":  # Ctrl-C: its worker queued the config, its status not yet written
        mark_requeued(trial)
    elif write == "failed":
        write_result(trial, record("failed", map50_95=None), knobs=KNOBS, violation=None)
    study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    return study._storage.get_trial(trial._trial_id)


def test_a_result_written_but_never_told_is_lost_and_its_retry_carries_only_the_config() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    lost = _lost(study, "result")
    stored = read_trial(lost)
    assert stored.status == "lost" and not stored.counts_toward_n_trials
    retry = retry_of_lost(lost)
    assert retry is not None and retry.state == optuna.trial.TrialState.WAITING
    assert retry.params == lost.params and retry.distributions == lost.distributions
    # Its seed and why it was planned, not the lost trial's result, status or constraint.
    assert retry.user_attrs == {"seed": 3, "planned": "replicate of the best"}
    assert retry.system_attrs["failed_trial"] == lost.number and not retry.constraints
    study.add_trial(retry)
    again = study.ask()  # another worker trains it: a retry, with the same knobs
    assert again.params == lost.params and read_trial(study.trials[-1]).retry_of == lost.number
    study._storage.set_trial_state_values(again._trial_id, optuna.trial.TrialState.FAIL)
    assert retry_of_lost(study._storage.get_trial(again._trial_id)) is None  # lost twice: no third try


@pytest.mark.parametrize("write", ["discarded", "duplicate", "interrupted", "requeued", "failed"])
def test_only_a_lost_training_is_retried(write: str) -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(stored_trial(config=knobs(), values=[0.3, GIB], violation=-GIB))
    assert retry_of_lost(_lost(study, write)) is None


def test_an_ok_record_told_fail_by_an_older_memfront_reads_as_failed() -> None:
    # Before 2026-12-07 a training without an objective's figure was told FAIL with its status ok
    # and no constraint; a failed training, it does not count toward n_trials.
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    write_result(trial, record(map50_95=None), knobs=KNOBS, violation=None)
    study.tell(trial, state=optuna.trial.TrialState.FAIL)
    stored = read_trial(study.trials[0])
    assert stored.status == "failed" and not stored.counts_toward_n_trials
