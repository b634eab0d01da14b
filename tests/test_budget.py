"""What is left of a study for its workers (search.study._budget), on synthetic trials."""

from __future__ import annotations

from search.study._budget import (
    END_GAME_MARGIN,
    duration_bounds,
    end_game_seconds,
    known_durations,
    timeout_reason,
    trainings_left,
)
from search.study._spec import StudySpec
from search.study._stored import read_trials

from .synthetic import GIB, knobs, stored_trial


def _spec(**extra: object) -> StudySpec:
    fields = {"name": "s", "data": "demo", "memory_limit": 2 * GIB, "objectives": ["map50_95", "peak_host"]}
    return StudySpec.model_validate({**fields, **extra})


def _trials(*walls: float):  # type: ignore[no-untyped-def]
    trials = []
    for index, wall in enumerate(walls):
        trial = stored_trial(config=knobs(8, 96 + 32 * index), values=[0.3, GIB], violation=-GIB)
        trial.user_attrs["record"]["wall_seconds"] = wall
        trials.append(trial)
    return read_trials(trials)


def test_no_training_starts_that_the_study_timeout_would_cut() -> None:
    spec = _spec(timeout="10m")
    trials = _trials(60.0, 90.0)  # the slowest config: 1.5 times the other
    # A minute left: less than either config's training (with its margin).
    too_little = "too little of the study's timeout left for another trial"
    assert timeout_reason(spec, elapsed=540, trials=trials) == too_little
    assert timeout_reason(spec, elapsed=480, trials=trials) is None  # two minutes left
    assert timeout_reason(spec, elapsed=600, trials=trials) == "study timeout reached"
    assert timeout_reason(_spec(), elapsed=10**6, trials=trials) is None  # no timeout


def test_trainings_left_counts_n_trials_and_the_timeout_at_the_slowest_training() -> None:
    trials = _trials(30.0, 90.0)
    # No timeout: what n_trials leaves, less the trainings running elsewhere.
    assert trainings_left(_spec(n_trials=10), elapsed=0, trials=trials, running=0) == 8
    assert trainings_left(_spec(n_trials=10), elapsed=0, trials=trials, running=3) == 5
    # With a timeout: 300 s left at the slowest 90 s with its margin (103.5 s) is 2 trainings per
    # worker, whatever n_trials says.
    spec = _spec(n_trials=100, timeout="10m")
    assert trainings_left(spec, elapsed=300, trials=trials, running=0) == 2
    assert trainings_left(spec, elapsed=300, trials=trials, running=1, workers=2) == 4
    assert trainings_left(spec, elapsed=600 - 311, trials=trials, running=0) == 3
    # Nothing trained yet: the timeout cannot be counted in trainings; n_trials can.
    assert trainings_left(spec, elapsed=300, trials=[], running=0) == 100
    # Never below zero (more running than n_trials leaves, or the timeout passed).
    assert trainings_left(_spec(n_trials=2), elapsed=0, trials=trials, running=1) == 0
    assert trainings_left(spec, elapsed=700, trials=trials, running=0) == 0


def test_the_end_game_leaves_time_for_a_config_whose_own_training_is_known_to_end() -> None:
    spec = _spec(n_trials=100, timeout="10m")
    trials = _trials(30.0, 90.0)  # 8/96 takes 30 s, 8/128 90 s
    assert known_durations(trials) == {(8, 96, False): 30.0, (8, 128, False): 90.0}
    # A minute left: the slowest would not end, 8/96's replicate would (30 s x the margin).
    assert end_game_seconds(spec, elapsed=540, trials=trials) == 60.0
    assert timeout_reason(spec, elapsed=540, trials=trials) is None
    assert trainings_left(spec, elapsed=540, trials=trials, running=0) == 1  # the last one
    # 30 s left: not even 8/96 with its margin.
    assert timeout_reason(spec, elapsed=570, trials=trials) is not None
    # Two minutes left: no end game, every config may start.
    assert end_game_seconds(spec, elapsed=480, trials=trials) is None
    assert end_game_seconds(_spec(), elapsed=10**6, trials=trials) is None  # no timeout


DEMO_CHOICES = {"batch": [8, 16], "imgsz": [96, 128, 160], "cache": ["none"], "workers": [0], "amp": [False]}


def _demo_trials():  # type: ignore[no-untyped-def]
    """The demo's first command at 1a31d8e: wall seconds of its trainings before the cut one."""
    trials = []
    for batch, imgsz, wall in ((16, 128, 61.0), (8, 128, 75.0), (16, 160, 80.0), (16, 96, 50.0)):
        trial = stored_trial(config=knobs(batch, imgsz), values=[0.3, GIB], violation=-GIB)
        trial.user_attrs["record"]["wall_seconds"] = wall
        trials.append(trial)
    return read_trials(trials)


