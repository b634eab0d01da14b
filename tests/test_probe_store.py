"""Probes in the study's storage, and the whole-dataset figures built from them (synthetic results)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest

from search.accuracy import Training, estimate_accuracy, noise_front
from search.cli._results import trained_elsewhere
from search.data._dataset import load_dataset
from search.probe import ProbeResult
from search.probe._store import PROBE_STUDY, ProbeKey, ProbeStore, StoredProbe, knobs_key
from search.probe._systems import SystemFigures
from search.results._command import export_yaml, source_text, train_options
from search.results._export import choice_lines, choose_config, spread_warning
from search.results._frame import FRAME_COLUMNS, apply_estimates
from search.study._probes import plan_probe
from search.study._spec import StudySpec

from .synthetic import GIB, knobs

LIMIT = 2 * GIB
SYSTEMS = {"cache": ["none", "ram", "disk"], "workers": [0, 2]}


def result(config: dict[str, Any], peak: float, *, seconds: float = 10.0, status: str = "ok") -> ProbeResult:
    """A probe's result as run_probe returns it (synthetic figures)."""
    return ProbeResult(
        knobs=dict(config), status=status, peak_host_bytes=int(peak * GIB), peak_gpu_bytes=None,
        peak_phase="training", images_per_second=100.0,
        projected_epoch_seconds=seconds if status == "ok" else None, projected_train_seconds=None,
        validation_seconds=None, seconds=12.0, train_images=2000,
        val_images=500, train={"batches": 10}, val={"batches": 3}, error=None if status == "ok" else "over",
        record={
            "requested": {**config, "train_images": None}, "used": {"train_images": 2000},
            "limits": {"memory_limit_bytes": LIMIT}, "memory": {"series": [1, 2]}, "epochs": [{}],
        },
    )  # fmt: skip


def stored(*results: ProbeResult) -> dict[tuple[Any, ...], StoredProbe]:
    return {knobs_key(r.knobs): StoredProbe(i, r, LIMIT) for i, r in enumerate(results)}


def _training(number: int, config: dict[str, Any], seed: int, accuracy: float, peak: float) -> Training:
    return Training(
        number=number,
        config=dict(config),
        seed=seed,
        accuracy=accuracy,
        peak_host_bytes=peak * GIB,
        epoch_seconds=2.0,
    )


@pytest.fixture
def store(tmp_path: Path, tiny_data: Path) -> ProbeStore:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'probes.db'}")
    key = ProbeKey.of(load_dataset(str(tiny_data)), model="yolov5n.yaml", hyp=None, device="cpu")
    return ProbeStore(storage=storage, key=key)


def test_a_stored_probe_is_an_optuna_trial_that_every_store_of_its_key_finds(store: ProbeStore) -> None:
    config = knobs(16, 128, "ram", 2)
    claim = store.claim(config, worker="a")
    assert claim is not None and knobs_key(config) in store.probing()
    store.store(claim, result(config, 1.5))
    found = store.probes()[knobs_key(config)].result
    assert found.ok and found.peak_host_bytes == int(1.5 * GIB) and "series" not in found.record["memory"]
    # Optuna's own view: a COMPLETE trial of memfront-probes with the knobs as params.
    study = optuna.load_study(study_name=PROBE_STUDY, storage=store.study._storage)  # type: ignore[union-attr]
    (trial,) = study.get_trials(states=[optuna.trial.TrialState.COMPLETE])
    assert trial.params == config and trial.values == [float(int(1.5 * GIB)), 10.0]
    other = ProbeStore(storage=store.study._storage, key=store.key, create=False)  # type: ignore[union-attr]
    assert list(other.probes()) == [knobs_key(config)]
    elsewhere = ProbeKey(**{**store.key.__dict__, "machine": "another"})
    assert ProbeStore(storage=store.study._storage, key=elsewhere).probes() == {}  # type: ignore[union-attr]


def test_two_claims_at_once_leave_the_probe_to_one_worker(store: ProbeStore) -> None:
    config = knobs(8, 96)
    first = store.claim(config, worker="a")
    assert first is not None and store.claim(config, worker="b") is None
    store.release(first, "could not run")
    assert store.probes() == {} and store.probing() == set()
    assert store.claim(config, worker="b") is not None


