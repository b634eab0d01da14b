"""What the search loop tells Optuna, on synthetic studies (no training)."""

from __future__ import annotations

import warnings

import optuna
import pytest

from search.study._discard import discard, discard_reason
from search.study._optimize import failing_stop
from search.study._space import effective_space, make_sampler
from search.study._spec import StudySpec
from search.study._stored import read_trial, write_proposal, write_seed
from search.study._tell import ProposalGuard
from search.study._tell import tell as _tell
from search.study._trainings import replicate_identity
from search.trial._record import MEMORY_CONSTRAINT, TrialRecord

from .synthetic import GIB, knobs, record, stored_trial

LIMIT = 2 * GIB


def _spec(objectives: list[str], device: str = "cpu", **extra: object) -> StudySpec:
    fields = {"name": "s", "data": "demo", "memory_limit": LIMIT, "objectives": objectives, "device": device}
    return StudySpec.model_validate({**fields, **extra})


def _told(
    spec: StudySpec, told: TrialRecord, earlier: tuple[optuna.trial.FrozenTrial, ...] = ()
) -> optuna.trial.FrozenTrial:
    """Tells a fresh study (holding ``earlier``) one trial's record as the search loop does."""
    study = optuna.create_study(directions=spec.directions)
    for trial in earlier:
        study.add_trial(trial)
    trial = study.ask()
    _tell(study, trial, told, spec)
    return study.trials[-1]


def test_a_feasible_trial_tells_its_figures_and_a_negative_constraint() -> None:
    spec = _spec(["map50_95", "peak_host", "epoch_seconds"])
    frozen = _told(spec, record(map50_95=0.31, peak=GIB, epoch_seconds=3.5))
    assert frozen.values == [0.31, float(GIB), 3.5]
    assert frozen.constraints == {MEMORY_CONSTRAINT: float(GIB - LIMIT)}


@pytest.mark.parametrize("status", ["memory_limit", "predicted"])
def test_an_infeasible_trial_tells_each_objective_in_its_own_unit(status: str) -> None:
    spec = _spec(["map50_95", "peak_host", "epoch_seconds"])
    slow = stored_trial(config=knobs(16), values=[0.3, float(GIB), 7.5], violation=-1.0, epoch_seconds=7.5)
    fast = stored_trial(config=knobs(4), values=[0.2, float(GIB), 2.0], violation=-1.0, epoch_seconds=2.0)
    over = record(status, map50_95=None, peak=LIMIT + GIB, epoch_seconds=None)
    frozen = _told(spec, over, (slow, fast))
    accuracy, peak, seconds = frozen.values
    assert accuracy == 0.0
    assert peak == float(LIMIT + GIB)
    # Not host bytes: seconds, the slowest epoch the study has seen (the trial finished none).
    assert seconds == 7.5
    assert frozen.constraints[MEMORY_CONSTRAINT] == float(GIB)


def test_an_infeasible_trial_with_an_epoch_tells_its_own_epoch_time() -> None:
    spec = _spec(["map50_95", "peak_host", "epoch_seconds"])
    frozen = _told(spec, record("memory_limit", map50_95=None, peak=LIMIT + 1, epoch_seconds=4.0))
    assert frozen.values[2] == 4.0 and frozen.values[1] == float(LIMIT + 1)


def test_a_gpu_objective_gets_gpu_bytes_not_host_bytes() -> None:
    spec = _spec(["map50_95", "peak_gpu"], device="0", gpu_memory_limit="8GiB")
    frozen = _told(spec, record("memory_limit", map50_95=None, peak=LIMIT + GIB, epoch_seconds=None))
    assert frozen.values == [0.0, float(8 * GIB)]


def test_a_cuda_oom_without_a_gpu_limit_tells_the_devices_memory_not_zero() -> None:
    # Stand-in figures of a GPU trial (no GPU here): the device's total memory, no peak measured.
    spec = _spec(["map50_95", "peak_gpu"], device="0")
    oom = record("memory_limit", map50_95=None, peak=GIB, epoch_seconds=None)
    oom.gpu = {"cuda": True, "total_bytes": 80 * GIB}
    frozen = _told(spec, oom)
    assert frozen.values == [0.0, float(80 * GIB)]