def test_a_config_not_trained_yet_is_bounded_by_each_training_scaled_by_what_it_costs_more() -> None:
    trials = _demo_trials()
    bounds = duration_bounds(trials, DEMO_CHOICES)
    # Trained configs: their slowest training.
    assert bounds[(16, 160, False)] == 80.0 and bounds[(8, 128, False)] == 75.0
    # 8/160: 8/128 x (160/128)^2 = 117 s is the tightest (16/160 x 16/8 = 160 s, ...).
    assert abs(bounds[(8, 160, False)] - 75.0 * (160 / 128) ** 2) < 1e-9
    # 8/96: 8/128's training bounds it (fewer pixels never take longer): 75 s, not 16/96 x 2 = 100 s.
    assert bounds[(8, 96, False)] == 75.0
    assert max(bounds.values()) == bounds[(8, 160, False)]  # what the end game counts the next training at
    # Only trainings at the setting a new config trains with (the leanest) bound it: workers may make
    # another several times faster (a 20 s training of 16/96 with a worker would bound 8/96 at 40 s).
    fast = stored_trial(config=knobs(16, 96, workers=1), values=[0.3, GIB], violation=-GIB)
    fast.user_attrs["record"]["wall_seconds"] = 20.0
    with_workers = [*trials, *read_trials([fast])]
    assert duration_bounds(with_workers, {**DEMO_CHOICES, "workers": [0, 1]})[(8, 96, False)] == 75.0
    # AMP on is bounded by AMP off, not the reverse; any other knob only by an equal value.
    amp_choices = {**DEMO_CHOICES, "amp": [False, True]}
    amp_bounds = duration_bounds(trials, amp_choices)
    assert amp_bounds[(16, 160, True)] == 80.0
    assert duration_bounds(trials, amp_choices)[(8, 160, True)] == bounds[(8, 160, False)]
    # Nothing trained: nothing is bounded; every config trained: their slowest trainings alone.
    assert duration_bounds([], DEMO_CHOICES) == {}
    assert duration_bounds(trials, {**DEMO_CHOICES, "batch": [16]}) == known_durations(trials)


def test_only_a_trainings_epochs_scale_its_start_up_and_wind_down_do_not() -> None:
    # Batch 8 / imgsz 128 in 64 s: 15 epochs, 53 s together, and 11 s of start-up and wind-down (the
    # demo's trainings show 9-12 s whatever the config). The demo's 8/160 then took 89 s (c147b92).
    trained = stored_trial(config=knobs(8, 128), values=[0.3, GIB], violation=-GIB)
    record = trained.user_attrs["record"]
    record["wall_seconds"] = 64.0
    record["epochs"] = [{"seconds": 53.0 / 15, "train_seconds": 3.0}] * 15
    bound = duration_bounds(read_trials([trained]), DEMO_CHOICES)[(8, 160, False)]
    assert abs(bound - (11.0 + 53.0 * (160 / 128) ** 2)) < 1e-9  # 94 s, not 64 x 1.56 = 100 s
    assert bound >= 89.0
    # Epochs that do not add up to the wall time (a record from elsewhere): the whole of it scales.
    record["epochs"] = [{"seconds": 70.0, "train_seconds": 60.0}]
    assert duration_bounds(read_trials([trained]), DEMO_CHOICES)[(8, 160, False)] == 64.0 * (160 / 128) ** 2


def test_the_end_game_begins_when_a_config_the_sampler_may_propose_would_not_end() -> None:
    # The demo's first command at 1a31d8e: batch 8 / imgsz 160 started with 82 s of 12 minutes left,
    # counted at the slowest training (80 s); it needed ~95 s and the timeout cut it at its last epoch.
    spec = _spec(n_trials=10, timeout="12m")
    trials = _demo_trials()
    elapsed = 720 - 82
    # The slowest training alone (80 s) would have ended in 82 s, not with its margin (92 s).
    assert end_game_seconds(spec, elapsed=elapsed, trials=trials) == 82.0
    assert end_game_seconds(spec, elapsed=720 - 93, trials=trials) is None
    # Bounded at 117 s, 8/160 would not end: the end game, where 16/96's replicate (50 s) still fits.
    durations = duration_bounds(trials, DEMO_CHOICES)
    assert end_game_seconds(spec, elapsed=elapsed, trials=trials, durations=durations) == 82.0
    assert timeout_reason(spec, elapsed=elapsed, trials=trials, durations=durations) is None
    # 55 s left: nothing trained fits with its margin, and neither does 8/96's bound (75 s).
    assert timeout_reason(spec, elapsed=720 - 55, trials=trials, durations=durations) is not None
    # 2 min 15 s left: 8/160's bound ends in them with its margin (135 s), no end game.
    assert END_GAME_MARGIN * max(durations.values()) <= 135
    assert end_game_seconds(spec, elapsed=720 - 135, trials=trials, durations=durations) is None
    assert end_game_seconds(spec, elapsed=600, trials=trials, durations=durations) == 120.0