def test_a_stale_claim_is_failed_and_freed(store: ProbeStore) -> None:
    config = knobs(8, 96)
    assert store.claim(config, worker="dead") is not None
    store.stale_after_s = 0.0
    assert store.probing() == set()
    assert store.claim(config, worker="b") is not None


def test_a_read_only_store_of_a_storage_without_probes_holds_none(tmp_path: Path) -> None:
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'empty.db'}")
    key = ProbeKey(dataset="d", machine="m", model="yolov5n.yaml", hyp=None, device="cpu")
    assert ProbeStore(storage=storage, key=key, create=False).probes() == {}
    assert optuna.get_all_study_summaries(storage) == []


def test_a_subset_study_takes_memory_from_probes_else_from_the_model() -> None:
    lean, heavy = knobs(8, 96), knobs(16, 160)
    trainings = [
        _training(0, lean, 0, 0.30, 0.9),
        _training(1, lean, 1, 0.31, 0.9),
        _training(2, heavy, 0, 0.40, 1.0),
    ]
    probes = stored(
        result(lean, 1.2),
        result(knobs(8, 96, "ram", 2), 1.8, seconds=6.0),
        result(knobs(8, 96, "ram", 0), 2.5, status="memory_limit"),
    )
    figures = SystemFigures(
        probes=probes, limit_bytes=LIMIT, predict_full=lambda k: 1.7 * GIB, subset_scale=10.0
    )
    estimates = estimate_accuracy(trainings, systems_of=figures)
    lean_systems = estimates.configs[(8, 96, False)].systems
    # Trained at (none, 0) and probed there: the probe's whole-dataset peak, not the subset's 0.9 GiB.
    assert [(s.config["cache"], s.config["workers"], s.source) for s in lean_systems] == [
        ("none", 0, "probe"),
        ("ram", 2, "probe"),
    ]
    assert lean_systems[0].peak_host_bytes == int(1.2 * GIB) and lean_systems[0].trials == (0, 1)
    assert lean_systems[1].trials == () and lean_systems[1].epoch_seconds == 6.0  # probed only
    # Not probed: the model's prediction, and the subset's epoch time scaled to the whole dataset.
    (heavy_system,) = estimates.configs[(16, 160, False)].systems
    assert heavy_system.source == "model" and heavy_system.peak_host_bytes == 1.7 * GIB
    assert heavy_system.epoch_seconds == pytest.approx(20.0)


def test_epoch_times_on_the_whole_dataset_take_the_validation_pass_of_a_trained_model() -> None:
    lean, heavy = knobs(8, 96), knobs(16, 160)
    # Subset trainings of 10 s an epoch, 4 s of it validating the whole validation set.
    trainings = [
        dataclasses.replace(_training(n, config, 0, 0.3, 0.9), epoch_seconds=10.0, validation_seconds=4.0)
        for n, config in enumerate([lean, heavy])
    ]
    # The probe projects 50 s of training and validated its barely trained model in 1 s.
    probe = dataclasses.replace(
        result(lean, 1.2, seconds=51.0), projected_train_seconds=50.0, validation_seconds=1.0
    )
    figures = SystemFigures(
        probes=stored(probe), limit_bytes=LIMIT, predict_full=lambda k: 1.7 * GIB, subset_scale=10.0
    )
    estimates = estimate_accuracy(trainings, systems_of=figures)
    (probed,) = estimates.configs[(8, 96, False)].systems
    assert probed.source == "probe" and probed.epoch_seconds == pytest.approx(50.0 + 4.0)
    # Modelled: the training part scaled to the whole dataset, the validation pass as it was.
    (modelled,) = estimates.configs[(16, 160, False)].systems
    assert modelled.source == "model" and modelled.epoch_seconds == pytest.approx(6.0 * 10 + 4.0)