def test_a_crashed_trial_is_failed_and_tells_nothing() -> None:
    frozen = _told(_spec(["map50_95", "peak_host"]), record("failed", map50_95=None, peak=None))
    assert frozen.state == optuna.trial.TrialState.FAIL and frozen.values is None


def test_a_training_ok_without_an_objectives_figure_is_stored_as_failed_saying_which() -> None:
    # A GPU study whose training measured no GPU peak: not a result, and never "ok" on a FAIL trial
    # (which reads as a result that was never told).
    frozen = _told(_spec(["map50_95", "peak_gpu"], device="0"), record(map50_95=0.3))
    stored = read_trial(frozen)
    assert frozen.state == optuna.trial.TrialState.FAIL and stored.status == "failed"
    assert stored.record is not None and "without a finite peak_gpu" in stored.record["error"]
    # A figure that is not a number is none either (Optuna would fail the trial on it by itself).
    frozen = _told(_spec(["map50_95", "peak_host"]), record(map50_95=float("nan")))
    assert read_trial(frozen).status == "failed" and not read_trial(frozen).counts_toward_n_trials


def _failed_before_the_tell(study: optuna.Study, trial: optuna.Trial) -> None:
    """Makes the study's next tell find the trial failed: the heartbeat check of another worker fails
    it between this worker's writes and its tell."""
    real_tell = study.tell

    def failed_meanwhile(*args: object, **kwargs: object) -> object:
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
        return real_tell(*args, **kwargs)  # type: ignore[arg-type]

    study.tell = failed_meanwhile  # type: ignore[method-assign]


def test_a_result_told_after_another_worker_failed_the_trial_is_refused_as_finished() -> None:
    spec = _spec(["map50_95", "peak_host"])
    study = optuna.create_study(directions=spec.directions)
    trial = study.ask()
    _failed_before_the_tell(study, trial)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        _tell(study, trial, record(), spec)
    assert read_trial(study.trials[0]).status == "lost"  # the retry trains it again


def test_a_discard_after_another_worker_failed_the_proposal_is_refused_as_finished() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    trial = study.ask()
    _failed_before_the_tell(study, trial)
    # The worker loop goes on to its next proposal on this error (a plain ValueError crashed it).
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        discard(study, trial, "trial 7 trains the same replicate")


def test_a_trial_asked_and_not_trained_when_its_worker_stops_is_closed_and_queued_again() -> None:
    from search.study._train import requeue, settle_interrupted

    study = optuna.create_study(directions=_spec(["map50_95", "peak_host"]).directions)
    proposed, bare, told = study.ask(), study.ask(), study.ask()
    write_seed(proposed, 3)
    write_proposal(proposed, knobs(8, 96, "ram"), worker="w", device="cpu")
    study.tell(told, [0.3, float(GIB)])
    settle_interrupted(study, proposed)
    settle_interrupted(study, bare)  # stopped before its proposal was stored: nothing to queue
    settle_interrupted(study, told)  # told already: left as it is
    first, second, third, queued = study.get_trials(deepcopy=False)
    assert (first.state, read_trial(first).status) == (optuna.trial.TrialState.FAIL, "interrupted")
    assert (second.state, read_trial(second).status) == (optuna.trial.TrialState.FAIL, "interrupted")
    assert third.state == optuna.trial.TrialState.COMPLETE and "status" not in third.user_attrs
    # Queued whole for the next worker: the same knobs and seed, as a requeue of the first.
    assert queued.state == optuna.trial.TrialState.WAITING
    assert queued.system_attrs["fixed_params"] == knobs(8, 96, "ram")
    assert (queued.user_attrs["requeue_of"], queued.user_attrs["seed"]) == (first.number, 3)
    # Interrupted while its requeued result was being told: queued once, not twice.
    cut = study.ask()
    write_seed(cut, 4)
    write_proposal(cut, knobs(16, 96), worker="w", device="cpu")
    requeue(study, cut, knobs(16, 96), 4)
    settle_interrupted(study, cut)
    again = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("requeue_of") == cut.number]
    assert len(again) == 1 and read_trial(study.trials[cut.number]).status == "interrupted"


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random", "grid"])
def test_samplers_use_optunas_current_constraint_api(sampler: str) -> None:
    spec = _spec(["map50_95", "peak_host"], sampler=sampler)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna 5 deprecates constraints_func with a FutureWarning
        made = make_sampler(spec, effective_space(spec), 0)
    if sampler == "tpe":
        # Parallel workers: running trials count as poor results, so each worker proposes another config.
        assert made._constant_liar is True


