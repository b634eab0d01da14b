from __future__ import annotations

import os

import optuna

from search.study._space import KNOBS, KnobRoles, effective_space, leanest_accuracy, leanest_system, suggest
from search.study._spec import SearchSpace, StudySpec


def _spec(**space: object) -> StudySpec:
    return StudySpec.model_validate({"name": "s", "data": "demo", "memory_limit": "1GiB", "space": space})


def test_amp_is_fixed_off_on_cpu_and_said_once() -> None:
    space = effective_space(_spec(amp=[False, True]))
    assert space.choices["amp"] == [False]
    assert len([n for n in space.notes if "amp" in n]) == 1
    gpu = effective_space(
        StudySpec.model_validate(
            {
                "name": "s",
                "data": "demo",
                "memory_limit": "1GiB",
                "device": "0",
                "space": {"amp": [False, True]},
            }
        )
    )
    assert gpu.choices["amp"] == [False, True] and not gpu.notes


def test_workers_beyond_the_cpus_are_clipped() -> None:
    cpus = os.cpu_count() or 1
    space = effective_space(_spec(workers={"low": 0, "high": cpus + 6, "step": 2}))
    assert max(space.choices["workers"]) == cpus
    assert any("clipped" in note for note in space.notes)


def test_suggest_samples_within_the_space_and_fixes_single_choices() -> None:
    spec = _spec(batch=[4, 8], imgsz={"low": 64, "high": 128, "step": 32}, cache=["ram"])
    space = effective_space(spec)
    assert space.size == 2 * 3 and space.searched == ["batch", "imgsz"]
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        params = suggest(trial, spec, space)
        assert params["batch"] in (4, 8) and params["imgsz"] in (64, 96, 128) and params["cache"] == "ram"
        assert trial.user_attrs["fixed_cache"] == "ram"
        study.tell(trial, 0.0)


def test_workers_on_hosts_of_different_sizes_share_one_distribution(tmp_path: object) -> None:
    """A worker on a 2-CPU host joins a study started on an 8-CPU host: same distribution, capped."""
    spec = _spec(batch=[4, 8], workers={"low": 0, "high": 6})
    storage = f"sqlite:///{tmp_path}/hosts.db"
    big = optuna.create_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(4):
        trial = big.ask()
        suggest(trial, spec, effective_space(spec, cpus=8))
        big.tell(trial, 0.0)
    small_space = effective_space(spec, cpus=2)
    assert small_space.choices["workers"] == [0, 1, 2] and small_space.size == 2 * 3
    small = optuna.load_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    capped = 0
    for _ in range(20):
        trial = small.ask()
        params = suggest(trial, spec, small_space)  # Optuna raised here when the choices differed
        assert params["workers"] <= 2
        if "capped_workers" in trial.user_attrs:
            capped += 1
            assert trial.params["workers"] > 2 and trial.user_attrs["capped_workers"]["cpus"] == 2
        small.tell(trial, 0.0)
    assert capped > 0
    distributions = {str(t.distributions["workers"]) for t in small.trials}
    assert len(distributions) == 1


def test_the_leanest_config_splits_into_accuracy_and_system_knobs_by_the_frameworks_roles() -> None:
    choices = {
        "batch": [32, 8, 16],
        "imgsz": [160, 96],
        "cache": ["ram", "none"],
        "workers": [2, 0],
        "amp": [False, True],
    }
    assert leanest_accuracy(choices) == {"batch": 8, "imgsz": 96, "amp": True}
    assert leanest_system(choices) == {"cache": "none", "workers": 0}
    # ultralytics's cache changes the result: the leanest accuracy config has no cache.
    roles = KnobRoles.of("ultralytics")
    assert leanest_accuracy(choices, roles) == {"batch": 8, "imgsz": 96, "cache": "none", "amp": True}
    assert leanest_system(choices, roles) == {"workers": 0}
    # Without "none" among the cache choices, the first listed (as a new config's system setting).
    assert leanest_accuracy({**choices, "cache": ["disk", "ram"], "amp": [False]}, roles)["cache"] == "disk"


def test_a_study_whose_noise_cannot_reach_the_minimum_says_it_will_not_rank() -> None:
    def notes(**keys: object) -> list[str]:
        fields = {"name": "s", "data": "demo", "memory_limit": "1GiB", "space": {"batch": [8, 16]}, **keys}
        space = effective_space(StudySpec.model_validate(fields))
        return [n for n in space.notes if n.startswith("accuracy will not be ranked")]

    assert notes() == []  # 2 configs x 2 replicates beyond the first: 4 of the 3 needed
    (note,) = notes(max_replicates=2)  # 2 configs x 1: 2 of 3
    assert "reach 2 of the 3 degrees of freedom" in note and "accuracy_noise_prior" in note
    assert "(2 accuracy configs x (max_replicates 2 - 1))" in note
    (few,) = notes(n_trials=4)  # 2 of 4 trainings are first trainings: 2 of 3
    assert "(n_trials 4 leaves 2 trainings for replicates after the first two configs)" in few
    assert notes(max_replicates=2, accuracy_noise_prior={"sd": 0.05, "df": 1}) == []
    assert notes(max_replicates=2, accuracy_min_df=2) == []
    assert notes(max_replicates=1, space={"batch": [8]}) == []  # one config: nothing to rank anyway


def test_a_single_value_is_the_knobs_one_choice() -> None:
    space = SearchSpace.model_validate({"batch": 16, "imgsz": 640, "cache": "ram", "workers": 2, "amp": True})
    assert [space.choices(name) for name in KNOBS] == [[16], [640], ["ram"], [2], [True]]