def test_a_config_predicted_over_the_limit_on_the_whole_dataset_leaves_the_front() -> None:
    trainings = [_training(0, knobs(8, 96), 0, 0.30, 0.9), _training(1, knobs(16, 160), 0, 0.40, 1.0)]
    figures = SystemFigures(
        probes={},
        limit_bytes=LIMIT,
        predict_full=lambda k: (3.0 if k["imgsz"] == 160 else 1.0) * GIB,
        subset_scale=4.0,
    )
    estimates = estimate_accuracy(trainings, systems_of=figures)
    assert list(estimates.configs) == [(8, 96, False)]
    assert [p.estimate.key for p in noise_front(estimates)] == [(8, 96, False)]


def _frame(trainings: list[Any], estimates: Any) -> pd.DataFrame:
    """The trials frame of these ok trainings, with the estimates' columns (as report reads it)."""
    rows = [
        {**{c: None for c in FRAME_COLUMNS}, "number": t.number, "state": "COMPLETE", "status": "ok",
         "feasible": True, **t.config, "seed": t.seed, "map50_95": t.accuracy,
         "peak_host_bytes": t.peak_host_bytes}
        for t in trainings
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=FRAME_COLUMNS)
    apply_estimates(frame, estimates)
    return frame


def test_export_may_pick_a_system_setting_that_only_a_probe_measured() -> None:
    lean = knobs(8, 96)
    trainings = [_training(0, lean, 0, 0.30, 0.9), _training(1, lean, 1, 0.31, 0.9)]
    fast = knobs(8, 96, "ram", 2)
    figures = SystemFigures(
        probes=stored(result(lean, 1.2, seconds=10.0), result(fast, 1.6, seconds=4.0)), limit_bytes=LIMIT,
        predict_full=lambda k: GIB, subset_scale=10.0,
    )  # fmt: skip
    estimates = estimate_accuracy(trainings, systems_of=figures)
    frame = _frame(trainings, estimates)
    front = frame[frame["pareto"].astype(bool)]
    assert list(front["memory_source"]) == ["probe"] and float(
        front["config_peak_host_bytes"].iloc[0]
    ) == int(1.2 * GIB)
    choice = choose_config(frame, estimates, max_memory_bytes=int(1.7 * GIB))
    assert choice.chosen is not None and choice.system is not None and choice.system.trial is None
    assert (choice.chosen["cache"], choice.chosen["workers"], choice.chosen["memory_source"]) == (
        "ram",
        2,
        "probe",
    )
    # No trial trained that full config: the row says so, and carries no other setting's measurement
    # (trial 0 trained the accuracy config at cache none, workers 0, and scored 0.30 there).
    row = choice.chosen
    assert row["probed_only"] and row["probe"] == 1 and row["number"] == 0
    assert math.isnan(row["map50_95"]) and math.isnan(row["seed"]) and math.isnan(row["cache_used"])
    assert (row["peak_host_bytes"], row["epoch_seconds"]) == (int(1.6 * GIB), 4.0)
    assert source_text(row) == "probe 1 (trial 0's accuracy config)"
    spec = StudySpec(name="s", data="d.yaml", memory_limit=LIMIT)
    header = export_yaml(train_options(row, spec, "d.yaml", hyp=None), row, spec, "map50_95")
    assert header.startswith("# memfront export: study s, probe 1 (trial 0's accuracy config): ")
    lines = choice_lines(choice, estimates, accuracy="map50_95", budget=int(1.7 * GIB))
    assert lines[0].startswith("probe 1:") and "probed peak on the whole dataset" in lines[0]
    assert "4.0 s/epoch against 10.0 s" in lines[-1]
    tight = choose_config(frame, estimates, max_memory_bytes=int(1.3 * GIB))
    assert tight.system is not None and tight.system.config["cache"] == "none"
    assert tight.chosen is not None and not tight.chosen["probed_only"]
    assert tight.chosen["map50_95"] == 0.30 and source_text(tight.chosen) == "trial 0"
    assert not math.isnan(float(tight.chosen["config_epoch_seconds"]))
    # Only within memory's spread of the budget: the warning names the figure as what it is.
    close = choose_config(frame, estimates, max_memory_bytes=int(1.22 * GIB))
    assert spread_warning(close) == (
        "its probed peak on the whole dataset 1.20 GiB is within memory's 4% spread of the budget: "
        "not shown to fit, a run may exceed it"
    )
    # Nothing fits: what came closest, the probed setting the front point's figures are of.
    none = choose_config(frame, estimates, max_memory_bytes=GIB)
    assert none.chosen is None
    assert choice_lines(none, estimates, accuracy="map50_95", budget=GIB) == [
        "no measured configuration fits 1.00 GiB; closest: trial 0 (batch 8, imgsz 96, cache none, "
        "workers 0, amp off) needs 1.20 GiB (probed peak on the whole dataset)"
    ]