def test_the_guard_waits_longer_for_each_untrained_proposal_and_stops_at_its_limit() -> None:
    guard = ProposalGuard(limit=4, max_wait_s=1.0)
    assert [guard.untrained() for _ in range(3)] == [False, False, False]
    assert guard.wait_s() == pytest.approx(0.8)
    guard.trained()
    assert guard.consecutive == 0 and not guard.untrained() and guard.wait_s() == pytest.approx(0.2)
    assert [guard.untrained() for _ in range(3)] == [False, False, True]
    assert ProposalGuard(limit=100, max_wait_s=1.0).wait_s() <= 1.0


def _asked(study: optuna.Study, config: dict[str, object]) -> optuna.Trial:
    trial = study.ask()
    write_proposal(trial, config, worker=f"host:{trial.number}", device="cpu")
    return trial


def test_two_workers_proposing_one_replicate_train_it_once() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    first, second = _asked(study, knobs(8)), _asked(study, knobs(8))
    trials = study.get_trials(deepcopy=False)
    key = replicate_identity(knobs(8), None)
    # Each sees the other; the later one drops its proposal (so does the first, conservatively).
    assert (
        discard_reason(trials, second.number, key, n_trials=10)
        == f"trial {first.number} trains the same replicate"
    )
    other = _asked(study, knobs(16))
    assert (
        discard_reason(
            study.get_trials(deepcopy=False), other.number, replicate_identity(knobs(16), None), n_trials=10
        )
        is None
    )


def test_a_replicate_another_worker_finished_since_the_proposal_was_judged_is_not_trained() -> None:
    # Worker A's training of (8, seed 0) ends between worker B's read of the study, on which B
    # judged its proposal new, and B's check after storing it: B must see it ended, not only running.
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(stored_trial(config=knobs(8), values=[0.2, float(GIB)], violation=-1.0, seed=0))
    proposal = _asked(study, knobs(8, cache="disk"))  # the same random stream: the cache changes nothing
    proposal.set_user_attr("seed", 0)
    trials = study.get_trials(deepcopy=False)
    identity = replicate_identity(knobs(8, cache="disk"), 0)
    reason = discard_reason(trials, proposal.number, identity, n_trials=10)
    assert reason == "trial 0 trained the same replicate while this one was proposed"
    # Another seed of the same config is a replicate of its own, and trains.
    assert discard_reason(trials, proposal.number, replicate_identity(knobs(8), 1), n_trials=10) is None


def test_workers_asking_at_once_for_the_last_trials_are_ranked_by_number() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.add_trial(stored_trial(config=knobs(4), values=[0.2, float(GIB)], violation=-1.0))
    early, late = _asked(study, knobs(8)), _asked(study, knobs(16))
    trials = study.get_trials(deepcopy=False)
    # One counted trial and n_trials 2: the lower-numbered proposal trains, the other is dropped.
    assert discard_reason(trials, early.number, replicate_identity(knobs(8), None), n_trials=2) is None
    assert "n_trials is reached" in str(
        discard_reason(trials, late.number, replicate_identity(knobs(16), None), n_trials=2)
    )


def test_a_worker_stops_on_alike_failures_or_on_as_many_failures_as_n_trials() -> None:
    # Failed trainings do not count toward n_trials, so these are what bound a run that keeps failing.
    assert failing_stop(["OSError: x", "OSError: x"], 2, n_trials=10) is None
    alike = failing_stop(["OSError: x"] * 3, 3, n_trials=10)
    assert alike is not None and alike.startswith("3 trainings in a row failed alike (OSError: x)")
    assert failing_stop(["KeyError: a", "OSError: b", "ValueError: c"], 9, n_trials=10) is None
    many = failing_stop(["ValueError: c"], 10, n_trials=10)
    assert many is not None and many.startswith("10 trainings failed in this run (the last: ValueError: c)")
    assert failing_stop(["ValueError: c"], 3, n_trials=1) is not None  # never fewer than the alike rule's 3
    assert failing_stop([], 10, n_trials=10) is None  # the last training did not fail
