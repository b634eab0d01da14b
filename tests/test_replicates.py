"""What a study trains next (search.study._replicates), on synthetic trainings."""

from __future__ import annotations

from search.accuracy import Training, estimate_accuracy
from search.accuracy._estimates import measured_systems
from search.study._replicates import Running, plan_next, replicate_candidates
from search.study._trainings import TrainingState, judge_proposal

from .synthetic import GIB, knobs

CHOICES = {
    "batch": [8, 16],
    "imgsz": [96, 128, 160],
    "cache": ["none", "ram", "disk"],
    "workers": [0, 1],
    "amp": [False],
}


def _t(number: int, batch: int, imgsz: int, seed: int, accuracy: float, **system: object) -> Training:
    config = knobs(batch, imgsz, **system)  # type: ignore[arg-type]
    return Training(
        number=number, config=config, seed=seed, accuracy=accuracy, peak_host_bytes=(1 + imgsz / 1000) * GIB
    )


ALL_CONFIGS = [(b, i) for b in (8, 16) for i in (96, 128, 160)]


def _attempts(trainings: list[Training], running: list[Running] | None = None) -> list[Running]:
    return [Running(config=t.config, seed=t.seed, feasible=True) for t in trainings] + (running or [])


def _plan(
    trainings: list[Training], running: list[Running] | None = None, explored: bool = False, **kw: object
):  # type: ignore[no-untyped-def]
    attempts = _attempts(trainings, running)
    if explored:  # every other config went over the limit at the leanest setting
        measured = {(t.config["batch"], t.config["imgsz"]) for t in trainings}
        attempts += [
            Running(config=knobs(b, i), seed=0, feasible=False)
            for b, i in ALL_CONFIGS
            if (b, i) not in measured
        ]
    return plan_next(estimate_accuracy(trainings), attempts, choices=CHOICES, first_seed=0, **kw)  # type: ignore[arg-type]


def test_a_new_study_explores_first_then_replicates_the_best_to_measure_the_noise() -> None:
    first = _plan([])
    # The leanest accuracy config first, named whole: on the front whatever its accuracy.
    assert first is not None and not first.replicate
    assert first.fixed == {"batch": 8, "imgsz": 96, "cache": "none", "workers": 0}
    assert "leanest" in first.reason
    one = [_t(0, 8, 96, 0, 0.2)]
    second = _plan(one)
    # A new config at the leanest setting: its front point is where it needs least memory.
    assert second is not None and not second.replicate and second.fixed == {"cache": "none", "workers": 0}
    two = [*one, _t(1, 8, 128, 0, 0.3, cache="ram")]
    third = _plan(two)
    assert third is not None and third.replicate and third.seed == 1
    assert (third.fixed["batch"], third.fixed["imgsz"]) == (8, 128)
    assert "noise is not measured" in third.reason


def test_a_config_that_scored_zero_at_two_seeds_is_not_replicated_for_the_noise() -> None:
    # Zero at two seeds: a third zero adds nothing to the noise (replicates at a bound are left out).
    stuck = [_t(0, 8, 96, 0, 0.0), _t(1, 8, 96, 1, 0.0), _t(2, 8, 128, 0, 0.0)]
    candidates = replicate_candidates(estimate_accuracy(stuck), max_replicates=4)
    assert candidates == [(8, 128, False)]
    learned = [*stuck, _t(3, 8, 128, 1, 0.0), _t(4, 16, 160, 0, 0.05)]
    assert replicate_candidates(estimate_accuracy(learned), max_replicates=4) == [(16, 160, False)]


