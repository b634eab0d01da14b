"""Real studies end to end through the CLI: run, resume, report, export, bad input."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml

from search.data._demo import make_demo_dataset
from search.errors import InputError
from search.frameworks._base import package_folder
from search.measure._footprint import framework_footprint_bytes
from search.study._compatible import setup_of
from search.study._prepare import open_study, storage_url
from search.study._spec import load_study_spec
from search.study._stored import StudyKeys
from search.trial._record import memory_violation

from .conftest import ROOT, TINY_STUDY, run_cli, trainer_processes


def _copy_study(tiny_study: Path, folder: Path, **changes: str) -> Path:
    shutil.copy(tiny_study.with_name("tiny.db"), folder / "tiny.db")
    if set(changes) & set(setup_of(load_study_spec(tiny_study))):
        _forget_setup(folder)
    text = tiny_study.read_text()
    for key, value in changes.items():
        if not any(line.startswith(f"{key}:") for line in text.splitlines()):
            text = f"{key}: {value}\n" + text
        text = "\n".join(
            f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines()
        )
    target = folder / "tiny.yaml"
    target.write_text(text + "\n")
    return target


def _forget_setup(folder: Path) -> None:
    """Makes the study in ``folder`` one stored before setups were (2026-12-07): it takes the study
    file's next setup. For tests that change it to reach a state faster (a longer training to
    interrupt, a subset to probe), not for what they check."""
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'tiny.db'}")
    study.set_user_attr(StudyKeys.SETUP, None)


def _truncated_png(size: int) -> bytes:
    """A PNG image cut before its end: its header (and size) reads, its pixels do not."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), "red").save(buffer, "PNG")
    return buffer.getvalue()[:-20]


def _trials(spec_path: Path) -> list[optuna.trial.FrozenTrial]:
    spec = load_study_spec(spec_path)
    return open_study(spec, storage_url(spec, spec_path), create=False).get_trials()


@pytest.mark.slow
def test_run_stores_complete_records_readable_by_optuna(tiny_study: Path) -> None:
    trials = _trials(tiny_study)
    trained = [t for t in trials if "duplicate_of" not in t.user_attrs]
    assert len(trained) == 3
    configs = [(tuple(sorted(t.user_attrs["config"].items())), t.user_attrs["seed"]) for t in trained]
    assert len(set(configs)) == 3  # no training twice (a replicate has another seed)
    for trial in trained:
        assert trial.user_attrs["status"] == "ok"
        assert trial.user_attrs["config"]["amp"] is False  # fixed off on the CPU
        assert trial.user_attrs["record"]["requested"]["hyp"] == "demo"
        assert trial.user_attrs["record"]["epochs"] and memory_violation(trial) < 0
        assert len(trial.values) == 2
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("optuna")),
            "best-trials",
            "--study-name",
            "tiny",
            "--storage",
            storage_url(load_study_spec(tiny_study), tiny_study),
            "-f",
            "json",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and json.loads(done.stdout)
    # The footprint the run measured is the study's: reading it anchors on that, measuring nothing.
    spec = load_study_spec(tiny_study)
    study = optuna.load_study(study_name="tiny", storage=storage_url(spec, tiny_study))
    assert study.user_attrs["framework_footprint_bytes"] == framework_footprint_bytes()


@pytest.mark.slow
def test_resume_adds_only_the_missing_trials(tiny_study: Path, tmp_path: Path) -> None:
    study = _copy_study(tiny_study, tmp_path, n_trials="4")
    before = len([t for t in _trials(study) if "duplicate_of" not in t.user_attrs])
    done = run_cli("run", str(study))
    assert done.returncode == 0, done.stderr
    after = [t for t in _trials(study) if "duplicate_of" not in t.user_attrs]
    assert (before, len(after)) == (3, 4)
    assert "1 trained by this worker" in " ".join(done.stderr.split())