def _estimates(*configs: tuple[dict[str, Any], float]) -> Any:
    trainings = []
    for number, (config, accuracy) in enumerate(configs):
        peak = config["imgsz"] / 160  # on the subset: more pixels, more memory
        trainings.append(_training(2 * number, config, 0, accuracy, peak))
        trainings.append(_training(2 * number + 1, config, 1, accuracy + 0.002, peak))
    return estimate_accuracy(trainings)


def _plan(
    estimates: Any, probes: dict[tuple[Any, ...], StoredProbe], *, predict: Any = None, **kw: Any
) -> Any:
    options: dict[str, Any] = {"subset": True, "speed_objective": False, "model_error": 0.02}
    options.update(kw)
    return plan_probe(
        estimates, systems=SYSTEMS, probed=probes, skip=set(), predict=predict or (lambda k: 1.2 * GIB),
        limit_bytes=LIMIT, **options,
    )  # fmt: skip


def test_what_came_closest_says_when_its_setting_is_not_its_trials_own() -> None:
    # Trained with the RAM cache only; a probe measured the same accuracy config without it, leaner.
    cached = knobs(8, 96, "ram", 0)
    trainings = [_training(0, cached, 0, 0.30, 0.9), _training(1, cached, 1, 0.31, 0.9)]
    figures = SystemFigures(
        probes=stored(result(knobs(8, 96), 1.2, seconds=10.0), result(cached, 1.6, seconds=9.0)),
        limit_bytes=LIMIT, predict_full=lambda k: GIB, subset_scale=10.0,
    )  # fmt: skip
    estimates = estimate_accuracy(trainings, systems_of=figures)
    frame = _frame(trainings, estimates)
    front = frame[frame["pareto"].astype(bool)]
    assert (front["config_cache"].iloc[0], front["config_probe"].iloc[0]) == ("none", 0)  # the first probe
    # The report's front table names the trial, and says where it trained.
    assert trained_elsewhere(front.iloc[0]) == "0 (trained at cache ram, workers 0)"
    assert trained_elsewhere(frame.iloc[1]) is None  # not a front row
    none = choose_config(frame, estimates, max_memory_bytes=GIB)
    assert choice_lines(none, estimates, accuracy="map50_95", budget=GIB) == [
        "no measured configuration fits 1.00 GiB; closest: trial 0's accuracy config at another "
        "setting (batch 8, imgsz 96, cache none, workers 0, amp off) needs 1.20 GiB (probed peak on "
        "the whole dataset)"
    ]


def test_the_first_probe_anchors_the_best_config_at_its_leanest_setting() -> None:
    estimates = _estimates((knobs(8, 96), 0.3), (knobs(16, 160), 0.5))
    plan = _plan(estimates, {})
    assert plan.knobs == knobs(16, 160) and plan.reason.startswith("anchor")


def test_then_each_memory_term_no_probe_has_exercised() -> None:
    estimates = _estimates(
        (knobs(16, 160), 0.5),
    )
    plans = []
    probes = stored(result(knobs(16, 160), 1.0))
    for _ in range(3):
        plan = _plan(estimates, probes)
        plans.append((plan.knobs["cache"], plan.knobs["workers"]))
        probes = stored(*[p.result for p in probes.values()], result(plan.knobs, 1.2))
    assert plans == [("ram", 0), ("none", 2), ("ram", 2)]


def test_no_probe_where_the_trainings_measure_it_or_where_it_could_not_change_a_decision() -> None:
    estimates = _estimates((knobs(8, 96), 0.3), (knobs(16, 160), 0.5))
    # Trainings on the whole dataset measured the leanest setting themselves: no anchor.
    plan = _plan(estimates, {}, subset=False)
    assert plan is not None and plan.reason.startswith("uncertain")
    # Far below the limit (even twice the predicted peak fits), an unexercised term decides nothing.
    assert _plan(estimates, {}, subset=False, predict=lambda k: 0.9 * GIB) is None
    assert _plan(estimates, stored(result(knobs(16, 160), 1.0)), predict=lambda k: 0.9 * GIB) is not None