def test_replicates_go_to_front_configs_within_noise_of_a_neighbour_never_to_a_beaten_one() -> None:
    trainings = [
        _t(0, 8, 96, 0, 0.10), _t(1, 8, 96, 1, 0.12),  # the leanest, below 8/128 beyond noise
        _t(2, 8, 128, 0, 0.30), _t(3, 8, 128, 1, 0.32),
        _t(4, 8, 160, 0, 0.31),  # within noise of 8/128, one replicate
        _t(5, 16, 160, 0, 0.05), _t(6, 16, 160, 1, 0.06),  # beaten beyond noise, more memory: never again
    ]  # fmt: skip
    estimates = estimate_accuracy(trainings)
    candidates = replicate_candidates(estimates, max_replicates=3)
    assert (16, 160, False) not in candidates
    assert candidates[0] == (8, 160, False)  # fewest replicates first
    assert (8, 96, False) not in candidates  # separated from its neighbour beyond noise
    # While new configs remain, at most about one training in three is a replicate: 3 of these 7 are.
    plan = _plan(trainings)
    assert plan is not None and not plan.replicate
    # Once the space is explored (the others were over the limit, say), the candidate is replicated,
    # with a seed its config has not used.
    plan = _plan(trainings, explored=True)
    assert plan is not None and plan.replicate and (plan.fixed["batch"], plan.fixed["imgsz"]) == (8, 160)
    assert plan.seed == 1


def test_the_last_trainings_confirm_a_pick_of_export_trained_once() -> None:
    trainings = [
        _t(0, 8, 96, 0, 0.30),  # the leanest, within noise of the best, trained once: export's pick
        _t(1, 8, 128, 0, 0.30), _t(2, 8, 128, 1, 0.32),
        _t(3, 16, 160, 0, 0.05), _t(4, 16, 160, 1, 0.06),
    ]  # fmt: skip
    # With trainings to spare, new configs come first (two of five trainings are replicates already).
    for left in (None, 5, 2):
        plan = _plan(trainings, trainings_left=left)
        assert plan is not None and not plan.replicate, left
    # The last training confirms the pick, rather than find a config it could not confirm.
    last = _plan(trainings, trainings_left=1)
    assert last is not None and last.replicate and (last.fixed["batch"], last.fixed["imgsz"]) == (8, 96)
    assert last.seed == 1 and "export" in last.reason
    # Not when another worker is replicating it already.
    running = [Running(config=knobs(8, 96), seed=1, feasible=None)]
    plan = _plan(trainings, running, trainings_left=1)
    assert plan is not None and not plan.replicate
    # Nor when a config is never trained twice.
    plan = _plan(trainings, trainings_left=1, max_replicates=1)
    assert plan is not None and not plan.replicate


def test_the_end_game_replicates_only_a_config_whose_own_training_would_end_in_time() -> None:
    trainings = [
        _t(0, 8, 96, 0, 0.30),  # export's pick, trained once, in 40 s
        _t(1, 8, 128, 0, 0.30), _t(2, 8, 128, 1, 0.32),  # 100 s
    ]  # fmt: skip
    durations = {(8, 96, False): 40.0, (8, 128, False): 100.0}
    # 60 s left: too little for a new config (counted at the slowest, 100 s); 8/96 confirms its pick,
    # at the system setting it was measured with (another may be slower).
    plan = _plan(trainings, trainings_left=1, end_game_s=60.0, durations=durations)
    assert plan is not None and plan.replicate and (plan.fixed["batch"], plan.fixed["imgsz"]) == (8, 96)
    assert (plan.fixed["cache"], plan.fixed["workers"]) == ("none", 0)
    # 40 s left: 8/96 with its margin would not end either, and nothing else may start.
    assert _plan(trainings, trainings_left=1, end_game_s=40.0, durations=durations) is None
    # A config whose duration is unknown never starts in the end game.
    assert _plan(trainings, trainings_left=1, end_game_s=60.0, durations={}) is None