@pytest.mark.slow
def test_report_json_csv_and_table(tiny_study: Path, tmp_path: Path) -> None:
    done = run_cli(
        "report",
        str(tiny_study),
        "--all",
        "--json",
        str(tmp_path / "r.json"),
        "--csv",
        str(tmp_path / "r.csv"),
    )
    assert done.returncode == 0, done.stderr
    assert "hypervolume" in done.stdout
    payload = json.loads((tmp_path / "r.json").read_text())
    assert payload["front"] and len(payload["trials"]) >= 3
    assert {"number", "state", "status", "config", "peak_host_bytes"} <= set(payload["trials"][0])
    front_numbers = {t["number"] for t in payload["front"]}
    assert front_numbers <= {t["number"] for t in payload["trials"] if t["feasible"]}
    assert (tmp_path / "r.csv").read_text().startswith("number,")


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="only root passes the folder's permission check to the write")
def test_a_file_the_system_refuses_at_the_write_is_named_in_one_line(tiny_study: Path) -> None:
    # /sys refuses new files even to root, whom the check before any work lets through.
    done = run_cli("report", str(tiny_study), "--csv", "/sys/memfront.csv")
    assert (done.returncode, done.stderr) == (1, "memfront: error: /sys/memfront.csv: Permission denied\n")
    assert tiny_study.with_name("tiny.db").exists()