def test_then_configs_near_the_budget_closest_first_and_never_a_probed_one() -> None:
    estimates = _estimates((knobs(8, 96), 0.3), (knobs(16, 160), 0.5))
    probes = stored(*(result(knobs(16, 160, c, w), 1.0) for c, w in (("none", 0), ("ram", 0), ("ram", 2))))

    def predict(k: dict[str, Any]) -> float:
        return (1.95 if k["batch"] == 8 and k["cache"] == "disk" and k["workers"] == 2 else 1.0) * GIB

    plan = _plan(estimates, probes, predict=predict)
    assert plan.knobs == knobs(8, 96, "disk", 2) and plan.reason.startswith("near the budget")


def test_a_subset_study_probes_each_front_config_and_a_full_one_only_when_speed_is_an_objective() -> None:
    estimates = _estimates((knobs(8, 96), 0.3), (knobs(16, 160), 0.5))
    covered = stored(*(result(knobs(16, 160, c, w), 1.0) for c, w in (("none", 0), ("ram", 0), ("ram", 2))))
    assert _plan(estimates, covered, predict=lambda k: 0.5 * GIB).knobs == knobs(8, 96)
    assert _plan(estimates, covered, predict=lambda k: 0.5 * GIB, subset=False) is None
    speed = _plan(estimates, covered, predict=lambda k: 0.5 * GIB, subset=False, speed_objective=True)
    assert speed is not None and speed.reason.startswith("front")
    over = _plan(estimates, covered, predict=lambda k: 3.0 * GIB, subset=False, speed_objective=True)
    assert over is None  # predicted far over the limit: nothing a probe could put on the front


def test_a_probe_stopped_under_a_lower_limit_says_nothing_about_a_higher_one() -> None:
    config = knobs(8, 96)
    over = result(config, 1.5, status="memory_limit")
    trainings = [_training(0, config, 0, 0.30, 0.9)]
    for limit, expected in ((1.0, "model"), (2.0, None)):
        probes = {knobs_key(config): StoredProbe(0, over, int(limit * GIB))}
        figures = SystemFigures(
            probes=probes, limit_bytes=LIMIT, predict_full=lambda k: GIB, subset_scale=2.0
        )
        systems = figures((8, 96, False), trainings)
        assert [s.source for s in systems] == ([] if expected is None else [expected])


def test_probes_of_another_study_that_do_not_fit_this_limit_are_left_out() -> None:
    config, only_probed = knobs(8, 96), knobs(8, 96, "ram", 2)
    trainings = [_training(0, config, 0, 0.30, 0.9)]
    probes = {
        knobs_key(config): StoredProbe(0, result(config, 2.5), 4 * GIB),  # ok under a 4 GiB limit
        knobs_key(only_probed): StoredProbe(1, result(only_probed, 1.5, status="memory_limit"), GIB),
    }
    figures = SystemFigures(probes=probes, limit_bytes=LIMIT, predict_full=lambda k: GIB, subset_scale=2.0)
    # 2.5 GiB does not fit this study's 2 GiB; the probe stopped at 1 GiB says nothing here, and the
    # config it probed has no training to fall back on.
    assert figures((8, 96, False), trainings) == ()


def test_an_epoch_without_its_validation_pass_is_scaled_whole() -> None:
    # Records of older versions hold no training part of an epoch: the whole epoch scales (an
    # overestimate by the validation pass, as before validation was told apart).
    heavy = knobs(16, 160)
    training = dataclasses.replace(_training(0, heavy, 0, 0.3, 0.9), epoch_seconds=10.0)
    figures = SystemFigures(probes={}, limit_bytes=LIMIT, predict_full=lambda k: 1.7 * GIB, subset_scale=10.0)
    (modelled,) = estimate_accuracy([training], systems_of=figures).configs[(16, 160, False)].systems
    assert modelled.epoch_seconds == pytest.approx(100.0)