def test_the_end_game_names_a_new_config_bounded_to_end_when_no_replicate_would() -> None:
    trainings = [_t(0, 8, 128, 0, 0.30), _t(1, 8, 128, 1, 0.32), _t(2, 16, 128, 0, 0.25)]
    # 90 s left: neither trained config's replicate (8/128: 100 s, 16/128: 80 s) would end with its
    # margin; 8/96 is bounded at 70 s (by 8/128's training; search.study._budget.duration_bounds).
    durations = {(8, 128, False): 100.0, (16, 128, False): 80.0, (8, 96, False): 70.0, (8, 160, False): 156.0}
    plan = _plan(trainings, trainings_left=1, end_game_s=90.0, durations=durations)
    assert plan is not None and not plan.replicate and plan.seed is None
    # The planner names it whole (the sampler could propose 8/160), at the leanest setting.
    assert plan.fixed == {"batch": 8, "imgsz": 96, "cache": "none", "workers": 0}
    assert "bounded to end" in plan.reason
    # 70 s left: no config's bound fits with its margin.
    assert _plan(trainings, trainings_left=1, end_game_s=70.0, durations=durations) is None


def test_a_replicate_takes_a_system_setting_its_config_was_not_measured_with() -> None:
    trainings = [_t(0, 8, 96, 0, 0.2), _t(1, 8, 128, 0, 0.3)]
    plan = _plan(trainings)
    assert plan is not None and plan.replicate
    assert (plan.fixed["cache"], plan.fixed["workers"]) != ("none", 0)


def test_a_config_being_replicated_by_another_worker_is_not_planned_twice() -> None:
    trainings = [_t(0, 8, 96, 0, 0.2), _t(1, 8, 128, 0, 0.3)]
    running = [Running(config=knobs(8, 128, "ram"), seed=1, feasible=None)]
    plan = _plan(trainings, running)
    assert plan is None or not plan.replicate or plan.fixed["imgsz"] != 128


def test_when_every_config_is_measured_and_ranked_nothing_is_left() -> None:
    trainings = []
    number = 0
    for batch in (8, 16):
        for index, imgsz in enumerate((96, 128, 160)):
            for seed in range(3):
                trainings.append(
                    _t(number, batch, imgsz, seed, 0.1 * index + 0.3 * (batch == 8) + 0.001 * seed)
                )
                number += 1
    assert _plan(trainings) is None


def test_a_sampled_repeat_of_a_measured_config_is_a_replicate_only_when_that_can_change_the_answer() -> None:
    trainings = [
        _t(0, 8, 128, 0, 0.30), _t(1, 8, 128, 1, 0.32),
        _t(2, 8, 160, 0, 0.31),
        _t(3, 16, 160, 0, 0.05), _t(4, 16, 160, 1, 0.06), _t(5, 16, 160, 2, 0.055),
    ]  # fmt: skip
    estimates = estimate_accuracy(trainings)
    assert estimates.noise.known
    assert (
        judge_proposal(knobs(8, 96), estimates, _attempts(trainings), first_seed=0) == 0
    )  # new: the study's seed
    assert judge_proposal(knobs(8, 160, "ram"), estimates, _attempts(trainings), first_seed=0) == 1
    assert judge_proposal(knobs(16, 160), estimates, _attempts(trainings), first_seed=0) is None
    assert (
        judge_proposal(knobs(8, 160), estimates, _attempts(trainings), first_seed=0, max_replicates=1) is None
    )


def test_a_replicate_never_returns_to_a_setting_where_its_config_went_over_the_limit() -> None:
    trainings = [_t(0, 8, 96, 0, 0.2), _t(1, 8, 128, 0, 0.3)]
    over = [
        Running(config=knobs(8, 128, cache, workers), seed=1, feasible=False)
        for cache in ("none", "ram", "disk")
        for workers in (0, 1)
        if (cache, workers) != ("none", 0)
    ]
    plan = plan_next(estimate_accuracy(trainings), _attempts(trainings) + over, choices=CHOICES, first_seed=0)
    # Every other setting failed for 8/128: the only one left is the one it fitted in, with a new seed.
    assert plan is not None and plan.replicate and (plan.fixed["cache"], plan.fixed["workers"]) == ("none", 0)
    assert plan.seed == 2