@pytest.mark.slow
def test_export_runs_as_printed(tiny_study: Path, tmp_path: Path) -> None:
    done = run_cli("export", str(tiny_study), "--max-memory", "8GiB")
    assert done.returncode == 0, done.stderr
    command = done.stdout.splitlines()[0]
    assert command.startswith("memfront train ") and "--framework yolov5" in command
    upstream = "upstream flags (yolov5 7.0.14 needs memfront's stack fixes, and the network for a font): "
    assert upstream + "MALLOC_MMAP_THRESHOLD_=1048576 yolov5 train --data" in done.stdout
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = subprocess.run(
        [*shlex.split(command), "--project", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "exp" / "weights" / "best.pt").is_file()
    # Plots off, as the trials measured it (they would need memory the study never saw).
    images = [*(tmp_path / "exp").glob("*.png"), *(tmp_path / "exp").glob("*.jpg")]
    assert "--plots off" in command and not images, images
    as_yaml = run_cli(
        "export",
        str(tiny_study),
        "--max-memory",
        "8GiB",
        "--format",
        "yaml",
        "-o",
        str(tmp_path / "best.yaml"),
    )
    assert as_yaml.returncode == 0
    exported = (tmp_path / "best.yaml").read_text()
    assert "batch:" in exported and "hyp: demo" in exported and "--hyp " in exported
    assert "plots: false" in exported and "--noplots" in exported
    # A second training with the same --name goes beside the first (yolov5's rule), never into it.
    first = (tmp_path / "exp" / "weights" / "best.pt").stat().st_mtime_ns
    best = str(tmp_path / "best.yaml")
    again = run_cli("train", "--config", best, "--project", str(tmp_path), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"weights and results in {tmp_path / 'exp2'}" in again.stderr
    assert (tmp_path / "exp2" / "weights" / "best.pt").is_file()
    assert (tmp_path / "exp" / "weights" / "best.pt").stat().st_mtime_ns == first


@pytest.mark.slow
def test_every_config_over_the_limit(tiny_data: Path, tmp_path: Path) -> None:
    # Just above what importing torch and yolov5 costs, far below what any trial needs.
    limit = framework_footprint_bytes() + 64 * 1024**2
    study = tmp_path / "tiny.yaml"
    text = TINY_STUDY.format(data=tiny_data).replace("6GiB", str(limit)).replace("n_trials: 3", "n_trials: 2")
    study.write_text(text)
    done = run_cli("run", str(study))
    assert done.returncode == 0, done.stderr
    trials = [t for t in _trials(study) if "duplicate_of" not in t.user_attrs]
    assert len(trials) == 2
    assert all(t.user_attrs["status"] in ("memory_limit", "predicted") for t in trials), [
        (t.user_attrs.get("status"), t.user_attrs.get("record", {}).get("error")) for t in trials
    ]
    assert all(t.state == optuna.trial.TrialState.COMPLETE and memory_violation(t) > 0 for t in trials)
    report = run_cli("report", str(study), "--json", str(tmp_path / "r.json"))
    assert json.loads((tmp_path / "r.json").read_text())["front"] == []
    assert report.returncode == 0
    # run and report say why the front is empty, and what to change.
    for said in (done.stderr, report.stderr + report.stdout):
        said = " ".join(said.split())
        assert "the front is empty: no training ended with a result" in said, said[-2000:]
        assert "2 trainings over the memory limit" in said
        # The first training is the space's leanest config: a narrower space cannot help.
        leanest = (
            "the space's leanest config (batch 4, imgsz 64, cache none, workers 0, amp off) needs at least"
        )
        assert leanest in said and "raise memory_limit under a new study name" in said
    status = run_cli("status", str(study))
    assert status.returncode == 0 and "the front is empty" in status.stdout, status.stdout
    export = run_cli("export", str(study), "--max-memory", "100GiB")
    assert export.returncode == 1 and "no feasible trial" in export.stderr
    assert "`memfront report` says what to change" in " ".join(export.stderr.split())
    # Why: how the trials ended (here over the limit, or predicted over it and not trained).
    said = " ".join(export.stderr.split())
    assert "`memfront report --all` lists them" in said and ("memory_limit" in said or "predicted" in said)


TIMED_STUDY = """\
name: timed
data: {data}
hyp: demo
epochs: 1
n_trials: 30
timeout: {timeout}s
memory_limit: 6GiB
sampler: random
seed: 0
space:
  batch: [4, 8]
  imgsz: [64, 96, 128]
  cache: [none]
  workers: [0]
  amp: [false]
"""


@pytest.mark.slow
def test_a_timed_study_starts_no_training_its_timeout_would_cut(tiny_data: Path, tmp_path: Path) -> None:
    # More trainings than the timeout allows: the study must stop starting them in time, whatever
    # config the sampler proposes next (configs not trained yet are bounded from those trained).
    timeout = 70
    study = tmp_path / "timed.yaml"
    study.write_text(TIMED_STUDY.format(data=tiny_data, timeout=timeout))
    started = time.monotonic()
    done = run_cli("run", str(study))
    wall = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    trials = [t for t in _trials(study) if "duplicate_of" not in t.user_attrs]
    statuses = [t.user_attrs.get("status") for t in trials]
    assert len(trials) >= 2 and "timeout" not in statuses, (statuses, done.stderr[-2000:])
    assert all(s == "ok" for s in statuses), statuses
    assert "timeout" in done.stderr  # it stopped for its timeout: the end game or the timeout itself
    # Each training says why it trained: a config trained before is a replicate, whoever proposed it.
    seen = set()
    for trial in sorted(trials, key=lambda t: t.number):
        key = (trial.params["batch"], trial.params["imgsz"])
        assert trial.user_attrs.get("planned", "").startswith("replicate") == (key in seen), (
            trial.number,
            key,
            trial.user_attrs.get("planned"),
        )
        seen.add(key)
    assert wall < timeout + 45, wall  # the CLI's start and the report aside, within its timeout


ONE_CONFIG_STUDY = """\
name: one
data: {data}
hyp: demo
epochs: 1
n_trials: 2
trial_time_limit: 2s
memory_limit: 6GiB
space:
  batch: [4]
  imgsz: [64]
  cache: [none]
  workers: [0]
  amp: [false]
"""


@pytest.mark.slow
def test_a_config_cut_by_its_time_limit_trains_again_once_the_study_file_allows_more(
    tiny_data: Path, tmp_path: Path
) -> None:
    study = tmp_path / "one.yaml"
    study.write_text(ONE_CONFIG_STUDY.format(data=tiny_data))
    cut = run_cli("run", str(study))
    assert cut.returncode == 0, cut.stderr
    said = " ".join(cut.stderr.split())
    assert [t.user_attrs.get("status") for t in _trials(study)] == ["timeout"], said[-2000:]
    # Its one config was tried: the run stops, and says what to change.
    assert "the front is empty" in said and "raise trial_time_limit" in said, said[-2000:]
    assert run_cli("run", str(study)).returncode == 0
    assert len(_trials(study)) == 1  # the same limit: nothing to do
    study.write_text(study.read_text().replace("trial_time_limit: 2s", "trial_time_limit: 10m"))
    again = run_cli("run", str(study))
    assert again.returncode == 0, again.stderr
    trials = _trials(study)
    assert [t.user_attrs.get("status") for t in trials] == ["timeout", "ok"], again.stderr[-2000:]
    assert (
        trials[1].params == trials[0].params and trials[1].user_attrs["seed"] == trials[0].user_attrs["seed"]
    )
    report = run_cli("report", str(study), "--json", str(tmp_path / "r.json"))
    assert report.returncode == 0 and len(json.loads((tmp_path / "r.json").read_text())["front"]) == 1
    assert json.loads((tmp_path / "r.json").read_text())["unranked"] == []


def test_limit_below_the_framework_footprint_is_bad_input(tiny_data: Path, tmp_path: Path) -> None:
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY_STUDY.format(data=tiny_data).replace("6GiB", "300MiB"))
    done = run_cli("run", str(study), timeout=120)
    assert done.returncode == 2 and "below the framework's own footprint" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "tiny.db").exists() or not _trials(study)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("space: [unclosed", "not valid YAML"),
        ("colour: blue", "colour: unknown key"),
        ("space: {batch: []}", "space.batch: must list at least one value"),
        ("space: {imgsz: {low: 320, high: 128}}", "low (320) > high (128)"),
        ("space: {imgsz: [0, 64]}", "imgsz must be >= 1"),
        ("storage: sqlite:////no/such/folder/x.db", "cannot be opened"),
        ("space: {imgsz: {low: 32, high: 100000000}}", "99999969 values; at most 256"),
        ("model: 5", "model: Input should be a valid string"),
        ("memory_limit: [1]", "memory_limit: not a memory size"),  # the last of a repeated key wins
        ("memory_limit: .inf", "memory_limit: not a memory size"),
        ("memory_limit: -1GiB", "memory_limit: memory size must be positive: '-1GiB'"),
        ("timeout: 1 2", "timeout: not a duration"),
        ("accuracy_min_df: 0", "accuracy_min_df: Input should be greater than or equal to 1"),
        ("accuracy_noise_prior: {sd: 0.05}", "accuracy_noise_prior.df: Field required"),
        ("accuracy_noise_prior: {sd: 0, df: 4}", "accuracy_noise_prior.sd: Input should be greater than 0"),
        ("accuracy_family_wise: sometimes", "accuracy_family_wise: Input should be a valid boolean"),
        # Optuna would cut the range to 97-129 with a warning.
        ("space: {imgsz: {low: 97, high: 160, step: 32}}", "not a multiple of step (32): high 129 or 161?"),
        # A mapping is a range: its own error, not "should be a valid list".
        ("space: {imgsz: {low: 96, high: 160, step: 0}}", "space.imgsz.step: Input should be greater than 0"),
        ("space: {imgsz: {low: 96, high: 160, stp: 32}}", "space.imgsz.stp: unknown key"),
        ("space: {imgsz: abc}", "space.imgsz: expected a list of values or a range {low, high, step}"),
        ("space: {imgsz: [64, 100]}", "space.imgsz: 100 is not a multiple of 32: it would train as 128"),
        ("space: [a]", "space: expected a mapping of keys"),
        ("accuracy_noise_prior: 3", "accuracy_noise_prior: expected a mapping of keys"),
        (
            "memory_limit: 12",
            "memory_limit: 12 is 12 bytes, less than any training needs; give a unit, e.g. 12GiB",
        ),
        (
            "gpu_memory_limit: 500KiB",
            "gpu_memory_limit: '500KiB' is 512000 bytes, less than any training needs",
        ),
        ("name: ../escape", "name: '../escape': a plain name, without a path"),
        ("storage: other.db", "storage 'other.db' is not a storage URL: a file is sqlite:///other.db or"),
        ("model: nosuch.pt", "model checkpoint not found: "),  # refused before the storage is created
    ],
)
def test_bad_study_files(tiny_data: Path, tmp_path: Path, change: str, message: str) -> None:
    base = TINY_STUDY.format(data=tiny_data).split("space:")[0]
    study = tmp_path / "bad.yaml"
    study.write_text(base + change + "\n")
    done = run_cli("run", str(study), timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in done.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["bad.yaml"]  # no storage, no records


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        # A misspelt required key is unknown and the key it stands for missing: the typo is named.
        ("memory_limt: 1GiB", "memory_limt: unknown key (did you mean memory_limit?)"),
        ("memory_limit: 1GiB\nepoch: 3", "epoch: unknown key (did you mean epochs?)"),
        (
            "memory_limit: 1GiB\nspace: {imgsz: {low: 96, high: 160, stp: 32}}",
            "space.imgsz.stp: unknown key (did you mean step?)",
        ),
        (
            "memory_limit: 1GiB\naccuracy_noise_prior: {sd: 0.05, dff: 3}",
            "accuracy_noise_prior.dff: unknown key (did you mean df?)",
        ),
        # Nothing close: the required key still missing is named too.
        ("limit: 1GiB", "limit: unknown key; memory_limit: Field required"),
    ],
)
def test_an_unknown_key_says_which_key_was_meant(tmp_path: Path, keys: str, message: str) -> None:
    study = tmp_path / "typo.yaml"
    study.write_text(f"name: typo\ndata: demo\n{keys}\n")
    with pytest.raises(InputError) as caught:
        load_study_spec(study)
    assert str(caught.value) == f"{study}: {message}"


