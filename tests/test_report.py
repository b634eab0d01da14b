"""The front every view shows, on synthetic studies (no training)."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import yaml
from scipy import stats

import search
from search.results._frame import front, hypervolume, trials_frame
from search.results._plot import pareto_plot_data

from .conftest import run_cli
from .synthetic import GIB, knobs, replicated, stored_study_file, stored_trial

LIMIT = 2 * GIB


def _three_objective_study() -> optuna.Study:
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"])
    study.set_user_attr("objectives", ["map50_95", "peak_host", "epoch_seconds"])
    points = [
        (knobs(16, 128), 0.50001, 1.17, 8.0),  # trials 0, 1: the most accurate, by a hair
        (knobs(16, 96), 0.50000, 1.12, 3.8),  # 2, 3: within noise of the above, with less memory
        (knobs(8, 64), 0.30, 1.00, 9.0),  # 4, 5: the leanest
        (knobs(8, 96, workers=1), 0.40, 1.20, 2.0),  # 6, 7: beaten beyond noise by 2-3, but fastest
    ]
    for config, accuracy, peak, seconds in points:
        trials = replicated(config, accuracy, peak * GIB, limit=LIMIT, epoch_seconds=seconds)
        for trial in trials:
            trial.values = [trial.values[0], peak * GIB, seconds]
            study.add_trial(trial)
    return study


def test_three_objectives_front_is_accuracy_against_memory_and_optunas_front_is_kept_beside_it() -> None:
    frame = trials_frame(_three_objective_study())
    # One row per front point: its config's first trial.
    assert frame["pareto"].tolist() == [True, False, True, False, True, False, False, False]
    # Optuna's own front over all three objectives also holds the fastest config's trials.
    assert frame.set_index("number").loc[[6, 7], "pareto_all"].any()
    assert front(frame)["number"].tolist() == [4, 2, 0]
    # 0 is no better beyond noise than 2, which needs less memory.
    assert front(frame)["equivalent_to"].tolist() == [None, None, 2]
    data = pareto_plot_data(frame, accuracy="map50_95", memory_limit=LIMIT, study_name="s")
    assert data.front["number"].tolist() == [4, 2, 0]
    assert data.front["equivalent"].tolist() == [False, False, True]
    assert data.points.set_index("number").loc[6, "dominated"]
    assert (data.front["low"] < data.front["y"]).all() and (data.front["y"] < data.front["high"]).all()
    # The step line only rises: no zig-zag through a dominated point.
    assert data.step_y == sorted(data.step_y)


def test_a_point_kept_on_a_memory_tie_is_marked_in_every_view() -> None:
    from search.cli._results import _ties_text

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["map50_95", "peak_host"])
    # 16/96 reads 2% above 8/128, which is better beyond noise: within memory's spread, it stays.
    for config, accuracy, peak in ((knobs(8, 128), 0.40, 1.05), (knobs(16, 96), 0.20, 1.07)):
        for trial in replicated(config, accuracy, peak * GIB, limit=LIMIT, replicates=3):
            study.add_trial(trial)
    frame = trials_frame(study)
    shown = front(frame)
    assert shown["number"].tolist() == [0, 3] and shown["memory_tie"].tolist() == [None, 0]
    assert [_ties_text(row) for _, row in shown.iterrows()] == ["-", "trial 0 (memory)"]
    data = pareto_plot_data(frame, accuracy="map50_95", memory_limit=LIMIT, study_name="s")
    assert data.front["memory_tie"].tolist() == [False, True]
    assert "1 ≈mem" in data.caption and "≈mem" in data.front["label"].iloc[1]
    # The step line stays at the better point's mean past the tied one.
    assert data.step_y == sorted(data.step_y)


def test_hypervolume_is_the_area_under_the_front_of_means_up_to_the_limit() -> None:
    frame = trials_frame(_three_objective_study())
    # Steps: 0.30 from 1.00 to 1.12 GiB, 0.50000 from 1.12 to 1.17, 0.50001 from 1.17 to the 2 GiB limit.
    expected = 0.30 * 0.12 + 0.50000 * 0.05 + 0.50001 * 0.83
    assert hypervolume(frame, accuracy="map50_95", memory_limit=LIMIT) == pytest.approx(expected)


def test_without_replicates_nothing_is_dropped_on_accuracy() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["map50_95", "peak_host"])
    for config, acc, peak in [(knobs(4), 0.2, 1.0), (knobs(8), 0.3, 1.5), (knobs(16), 0.25, 1.6)]:
        study.add_trial(stored_trial(config=config, values=[acc, peak * GIB], violation=peak * GIB - LIMIT))
    over = stored_trial(config=knobs(32), values=[0.0, 3.0 * GIB], violation=GIB, status="memory_limit")
    study.add_trial(over)
    frame = trials_frame(study)
    # One training each: the noise is unknown, so 0.25 is not shown to be worse than 0.3.
    assert frame["pareto"].tolist() == [True, True, True, False]
    assert frame["accuracy_low"].isna().all()
    assert frame["feasible"].tolist() == [True, True, True, False]
    assert frame["pareto_all"].tolist() == [True, True, False, False]  # Optuna's, on single values


def test_legacy_constraints_in_user_attributes_still_decide_feasibility() -> None:
    study = optuna.create_study(directions=["maximize", "minimize"])
    legacy = stored_trial(config=knobs(), values=[0.0, 3.0 * GIB], violation=None, status="memory_limit")
    legacy.user_attrs["constraint"] = [float(GIB)]  # how studies before Trial.set_constraint stored it
    study.add_trial(legacy)
    assert trials_frame(study)["feasible"].tolist() == [False]


@pytest.fixture
def stored_study(tmp_path: Path, tiny_data: Path) -> Path:
    """A study file and its SQLite storage holding a front, an infeasible and a pre-flight skip."""
    skipped = stored_trial(
        config=knobs(32, 128, "ram"),
        values=[0.0, 3 * GIB],
        violation=GIB,
        status="predicted",
        epoch_seconds=None,
    )
    trials = [
        stored_trial(config=knobs(8, 96, "ram"), values=[0.3, 1.2 * GIB], violation=-0.8 * GIB),
        stored_trial(config=knobs(4, 64), values=[0.2, 1.0 * GIB], violation=-GIB),
        skipped,
    ]
    return stored_study_file(tmp_path, name="synthetic", data=tiny_data, limit=LIMIT, trials=trials)


@pytest.mark.slow
def test_report_shows_a_predicted_trials_cache_as_asked_and_json_on_stdout(stored_study: Path) -> None:
    done = run_cli("report", str(stored_study), "--all", "--json", "-", timeout=120)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)  # stdout is the JSON alone; the table went to stderr
    assert [t["number"] for t in payload["front"]] == [1, 0]
    assert "nan" not in done.stderr and "predicted" in done.stderr
    csv = run_cli("report", str(stored_study), "--all", "--csv", "-", timeout=120)
    assert csv.returncode == 0 and csv.stdout.splitlines()[0].startswith("number,")
    assert len(csv.stdout.splitlines()) == 4
    both = run_cli("report", str(stored_study), "--csv", "-", "--json", "-", timeout=120)
    assert both.returncode == 2 and both.stdout == ""
    assert (
        both.stderr.strip()
        == "memfront: error: --csv and --json both write to standard output: give each its own"
    )


@pytest.mark.slow
def test_a_changed_memory_limit_is_refused_and_nothing_is_touched(stored_study: Path) -> None:
    spec = yaml.safe_load(stored_study.read_text())
    stored_study.write_text(yaml.safe_dump({**spec, "memory_limit": "1GiB"}))
    for command in ("report", "status"):
        done = run_cli(command, str(stored_study), timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and "was run with memory_limit 2.00 GiB" in done.stderr
    study = optuna.load_study(study_name="synthetic", storage=spec["storage"])
    assert len(study.trials) == 3 and study.user_attrs["memory_limit_bytes"] == LIMIT


@pytest.mark.slow
def test_a_changed_framework_is_refused_and_nothing_is_touched(stored_study: Path) -> None:
    # The study trained with yolov5 (stored before frameworks: no framework attribute says so).
    spec = yaml.safe_load(stored_study.read_text())
    stored_study.write_text(yaml.safe_dump({**spec, "framework": "ultralytics"}))
    for command in ("report", "run"):
        done = run_cli(command, str(stored_study), timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"memfront: error: study 'synthetic' in {spec['storage']} trained with yolov5, but the study "
            "file says ultralytics: set framework: yolov5, or rename the study"
        ]
    study = optuna.load_study(study_name="synthetic", storage=spec["storage"])
    assert len(study.trials) == 3 and "framework" not in study.user_attrs


@pytest.mark.slow  # the CLI in a subprocess
def test_report_json_gives_each_front_entry_its_interval_and_says_when_nothing_ranks(
    tmp_path: Path, tiny_data: Path
) -> None:
    ranked = [
        *replicated(knobs(8, 64), 0.20, 1.0 * GIB, limit=LIMIT, replicates=3),
        *replicated(knobs(8, 96), 0.40, 1.2 * GIB, limit=LIMIT, replicates=3),
    ]
    study = stored_study_file(tmp_path, name="ranked", data=tiny_data, limit=LIMIT, trials=ranked)
    done = run_cli("report", str(study), "--json", "-", timeout=120)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert payload["accuracy_signal"] is True and payload["noise"]["df"] == 4
    entry = payload["front"][0]
    for key in (
        "accuracy_mean",
        "accuracy_low",
        "accuracy_high",
        "replicates",
        "peak_host_bytes",
        "epoch_seconds",
    ):
        assert entry[key] is not None, key
    assert {"batch", "imgsz", "cache", "workers", "amp"} <= set(entry)
    assert (
        entry["accuracy_low"] < entry["accuracy_mean"] < entry["accuracy_high"] and entry["replicates"] == 3
    )
    # Nothing learned: differences of 1e-6 are no finding, whatever the noise.
    flat = [
        *replicated(knobs(8, 64), 2e-6, 1.0 * GIB, limit=LIMIT, spread=1e-7, replicates=3),
        *replicated(knobs(8, 96), 6e-6, 1.2 * GIB, limit=LIMIT, spread=1e-7, replicates=3),
    ]
    (tmp_path / "flat").mkdir()
    study = stored_study_file(tmp_path / "flat", name="flat", data=tiny_data, limit=LIMIT, trials=flat)
    done = run_cli("report", str(study), "--json", "-", timeout=120)
    payload = json.loads(done.stdout)
    assert payload["accuracy_signal"] is False
    assert "the trainings learned next to nothing, so accuracy is not ranked" in " ".join(done.stderr.split())
    assert len(payload["front"]) == 2
    export = run_cli("export", str(study), "--max-memory", "1.5GiB", timeout=120)
    assert export.returncode == 0 and "picked on memory and speed alone" in export.stderr
    assert "--imgsz 64" in export.stdout  # the leaner one, since accuracy cannot tell them apart


def test_a_family_wise_study_ranks_only_what_holds_for_all_pairs_at_once(
    tmp_path: Path, tiny_data: Path
) -> None:
    # Four configs 0.10 apart, each trained twice (a noise of ±0.028 on 4 degrees of freedom): per
    # pair 0.10 is beyond the t interval (±0.079); for all six pairs together the studentized
    # range's bar (±0.115) is not reached, so export takes the leanest of two it cannot tell apart.
    configs = ((64, 0.20, 1.0), (96, 0.30, 1.1), (128, 0.40, 1.2), (160, 0.50, 1.3))
    trials = [
        trial
        for imgsz, accuracy, peak in configs
        for trial in replicated(knobs(8, imgsz), accuracy, peak * GIB, limit=LIMIT, spread=0.02)
    ]
    exports, widths = {}, {}
    for family_wise in (False, True):
        study = stored_study_file(
            tmp_path / str(family_wise), name="s", data=tiny_data, limit=LIMIT, trials=trials,
            keys={"accuracy_family_wise": family_wise},
        )  # fmt: skip
        done = run_cli("report", str(study), "--json", "-", timeout=120)
        payload = json.loads(done.stdout)
        noise = payload["noise"]
        assert (noise["df"], noise["family"], noise["family_wise"]) == (4, 4, family_wise)
        widths[family_wise] = {round(e["accuracy_high"] - e["accuracy_low"], 9) for e in payload["front"]}
        title = "accuracy config's replicates, 95% comparison interval (Tukey-Kramer))"
        assert (title in done.stderr.replace("\n", "")) is family_wise
        legend = search.load_study(study).plot_data().interval_name  # what the plot's legend says
        assert legend == (
            "95% comparison interval (Tukey-Kramer)" if family_wise else "95% interval of the mean"
        )
        tukey = "differences beyond it (95% over all 4 configs' pairs together, Tukey-Kramer) rank the front"
        assert (tukey in done.stderr) is family_wise
        export = run_cli("export", str(study), "--max-memory", "1.15GiB", timeout=120)
        assert export.returncode == 0, export.stderr
        exports[family_wise] = export
    assert (
        "--imgsz 96" in exports[False].stdout
        and "beaten by 0.100, beyond the noise ±0.079" in exports[False].stderr
    )
    assert "--imgsz 64" in exports[True].stdout and "within the noise ±0.115" in exports[True].stderr
    # Family-wise, the intervals are drawn with the range's multiplier: two apart differ beyond noise.
    (per_pair,), (family,) = widths[False], widths[True]
    ratio = stats.studentized_range.ppf(0.95, 4, 4) / 2**0.5 / stats.t.ppf(0.975, 4)
    assert family / per_pair == pytest.approx(ratio)


def test_a_noise_on_too_few_degrees_of_freedom_ranks_nothing_until_a_prior_or_the_minimum_allows(
    tmp_path: Path, tiny_data: Path
) -> None:
    # Two close pairs of replicates: a noise of ±0.002 on 2 degrees of freedom, 0.20 apart. From so
    # few, an estimate that small may be luck (the study then ranks draws): by default, no ranking.
    trials = [
        *replicated(knobs(8, 64), 0.20, 1.0 * GIB, limit=LIMIT),
        *replicated(knobs(8, 96), 0.40, 1.2 * GIB, limit=LIMIT),
    ]
    study = stored_study_file(tmp_path / "default", name="s", data=tiny_data, limit=LIMIT, trials=trials)
    done = run_cli("report", str(study), "--json", "-", timeout=120)
    payload = json.loads(done.stdout)
    assert payload["accuracy_signal"] is False and payload["noise"]["df"] == 2
    assert done.stderr.count("of the 3 degrees of freedom") == 1  # said once, on the noise line:
    assert "(pooled sd, 2 degrees of freedom); 2 of the 3 degrees of freedom ranking needs" in done.stderr
    assert payload["front"][0]["accuracy_high"] is None  # no interval before the noise is known
    export = run_cli("export", str(study), "--max-memory", "1.5GiB", timeout=120)
    assert export.returncode == 0 and "picked on memory and speed alone" in export.stderr
    assert "the noise has 2 of the 3 degrees of freedom ranking needs" in export.stderr
    assert "--imgsz 64" in export.stdout
    # A prior from an earlier study of the setup: its degrees of freedom count, and its sd pools in.
    prior = {"accuracy_noise_prior": {"sd": 0.01, "df": 4}}
    study = stored_study_file(
        tmp_path / "prior", name="s", data=tiny_data, limit=LIMIT, trials=trials, keys=prior
    )
    done = run_cli("report", str(study), "--json", "-", timeout=120)
    payload = json.loads(done.stdout)
    assert payload["accuracy_signal"] is True
    assert (payload["noise"]["df"], payload["noise"]["study_df"]) == (6, 2)
    assert payload["noise"]["study_sd"] == pytest.approx(0.002 * 2**0.5)  # what a next study's prior takes
    pooled = ((2 * 2 * 0.002**2) + 4 * 0.01**2) / 6
    assert payload["noise"]["sd"] == pytest.approx(pooled**0.5)
    assert "2 degrees of freedom from this study's replicates (±0.003) + 4 from the prior" in done.stderr
    export = run_cli("export", str(study), "--max-memory", "1.5GiB", timeout=120)
    assert export.returncode == 0 and "--imgsz 96" in export.stdout
    # Or the study file lowers the minimum, taking the risk on itself.
    lowered = {"accuracy_min_df": 2}
    study = stored_study_file(
        tmp_path / "min", name="s", data=tiny_data, limit=LIMIT, trials=trials, keys=lowered
    )
    payload = json.loads(run_cli("report", str(study), "--json", "-", timeout=120).stdout)
    assert payload["accuracy_signal"] is True and payload["noise"]["df"] == 2


def test_export_writes_the_cache_that_ran_where_the_frameworks_ram_check_dropped_it(
    tmp_path: Path, tiny_data: Path
) -> None:
    # Both trainings asked for the RAM cache and ran without it: what they measured is cache none.
    trials = []
    for seed in (0, 1):
        trial = stored_trial(
            config=knobs(8, 96, "ram"), values=[0.30 + 0.01 * seed, 1.2 * GIB], violation=1.2 * GIB - LIMIT,
            seed=seed, cache_used="none",
        )  # fmt: skip
        trial.user_attrs["record"]["used"]["cache_dropped"] = True
        trials.append(trial)
    study = stored_study_file(tmp_path, name="dropped", data=tiny_data, limit=LIMIT, trials=trials)
    export = run_cli("export", str(study), "--max-memory", "1.5GiB", "--format", "yaml", timeout=120)
    assert export.returncode == 0, export.stderr
    options = yaml.safe_load(export.stdout)
    assert options["cache"] == "none", export.stdout
    assert "--cache ram" not in export.stdout and "cache=ram" not in export.stdout


def test_a_subset_trained_setting_must_fit_with_its_own_measured_peak(
    tmp_path: Path, tiny_data: Path
) -> None:
    # Trained on 8 of the 16 images at 1.10 GiB: the whole dataset does all the subset's trainings did,
    # so a budget below their peak cannot fit it, whatever the whole-dataset prediction says.
    trials = []
    for seed in (0, 1):
        trial = stored_trial(
            config=knobs(8, 96),
            values=[0.30 + 0.01 * seed, 1.10 * GIB],
            violation=1.10 * GIB - LIMIT,
            seed=seed,
        )
        trial.user_attrs["record"]["used"].update(train_images=8, listed_images=8, imgsz=96)
        trials.append(trial)
    study = stored_study_file(
        tmp_path, name="subset", data=tiny_data, limit=LIMIT, trials=trials, keys={"train_images": 8}
    )
    done = run_cli("report", str(study), "--json", "-", timeout=120)
    (row,) = json.loads(done.stdout)["front"]
    assert row["memory_source"] == "model" and row["peak_host_bytes"] < 1.10 * GIB  # the premise
    below = run_cli("export", str(study), "--max-memory", "1.05GiB", timeout=120)
    assert below.returncode == 1 and "no measured configuration fits" in below.stderr, below.stderr
    above = run_cli("export", str(study), "--max-memory", "1.2GiB", timeout=120)
    assert above.returncode == 0, above.stderr
    said = " ".join(above.stderr.split())
    assert "its subset trainings' highest measured peak 1.10 GiB <= 1.20 GiB" in said, said