def test_a_config_that_only_went_over_the_limit_at_a_heavy_setting_is_not_done() -> None:
    trainings = [_t(n, b, i, 0, 0.1 * n) for n, (b, i) in enumerate(ALL_CONFIGS[:5])]
    heavy = [Running(config=knobs(16, 160, "ram", 1), seed=0, feasible=False)]
    plan = plan_next(
        estimate_accuracy(trainings), _attempts(trainings) + heavy, choices=CHOICES, first_seed=0
    )
    assert plan is not None  # 16/160 still deserves a try at the leanest setting
    at_leanest = [Running(config=knobs(16, 160), seed=0, feasible=False)]
    done = plan_next(
        estimate_accuracy(trainings), _attempts(trainings) + at_leanest, choices=CHOICES, first_seed=0
    )
    assert done is None or done.replicate


def test_when_the_sampler_keeps_repeating_a_new_config_is_planned_whole() -> None:
    trainings = [_t(0, 8, 96, 0, 0.2)]
    plan = _plan(trainings, explore_directly=True)
    assert plan is not None and not plan.replicate
    assert {"batch", "imgsz", "cache", "workers"} <= set(plan.fixed)
    assert (plan.fixed["batch"], plan.fixed["imgsz"]) != (8, 96)


def test_a_config_that_does_not_fit_the_whole_dataset_is_measured_not_new() -> None:
    trainings = [_t(0, 8, 96, 0, 0.2), _t(1, 8, 128, 0, 0.3)]
    measured = estimate_accuracy(trainings)
    # On the whole dataset (probes, the model's prediction) no setting of 8/128 fits the limit.
    whole = estimate_accuracy(
        trainings, systems_of=lambda key, group: () if key == (8, 128, False) else measured_systems(group)
    )
    assert (8, 128, False) not in whole.configs
    attempts = _attempts(trainings)
    # A sampled repeat of it at another setting is not trained again: it was measured on the subset.
    assert judge_proposal(knobs(8, 128, "ram"), whole, attempts, first_seed=0, measured=measured) is None
    assert judge_proposal(knobs(16, 96), whole, attempts, first_seed=0, measured=measured) == 0
    plan = plan_next(whole, attempts, choices=CHOICES, first_seed=0, trainings_left=1)
    assert plan is None or plan.fixed.get("imgsz") != 128 or not plan.replicate
    # The refused proposal is told the training that measured it.
    state = TrainingState(estimates=whole, attempts=attempts, running=0, first_seed=0, measured=measured)
    assert state.earlier(knobs(8, 128, "ram")) == 1


def test_the_leanest_accuracy_config_is_planned_until_it_is_started_anywhere() -> None:
    # A study resumed from trainings that never tried it: the next new config is the leanest, whole.
    trainings = [_t(0, 8, 128, 0, 0.3), _t(1, 16, 160, 0, 0.2), _t(2, 8, 128, 1, 0.31)]
    plan = _plan(trainings)
    assert plan is not None and not plan.replicate and plan.seed is None
    assert plan.fixed == {"batch": 8, "imgsz": 96, "cache": "none", "workers": 0}
    # Not while another worker trains it, nor once it went over the limit at its leanest setting
    # (no config would fit then): the sampler proposes the next new config.
    for attempt in (
        Running(config=knobs(8, 96), seed=0, feasible=None),
        Running(config=knobs(8, 96), seed=0, feasible=False),
    ):
        plan = _plan(trainings, [attempt])
        assert plan is not None and plan.fixed == {"cache": "none", "workers": 0}, attempt
    # The grid sampler keeps its own order.
    plan = _plan(trainings, fix_system=False)
    assert plan is not None and plan.fixed == {}


def test_the_leanest_accuracy_config_turns_amp_on_where_it_is_searched() -> None:
    gpu_choices = {**CHOICES, "amp": [False, True]}
    plan = plan_next(estimate_accuracy([]), [], choices=gpu_choices, first_seed=0)
    assert plan is not None
    assert plan.fixed == {"batch": 8, "imgsz": 96, "cache": "none", "workers": 0, "amp": True}