def test_a_model_path_is_relative_to_the_study_file(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As data and hyp are: the study's folder, not the shell's, whatever the command is run from.
    folder = tmp_path / "studies"
    (folder / "models").mkdir(parents=True)
    ultralytics = package_folder("ultralytics")
    assert ultralytics is not None
    shutil.copy(ultralytics / "cfg" / "models" / "11" / "yolo11.yaml", folder / "models" / "mine.yaml")
    base = TINY_STUDY.format(data=tiny_data).split("space:")[0]
    study = folder / "mine.yaml"
    study.write_text(base + "model: models/mine.yaml\n")
    monkeypatch.chdir(tmp_path)
    spec = load_study_spec(study)
    # The framework is read from that file: an anchor-free head is ultralytics'.
    assert spec.model == str(folder / "models" / "mine.yaml") and spec.framework == "ultralytics"
    study.write_text(base)
    assert load_study_spec(study).model == "yolov5n.yaml"  # no such file beside it: the shipped model


def test_a_relative_storage_in_the_study_file_is_beside_it(tiny_data: Path, tmp_path: Path) -> None:
    # Run from another folder, a study file's relative storage must still name the stored study: read
    # against the shell's folder, it would open a new, empty study there.
    folder = tmp_path / "studies"
    folder.mkdir()
    study = folder / "tiny.yaml"
    study.write_text(TINY_STUDY.format(data=tiny_data) + "storage: sqlite:///stored/tiny.db\n")
    (folder / "stored").mkdir()
    optuna.create_study(
        study_name="tiny",
        storage=f"sqlite:///{folder / 'stored' / 'tiny.db'}",
        directions=["maximize", "minimize"],
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run_cli("status", str(study), timeout=60, cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"tiny on sqlite:///{folder.resolve() / 'stored' / 'tiny.db'}\n"), (
        done.stdout
    )
    assert list(elsewhere.iterdir()) == []
    # On the command line a relative path stays the shell's, as for any command.
    done = run_cli(
        "status", str(study), "--storage", "sqlite:///../studies/stored/tiny.db", timeout=60, cwd=elsewhere
    )
    assert done.returncode == 0 and done.stdout.startswith("tiny on sqlite:///../studies/stored/tiny.db\n"), (
        done
    )


def test_a_study_stored_where_its_relative_storage_was_once_read_is_not_started_again(
    tiny_data: Path, tmp_path: Path
) -> None:
    # Before 2026-12-06 a study file's relative storage was read against the working directory: a
    # study stored there must not silently become a new, empty one beside the study file.
    folder = tmp_path / "studies"
    folder.mkdir()
    study = folder / "tiny.yaml"
    study.write_text(TINY_STUDY.format(data=tiny_data) + "storage: sqlite:///tiny-stored.db\n")
    optuna.create_study(
        study_name="tiny",
        storage=f"sqlite:///{tmp_path / 'tiny-stored.db'}",
        directions=["maximize", "minimize"],
    )
    for command in ("run", "status"):
        done = run_cli(command, str(study), timeout=60, cwd=tmp_path)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert (
            str(folder.resolve() / "tiny-stored.db") in lines[0]
            and str(tmp_path / "tiny-stored.db") in lines[0]
        )
    assert sorted(p.name for p in folder.iterdir()) == ["tiny.yaml"]


@pytest.mark.slow
def test_other_objectives_refused_and_nothing_lost(tiny_study: Path, tmp_path: Path) -> None:
    study = _copy_study(tiny_study, tmp_path)
    before = sqlite3.connect(tmp_path / "tiny.db").execute("select count(*) from trials").fetchone()
    study.write_text(study.read_text() + "objectives: [map50, peak_host]\n")
    done = run_cli("run", str(study), timeout=60)
    assert done.returncode == 2 and "has objectives" in done.stderr
    after = sqlite3.connect(tmp_path / "tiny.db").execute("select count(*) from trials").fetchone()
    assert before == after


@pytest.mark.slow
@pytest.mark.parametrize("batch", ["[4, 8, 16]", "{low: 4, high: 8, step: 4}"])
def test_other_knob_choices_refused_and_nothing_lost(tiny_study: Path, tmp_path: Path, batch: str) -> None:
    # Optuna cannot sample a knob from other choices within one study: said in one line, up front.
    study = _copy_study(tiny_study, tmp_path)
    before = sqlite3.connect(tmp_path / "tiny.db").execute("select count(*) from trials").fetchone()
    study.write_text(study.read_text().replace("batch: [4, 8]", f"batch: {batch}"))
    done = run_cli("run", str(study), timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1
    assert "sampled batch from [4, 8], the study file now says" in done.stderr
    after = sqlite3.connect(tmp_path / "tiny.db").execute("select count(*) from trials").fetchone()
    assert before == after


@pytest.mark.slow
def test_a_storage_failing_mid_run_is_one_line_and_loses_nothing(tiny_study: Path, tmp_path: Path) -> None:
    study = _copy_study(tiny_study, tmp_path)
    study.write_text(study.read_text().replace("n_trials: 3", "n_trials: 4"))
    holder = sqlite3.connect(tmp_path / "tiny.db", isolation_level=None)
    before = holder.execute("select count(*) from trials").fetchone()
    holder.execute("begin immediate")  # another process writes: readers pass, writers wait, then fail
    try:
        done = run_cli("run", str(study), timeout=120)
    finally:
        holder.execute("rollback")
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "the study's storage failed: database is locked" in done.stderr
    assert holder.execute("select count(*) from trials").fetchone() == before


def test_missing_study_for_report(tiny_data: Path, tmp_path: Path) -> None:
    study = tmp_path / "new.yaml"
    study.write_text(TINY_STUDY.format(data=tiny_data))
    done = run_cli("report", str(study), timeout=60)
    assert done.returncode == 2 and "run it first" in done.stderr
    assert f"its storage file {tmp_path / 'tiny.db'} does not exist" in done.stderr
    done = run_cli("status", str(study), "--storage", f"journal:{tmp_path / 'new.journal'}", timeout=60)
    assert done.returncode == 2 and "run it first" in done.stderr
    nowhere = run_cli("status", str(study), "--storage", "sqlite:////nonexistent/dir/x.db", timeout=60)
    assert "is in a folder that does not exist (/nonexistent/dir): run it first" in nowhere.stderr
    # A read-only command creates no storage: an empty journal would hide the SQLite file later.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.yaml"]


@pytest.mark.slow
def test_ctrl_c_keeps_results_and_the_next_run_retrains_the_interrupted_config(
    tiny_study: Path, tmp_path: Path
) -> None:
    # No probes here: the first child to appear is the training to interrupt (probes: the next test).
    study = _copy_study(tiny_study, tmp_path, n_trials="4", epochs="40", probe_share="0")
    cli = subprocess.Popen(
        [sys.executable, "-m", "search", "run", str(study)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not trainer_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(4)
    cli.send_signal(signal.SIGINT)
    _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 130, stderr
    assert trainer_processes() == []
    trials = _trials(study)
    interrupted = [t for t in trials if t.user_attrs.get("status") == "interrupted"]
    assert len(interrupted) == 1 and interrupted[0].state == optuna.trial.TrialState.FAIL
    trained = [t for t in trials if t.user_attrs.get("status") == "ok" and "duplicate_of" not in t.user_attrs]
    assert len(trained) == 3  # nothing stored was lost
    # The interrupted training is not one done, by the study's count or by this worker's.
    assert "3/4 trainings done (0 trained by this worker" in " ".join(stderr.split()), stderr
    study.write_text(study.read_text().replace("epochs: 40", "epochs: 1"))
    _forget_setup(tmp_path)
    done = run_cli("run", str(study))
    assert done.returncode == 0, done.stderr
    resumed = [
        t for t in _trials(study) if t.number > interrupted[0].number and "duplicate_of" not in t.user_attrs
    ]
    assert resumed and resumed[0].user_attrs["config"] == interrupted[0].user_attrs["config"]
    assert resumed[0].user_attrs["status"] == "ok"


@pytest.mark.slow
def test_ctrl_c_during_a_probe_frees_its_claim_and_the_next_run_probes_it(
    tiny_study: Path, tmp_path: Path
) -> None:
    from search.probe._store import PROBE_STUDY

    # On a subset, the resumed study's first child is a probe: the anchor (its whole-dataset figures).
    study = _copy_study(tiny_study, tmp_path, n_trials="4", train_images="8")
    storage = f"sqlite:///{tmp_path / 'tiny.db'}"
    before = len(optuna.load_study(study_name=PROBE_STUDY, storage=storage).get_trials())
    cli = subprocess.Popen(
        [sys.executable, "-m", "search", "run", str(study)], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not trainer_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # in the probe
    cli.send_signal(signal.SIGINT)
    _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 130, stderr
    assert trainer_processes() == []
    probes = optuna.load_study(study_name=PROBE_STUDY, storage=storage).get_trials()
    assert len(probes) == before + 1
    assert probes[-1].state == optuna.trial.TrialState.FAIL  # the claim is freed, not left RUNNING
    assert "interrupted" in probes[-1].user_attrs["memfront:discarded"]
    done = run_cli("run", str(study))
    assert done.returncode == 0, done.stderr
    again = optuna.load_study(study_name=PROBE_STUDY, storage=storage).get_trials()
    assert any(t.state == optuna.trial.TrialState.COMPLETE and t.params == probes[-1].params for t in again)


@pytest.mark.slow
def test_jobs_move_a_sqlite_study_into_a_journal(tiny_study: Path, tmp_path: Path) -> None:
    from search.study._prepare import prepare_study

    spec_path = _copy_study(tiny_study, tmp_path)
    before = _trials(spec_path)
    prepared = prepare_study(load_study_spec(spec_path), spec_path, jobs=2)
    assert prepared.url.startswith("journal:///") and (tmp_path / "tiny.journal").is_file()
    after = _trials(spec_path)  # every command now finds the study in the journal
    assert storage_url(load_study_spec(spec_path), spec_path).startswith("journal:")
    assert [(t.number, t.state, t.values, t.user_attrs) for t in after] == [
        (t.number, t.state, t.values, t.user_attrs) for t in before
    ]
    assert (tmp_path / "tiny.db").is_file()  # left as it was


def test_a_study_file_that_is_not_text_or_is_a_folder_is_one_line(tmp_path: Path) -> None:
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\ndata: demo\nmemory_limit: 1GiB\n")
    for path, message in ((latin, "not a text file in UTF-8"), (tmp_path, "is a folder; give a study file")):
        for command in ("run", "status", "report"):
            done = run_cli(command, str(path), timeout=60)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2 and len(lines) == 1 and message in lines[0], (command, done.stderr)


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_file_is_valid(path: Path) -> None:
    # The examples are what users copy: each must pass the checks a study file of their own gets.
    spec = load_study_spec(path)
    assert spec.name and spec.space.choices("imgsz")


def test_a_dataset_with_no_readable_training_image_is_refused_before_any_storage(tmp_path: Path) -> None:
    data = make_demo_dataset(tmp_path / "broken", images=3, val_images=2, size=32)
    for image in (tmp_path / "broken" / "images" / "train").iterdir():
        image.write_bytes(b"not an image")
    study = tmp_path / "broken.yaml"
    study.write_text(yaml.safe_dump({"name": "broken", "data": str(data), "memory_limit": "4GiB"}))
    done = run_cli("run", str(study), timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "no training image can be read" in lines[-1], done.stderr
    assert not (tmp_path / "broken.db").exists()  # refused before the storage was created


def test_labels_of_a_class_the_data_yaml_lacks_are_refused_before_any_storage(tmp_path: Path) -> None:
    # yolov5 would fail every training on them (train.py: "Label class 99 exceeds nc=3").
    data = make_demo_dataset(tmp_path / "bad-labels", images=3, val_images=2, size=32)
    label = tmp_path / "bad-labels" / "labels" / "train" / "000001.txt"
    label.write_text("99 0.5 0.5 0.2 0.2\n")
    study = tmp_path / "bad.yaml"
    study.write_text(yaml.safe_dump({"name": "bad", "data": str(data), "memory_limit": "4GiB"}))
    done = run_cli("run", str(study), timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    expected = f"1 label file has a class id not below the 3 classes of its names (e.g. {label}: class 99)"
    assert expected in lines[0]
    assert lines[0].endswith("yolov5 fails a training that reads it")
    assert not (tmp_path / "bad.db").exists()  # refused before the storage was created


@pytest.mark.slow
def test_a_setup_that_fails_every_training_alike_stops_the_run(tmp_path: Path) -> None:
    # Every training image is cut short after its header: memfront reads its size, but yolov5's
    # verification drops each one as corrupt and refuses every training alike ("No labels found"),
    # so the run stops after three instead of spending all its trainings on it, and says so with
    # exit 1. Failed trainings do not count toward n_trials: once fixed, the study trains them all.
    data = make_demo_dataset(tmp_path / "bad-images", images=8, val_images=4, size=64)
    for image in (tmp_path / "bad-images" / "images" / "train").iterdir():
        image.write_bytes(_truncated_png(64))
    study = tmp_path / "bad.yaml"
    text = TINY_STUDY.format(data=data).replace("name: tiny", "name: bad") + "probe_share: 0\n"
    study.write_text(text.replace("n_trials: 3", "n_trials: 6"))
    done = run_cli("run", str(study), timeout=600)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1, done.stderr
    assert "3 trainings in a row failed alike (AssertionError: train: No labels found" in said, said
    assert "fix it and run again (failed trainings do not count toward n_trials)" in said, said
    assert "memfront-trial-" not in said  # the user's files named, not the trial's copies
    trials = [t for t in _trials(study) if "duplicate_of" not in t.user_attrs]
    assert [t.user_attrs["status"] for t in trials] == ["failed"] * 3
    assert "0/6 trainings done" in said, said
    make_demo_dataset(tmp_path / "bad-images", images=8, val_images=4, size=64)  # fixed
    study.write_text(text.replace("n_trials: 3", "n_trials: 1"))  # failures counted would leave none
    done = run_cli("run", str(study), timeout=600)
    assert done.returncode == 0, done.stderr
    statuses = [t.user_attrs["status"] for t in _trials(study) if "duplicate_of" not in t.user_attrs]
    assert statuses == ["failed"] * 3 + ["ok"], statuses
