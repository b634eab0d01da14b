"""Why configs are missing from the front (search.study._unranked), and the time-limit rule behind
its remedy (a training cut under a shorter limit than today's trains again), on synthetic trials."""

from __future__ import annotations

from typing import Any

import optuna

from search.study._budget import END_GAME_MARGIN, duration_bounds, retry_below_s
from search.study._discard import discard_reason
from search.study._spec import StudySpec
from search.study._stored import read_trials
from search.study._trainings import replicate_identity
from search.study._unranked import unranked_lines
from search.units import format_seconds

from .synthetic import GIB, knobs, stored_trial


def _spec(**extra: object) -> StudySpec:
    fields = {"name": "s", "data": "demo", "memory_limit": 2 * GIB, "epochs": 5, "n_trials": 12}
    return StudySpec.model_validate({**fields, **extra})


def _ended(config: dict[str, Any], status: str, *, limit_s: float | None = None, error: str | None = None,
           wall_s: float = 30.0) -> optuna.trial.FrozenTrial:  # fmt: skip
    """A training that ended without a result: ``timeout`` (cut at ``limit_s``), ``failed``,
    ``memory_limit`` or ``predicted``."""
    if status in ("memory_limit", "predicted"):
        trial = stored_trial(config=config, values=[0.0, 3 * GIB], violation=GIB, status=status)
    else:
        trial = stored_trial(config=config, values=None, violation=None, status=status)
    record = trial.user_attrs["record"]
    record["limits"] = {"time_limit_s": limit_s}
    record["error"] = error
    record["wall_seconds"] = wall_s
    return trial


def _ok(config: dict[str, Any]) -> optuna.trial.FrozenTrial:
    return stored_trial(config=config, values=[0.3, GIB], violation=-GIB)


def test_a_training_cut_well_below_what_the_study_file_now_allows_is_no_verdict() -> None:
    cut = read_trials([_ended(knobs(), "timeout", limit_s=60.0)])[0]
    assert _spec(trial_time_limit="1m").time_allowed_s == 60.0
    assert _spec(trial_time_limit="5m", timeout="2m").time_allowed_s == 120.0
    assert _spec().time_allowed_s is None

    def cut_short(**keys: object) -> bool:
        return cut.cut_short(retry_below_s(_spec(**keys)))

    assert not cut_short(trial_time_limit="1m")  # the same limit: a verdict
    assert cut_short(trial_time_limit="2m")  # raised since
    assert cut_short(timeout="12m")  # cut by what was left of a run's timeout
    assert cut_short()  # no limit now
    # Raised by less than the margin a training must fit with: no run would start it again.
    assert not cut_short(trial_time_limit=f"{60 * END_GAME_MARGIN - 1}s")
    assert cut_short(trial_time_limit=f"{60 * END_GAME_MARGIN + 1}s")
    # Exactly 15% more: 23 / 1.15 is 20.0 in floats, which a strict comparison would refuse.
    cut_at_20 = read_trials([_ended(knobs(), "timeout", limit_s=20.0)])[0]
    assert cut_at_20.cut_short(retry_below_s(_spec(trial_time_limit="23s")))
    # A run's whole timeout cut it (10 min of 10 min): the end game never starts it again.
    whole = read_trials([_ended(knobs(), "timeout", limit_s=599.0)])[0]
    assert not whole.cut_short(retry_below_s(_spec(timeout="10m")))
    failed = read_trials([_ended(knobs(), "failed", limit_s=60.0)])[0]
    assert not failed.cut_short(None)  # only a time limit's cut is undone by more time


def test_a_cut_config_that_trains_again_is_bounded_at_least_by_the_time_it_ran() -> None:
    choices = {"batch": [8], "imgsz": [96, 128], "cache": ["none"], "workers": [0], "amp": [False]}
    cut = read_trials([_ended(knobs(8, 128), "timeout", limit_s=100.0, wall_s=101.0)])
    trials = [*read_trials([_ok(knobs(8, 96))]), *cut]
    # Cut for good: its bound is the one from 8/96 (30 x 1.78 = 53 s), not the 101 s it ran, which
    # would start the end game early for a config that never trains again.
    assert duration_bounds(trials, choices)[(8, 128, False)] < 60.0
    # To train again: at least what it already ran.
    bounds = duration_bounds(trials, choices, retried=cut)
    assert bounds[(8, 96, False)] == 30.0 and bounds[(8, 128, False)] == 101.0
    assert duration_bounds(cut, choices, retried=cut) == {(8, 128, False): 101.0}


def test_the_replicate_of_a_training_cut_under_a_shorter_limit_is_not_discarded() -> None:
    cut = _ended(knobs(), "timeout", limit_s=60.0)
    cut.user_attrs["seed"] = 0
    identity = replicate_identity(knobs(), 0)
    asked = optuna.trial.create_trial(
        params={"batch": 8, "imgsz": 96},
        distributions=cut.distributions,
        state=optuna.trial.TrialState.RUNNING,
        user_attrs={"config": knobs(), "seed": 0},
    )
    asked.number = 1
    trials = [cut, asked]
    assert discard_reason(trials, 1, identity, 12, cut_below_s=60.0) is not None  # the same limit: trained
    assert discard_reason(trials, 1, identity, 12, cut_below_s=120.0) is None  # more time now: train it