def test_until_the_noise_has_its_degrees_of_freedom_every_other_training_is_a_replicate() -> None:
    # 2 degrees of freedom from two close pairs (below the default minimum of 3): nothing ranks, and
    # replicates keep coming one training in two, to the config with the fewest first (the best of them).
    trainings = [
        _t(0, 8, 96, 0, 0.10), _t(1, 8, 96, 1, 0.11),
        _t(2, 8, 128, 0, 0.30), _t(3, 8, 128, 1, 0.31),
        _t(4, 8, 160, 0, 0.20),
        _t(5, 16, 96, 0, 0.25),
    ]  # fmt: skip
    estimates = estimate_accuracy(trainings)
    assert estimates.noise.measured and not estimates.noise.known and not estimates.signal
    assert replicate_candidates(estimates, max_replicates=3)[:2] == [(16, 96, False), (8, 160, False)]
    plan = _plan(trainings)  # 2 replicates in 6 trainings over 4 configs: one is due
    assert plan is not None and plan.replicate and (plan.fixed["batch"], plan.fixed["imgsz"]) == (16, 96)
    assert "2 of the 3 degrees of freedom" in plan.reason
    # Once known (here: the third degree), at most one in three: a new config comes first.
    known = [*trainings, _t(6, 16, 96, 1, 0.26)]
    assert estimate_accuracy(known).noise.known
    plan = _plan(known)
    assert plan is not None and not plan.replicate
    # One accuracy config: more degrees of freedom have nothing to rank.
    alone = estimate_accuracy([_t(0, 8, 96, 0, 0.10), _t(1, 8, 96, 1, 0.11)])
    assert replicate_candidates(alone, max_replicates=3) == []


def test_before_the_noise_is_known_a_new_config_comes_between_replicates_and_reasons_name_what_they_do() -> (
    None
):
    # 3 configs, 2 replicates (2 degrees of freedom, not known): the last training was a replicate,
    # so a new config is next; one in two, not every training.
    trainings = [
        _t(0, 8, 96, 0, 0.10), _t(1, 8, 96, 1, 0.11),
        _t(2, 8, 128, 0, 0.30), _t(3, 8, 128, 1, 0.31),
        _t(4, 8, 160, 0, 0.20),
    ]  # fmt: skip
    assert not estimate_accuracy(trainings).noise.known
    plan = _plan(trainings)
    assert plan is not None and not plan.replicate
    # Nothing measured yet and the best config in training elsewhere: the replicate goes to another
    # config, and its reason does not call it the best.
    two = [_t(0, 8, 96, 0, 0.10), _t(1, 8, 128, 0, 0.30)]
    busy = [Running(config=knobs(8, 128), seed=1, feasible=None)]
    plan = _plan(two, running=busy)
    assert plan is not None and plan.replicate and (plan.fixed["batch"], plan.fixed["imgsz"]) == (8, 96)
    assert plan.reason == "replicate: the accuracy noise is not measured yet"


def test_a_config_that_failed_in_this_run_is_not_planned_again_in_it_but_is_in_the_next() -> None:
    import optuna

    from search.accuracy import NoiseRules
    from search.study._stored import read_trials

    from .synthetic import stored_trial

    # The leanest config failed (a crash, no verdict on it); another config trained.
    frozen = [
        stored_trial(config=knobs(8, 96), values=None, violation=None, status="failed"),
        stored_trial(config=knobs(8, 128), values=[0.3, 1.1 * GIB], violation=-GIB),
    ]
    study = optuna.create_study(directions=["maximize", "minimize"])
    for trial in frozen:
        study.add_trial(trial)
    stored = read_trials(study.get_trials())
    assert not stored[0].counts_toward_n_trials

    def plan(failed_here: set[int]):  # type: ignore[no-untyped-def]
        state = TrainingState.of(
            stored, accuracy="map50_95", first_seed=0, rules=NoiseRules(), failed_here=failed_here
        )
        return state.plan(choices=CHOICES, max_replicates=3, fix_system=True, explore_directly=False)

    in_this_run = plan({0})
    assert in_this_run is not None and in_this_run.fixed == {
        "cache": "none",
        "workers": 0,
    }  # the sampler's turn
    next_run = plan(set())
    assert next_run is not None and next_run.fixed == {"batch": 8, "imgsz": 96, "cache": "none", "workers": 0}