def test_an_empty_front_names_each_cause_and_its_remedy() -> None:
    trials = read_trials([
        _ended(knobs(8, 96), "timeout", limit_s=60.0),
        _ended(knobs(16, 96), "memory_limit"),
        _ended(knobs(16, 128), "predicted"),
        _ended(knobs(8, 128), "failed", error="Traceback ...\nValueError: bad label"),
        _ended(knobs(8, 160), "failed", error="ValueError: bad label"),
    ])  # fmt: skip
    lines = unranked_lines(trials, _spec(trial_time_limit="1m"))
    assert lines[0] == "the front is empty: no training ended with a result"
    time, memory, failed = lines[1:]
    assert time.startswith(f"  1 training cut by a time limit; raise trial_time_limit ({format_seconds(60)})")
    assert "fewer epochs, a train_images subset, a smaller imgsz" in time
    assert memory.startswith("  2 trainings over the memory limit (2.00 GiB host; 1 predicted over it")
    assert "raise memory_limit under a new study name" in memory
    gpu = unranked_lines(trials, _spec(trial_time_limit="1m", gpu_memory_limit="8GiB"))[2]
    assert "2.00 GiB host, 8.00 GiB GPU" in gpu and "amp on for GPU memory" in gpu
    assert "raise memory_limit or gpu_memory_limit under a new study name" in gpu
    assert failed.startswith("  2 trainings failed (most often: ValueError: bad label): ")
    assert failed.endswith("`memfront report --all` lists each error")


def test_over_the_limit_at_the_spaces_leanest_config_asks_for_a_higher_limit_not_a_narrower_space() -> None:
    space = {"batch": [4, 8], "imgsz": [64], "cache": ["none", "ram"], "workers": [0, 1], "amp": [False]}
    leanest = _ended(knobs(4, 64), "memory_limit")  # measured 3 GiB (stored_trial's values)
    line = unranked_lines(read_trials([leanest, _ended(knobs(8, 64), "memory_limit")]), _spec(space=space))[1]
    assert (
        "the space's leanest config (batch 4, imgsz 64, cache none, workers 0, amp off) needs at least"
        in line
    )
    assert line.endswith(
        "raise memory_limit under a new study name (a study keeps the limit its trials were judged by)"
    )
    assert "narrow the space" not in line
    heavier = unranked_lines(read_trials([_ended(knobs(8, 64), "memory_limit")]), _spec(space=space))[1]
    assert "narrow the space (a smaller batch or imgsz" in heavier
    # Predicted over it (not measured), or a CUDA out-of-memory error (its host peak below the limit):
    # no measured need to quote.
    predicted = unranked_lines(read_trials([_ended(knobs(4, 64), "predicted")]), _spec(space=space))[1]
    assert "narrow the space" in predicted and "needs at least" not in predicted
    oom = stored_trial(config=knobs(4, 64), values=[0.0, GIB], violation=1.0, status="memory_limit",
                       peak_host_bytes=GIB)  # fmt: skip
    assert "needs at least" not in unranked_lines(read_trials([oom]), _spec(space=space))[1]


def test_the_remedy_for_a_cut_training_follows_the_study_file_as_it_is_now() -> None:
    trials = read_trials([_ended(knobs(), "timeout", limit_s=60.0)])
    one_epoch = unranked_lines(trials, _spec(trial_time_limit="1m", epochs=1, train_images=64))[1]
    assert "(fewer train_images, a smaller imgsz)" in one_epoch  # fewer than 1 epoch is no remedy
    assert "with a higher n_trials" not in one_epoch
    assert (
        "with a higher n_trials (all 1 are done)"
        in unranked_lines(trials, _spec(trial_time_limit="1m", n_trials=1))[1]
    )
    # The study's timeout was the limit (a training bounded to end ran past it), or the limit was raised
    # since: the next run trains it again by itself.
    for spec in (_spec(timeout="12m"), _spec(trial_time_limit="2m")):
        line = unranked_lines(trials, spec)[1]
        assert "each ran under a limit well below what the study file now allows" in line
        assert line.endswith("the next run trains it again")
    # Raising trial_time_limit alone goes no further than a run's timeout near it: both are named.
    both = unranked_lines(trials, _spec(trial_time_limit="1m", timeout="65s"))[1]
    assert f"raise trial_time_limit ({format_seconds(60)}) and with it timeout ({format_seconds(65)})" in both
    # Shorter trainings are not comparable with the study's: under a new name.
    assert both.endswith("a smaller imgsz) under a new study name")
    # A timeout far above the limit caps nothing: not named.
    assert "timeout" not in unranked_lines(trials, _spec(trial_time_limit="1m", timeout="8h"))[1]
    whole_timeout = read_trials([_ended(knobs(), "timeout", limit_s=720.0)])
    assert f"raise timeout ({format_seconds(720)})" in unranked_lines(whole_timeout, _spec(timeout="12m"))[1]


def test_a_front_with_points_names_only_the_configs_that_were_only_ever_cut() -> None:
    spec = _spec(trial_time_limit="1m")
    ranked = [_ok(knobs(8, 96)), _ended(knobs(16, 96), "memory_limit"), _ended(knobs(8, 160), "failed")]
    assert unranked_lines(read_trials(ranked), spec) == []
    # A cut replicate of a ranked config, or a cut at another system setting, leaves it on the front.
    ranked.append(_ended(knobs(8, 96, workers=1), "timeout", limit_s=60.0))
    assert unranked_lines(read_trials(ranked), spec) == []
    ranked += [
        _ended(knobs(8, 128), "timeout", limit_s=60.0),
        _ended(knobs(8, 128, cache="ram"), "timeout", limit_s=60.0),
    ]
    (line,) = unranked_lines(read_trials(ranked), spec)
    assert line.startswith(
        "not on the front: 1 accuracy config (batch, imgsz, amp) whose trainings were all cut"
    )
    assert f"raise trial_time_limit ({format_seconds(60)})" in line
