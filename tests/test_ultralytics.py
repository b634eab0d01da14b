"""Real tiny ultralytics trials (YOLOv8n, YOLO11n from yaml; 16 images, imgsz 64, 1 epoch).

The same supervisor, statuses, limits and clean-up as yolov5's (tests/test_supervisor.py); what is
ultralytics' own: what it really ran (no dataloader worker on a CPU), its settings, fonts and label
caches kept out of the home and the dataset, a probe through its trainer, a study end to end, and
the exported ``yolo`` command.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from search.data._demo import make_demo_dataset
from search.errors import InputError
from search.probe import ProbeBounds, run_probe
from search.trial._config import TrialConfig, TrialLimits
from search.trial._supervisor import run_trial

from .conftest import child_hook, child_temp_folders, run_cli, trainer_processes

TINY = {"batch": 8, "imgsz": 64, "epochs": 1}


@pytest.fixture
def work(tmp_path: Path) -> Path:
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home (and XDG folders) that must stay empty: the trial's child inherits them."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))
    return home


def _leftovers(work: Path) -> list[Path]:
    return [*work.iterdir(), *child_temp_folders()]


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
@pytest.mark.parametrize("model", ["yolo11n.yaml", "yolov8n.yaml"])
def test_ok_trial_reports_metrics_and_what_ultralytics_ran(
    model: str, tiny_data: Path, work: Path, empty_home: Path
) -> None:
    dataset_files = _files(tiny_data.parent)
    record = run_trial(
        config=TrialConfig(data=str(tiny_data), model=model, workers=2, cache="ram", **TINY),
        limits=TrialLimits(memory_limit_bytes=8 * 1024**3),
        workdir=work,
    )
    assert record.status == "ok", record.log_tail
    assert record.requested["framework"] == "ultralytics" and record.requested["model"] == model
    assert record.map50 is not None and record.map50_95 is not None and record.fitness is not None
    (epoch,) = record.epochs
    assert {"map50_95", "box_loss", "cls_loss", "dfl_loss", "val_box_loss", "seconds"} <= set(epoch)
    # Asked for 2 workers: ultralytics' trainer runs none on a CPU, and the record says so.
    assert record.used["workers"] == 0 and record.used["cache"] == "ram" and not record.used["cache_dropped"]
    assert (record.used["batch"], record.used["imgsz"], record.used["train_images"]) == (8, 64, 16)
    assert record.versions["ultralytics"] == importlib.metadata.version("ultralytics")
    assert record.peak_host_bytes and record.peak_host_bytes > 200 * 2**20
    assert {"cache", "training", "validation", "checkpoint"} <= {p["phase"] for p in record.timeline or []}
    # Nothing written into the user's dataset (label caches), home (settings, fonts) or here (runs/).
    assert _files(tiny_data.parent) == dataset_files
    assert list(empty_home.rglob("*")) == []
    assert not Path("runs").exists()
    assert trainer_processes() == [] and _leftovers(work) == []


@pytest.mark.slow
def test_a_limit_stops_an_ultralytics_trial_and_leaves_nothing(tiny_data: Path, work: Path) -> None:
    record = run_trial(
        config=TrialConfig(data=str(tiny_data), model="yolov8n.yaml", **TINY),
        limits=TrialLimits(memory_limit_bytes=300 * 2**20),
        workdir=work,
    )
    assert record.status == "memory_limit" and record.map50_95 is None
    assert record.peak_host_bytes and record.peak_host_bytes >= 300 * 2**20
    assert trainer_processes() == [] and _leftovers(work) == []


@pytest.mark.slow
def test_disk_cache_files_are_removed_and_users_own_kept(tmp_path: Path, work: Path) -> None:
    data_yaml = make_demo_dataset(tmp_path / "data", images=8, val_images=4, size=64)
    users_npy = tmp_path / "data" / "images" / "train" / "000003.npy"
    np.save(users_npy, np.zeros((64, 64, 3), dtype=np.uint8))
    record = run_trial(
        workdir=work, config=TrialConfig(data=str(data_yaml), framework="ultralytics", cache="disk", **TINY)
    )
    assert record.status == "ok", record.log_tail
    assert record.used["cache"] == "disk"
    assert sorted(p.name for p in tmp_path.rglob("*.npy")) == ["000003.npy"]
    assert not list(tmp_path.rglob("*.cache"))


def test_bad_input_starts_nothing(tiny_data: Path, work: Path) -> None:
    with pytest.raises(InputError, match="checkpoint not found"):
        run_trial(workdir=work, config=TrialConfig(data=str(tiny_data), model="yolo11n.pt", **TINY))
    with pytest.raises(InputError, match="one of ultralytics's models"):
        run_trial(
            workdir=work,
            config=TrialConfig(data=str(tiny_data), framework="ultralytics", model="yolo99.yml", **TINY),
        )
    assert _leftovers(work) == []
    done = run_cli("trial", "--data", str(tiny_data), "--framework", "keras")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "memfront: error: --framework: must be one of yolov5, ultralytics: 'keras'"
    ]
    yolov5_hyp = Path(__file__).resolve().parents[1] / "search" / "hyps" / "demo.yaml"
    done = run_cli("trial", "--data", str(tiny_data), "--model", "yolo11n.yaml", "--hyp", str(yolov5_hyp))
    assert done.returncode == 2 and "not ultralytics train settings: anchor_t" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_cuda_out_of_memory_is_memory_limit_without_a_smaller_retry(
    tiny_data: Path, work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No GPU exists here, so the one thing simulated is the GPU running out: a sitecustomize on the
    # child's path makes the model's forward pass raise torch's own CUDA OutOfMemoryError inside
    # ultralytics' batch loop, where its trainer would halve the batch and retry. Everything else is
    # the real path: the retry switched off, the child's handler, its exit code, the record.
    attempts = tmp_path / "attempts.txt"
    child_hook(
        tmp_path,
        monkeypatch,
        "import search.child.ultralytics_compat as compat\n"
        "original = compat.no_oom_retries\n"
        "def no_oom_retries(trainer):\n"
        "    original(trainer)\n"
        "    import torch\n"
        "    def forward(*args, **kwargs):\n"
        f"        open({str(attempts)!r}, 'a').write('batch %d\\n' % trainer.batch_size)\n"
        "        message = 'CUDA out of memory. Tried to allocate 2.00 GiB (simulated)'\n"
        "        raise torch.cuda.OutOfMemoryError(message)\n"
        "    trainer.model.forward = forward\n"
        "compat.no_oom_retries = no_oom_retries\n",
    )
    record = run_trial(workdir=work, config=TrialConfig(data=str(tiny_data), framework="ultralytics", **TINY))
    assert record.status == "memory_limit" and record.exit_code == 3, record.log_tail
    assert record.error and record.error.startswith("CUDA out of memory: CUDA out of memory. Tried")
    assert attempts.read_text() == "batch 8\n"  # one attempt at the batch asked for, no halved retry
    assert trainer_processes() == [] and _leftovers(work) == []


@pytest.mark.slow
def test_a_probe_bounds_ultralytics_loops(tiny_data: Path) -> None:
    config = TrialConfig(data=str(tiny_data), model="yolo11n.yaml", batch=2, imgsz=64, cache="ram")
    result = run_probe(
        config,
        bounds=ProbeBounds(train_min_batches=2, train_max_batches=3, val_min_batches=1, val_max_batches=2),
    )
    assert result.ok, result.error
    assert (result.train_images, result.val_images) == (16, 16)
    # Two bounded epochs (ProbeBounds.validation_passes), each to its own plateau or bound.
    assert result.train["batches"] <= 2 * 3 and result.train["batches_total"] == 8
    assert result.val["batches"] <= 2 * 2 and result.val["batches_total"] > 2
    passes = [e["split"] for e in result.record["timeline"] if e["phase"] == "validation"]
    assert passes == ["pass 1", "pass 2"]
    # Each epoch saves its checkpoint after its pass, as the real run does; the probe ends after the second.
    phases = [e["phase"] for e in result.record["timeline"]]
    assert phases.count("checkpoint") == 2 and phases[-2:] == ["checkpoint", "shutdown"]
    assert result.projected_epoch_seconds and result.projected_epoch_seconds > 0
    assert result.peak_host_bytes and result.peak_host_bytes > 100 * 2**20
    assert trainer_processes() == []


ULTRALYTICS_STUDY = """\
name: tiny-ultralytics
data: {data}
framework: ultralytics
hyp: demo
epochs: 1
n_trials: 3
memory_limit: 6GiB
sampler: random
seed: 1
probe_share: 0
space:
  batch: [4, 8]
  imgsz: {{low: 64, high: 96, step: 32}}
  cache: [none, ram]
  workers: [0, 1]
  amp: [false, true]
"""


@pytest.mark.slow
def test_a_study_end_to_end_and_the_exported_commands_run(tiny_data: Path, tmp_path: Path) -> None:
    spec_path = tmp_path / "study.yaml"
    spec_path.write_text(ULTRALYTICS_STUDY.format(data=tiny_data))
    done = run_cli("run", str(spec_path))
    assert done.returncode == 0, done.stderr
    assert "workers fixed at 0: ultralytics starts no dataloader worker on cpu" in done.stdout + done.stderr
    report = run_cli("report", str(spec_path), "--json", str(tmp_path / "report.json"))
    assert report.returncode == 0, report.stderr
    assert (
        "trained with ultralytics (yolo11n.yaml); an accuracy config is its batch, imgsz, cache, amp"
        in report.stdout
    )
    payload = json.loads((tmp_path / "report.json").read_text())
    assert (payload["framework"], payload["system_knobs"]) == ("ultralytics", ["workers"])
    trials = payload["trials"]
    trained = [t for t in trials if t["status"] == "ok"]
    assert len(trained) == 3 and all(t["workers"] == 0 for t in trained)
    plotted = run_cli("plot", str(spec_path), "-o", str(tmp_path / "front.png"))
    assert plotted.returncode == 0 and (tmp_path / "front.png").stat().st_size > 10_000, plotted.stderr
    predicted = run_cli(
        "predict", "--data", str(tiny_data), "--framework", "ultralytics", "--workers", "4", "--json", "-"
    )
    assert predicted.returncode == 0, predicted.stderr
    assert json.loads(predicted.stdout)["terms"]["worker_processes"] == 0  # none start on a CPU
    # Two local workers on the same study (it moves into a journal): both train.
    spec_path.write_text(spec_path.read_text().replace("n_trials: 3", "n_trials: 5"))
    jobs = run_cli("run", str(spec_path), "--jobs", "2")
    assert jobs.returncode == 0, jobs.stderr
    from search.study._prepare import open_study, storage_url
    from search.study._spec import load_study_spec

    spec = load_study_spec(spec_path)
    study = open_study(spec, storage_url(spec, spec_path), create=False)
    trained = [
        t
        for t in study.get_trials()
        if t.user_attrs.get("status") == "ok" and "duplicate_of" not in t.user_attrs
    ]
    assert len(trained) >= 5 and len({t.user_attrs["worker"] for t in trained[3:]}) == 2
    assert all(t.user_attrs["record"]["requested"]["framework"] == "ultralytics" for t in trained)
    exported = run_cli("export", str(spec_path), "--max-memory", "8GiB", "--epochs", "1")
    assert exported.returncode == 0, exported.stderr
    memfront_line, upstream_line = (line for line in exported.stdout.splitlines() if "train" in line)
    assert memfront_line.startswith("memfront train ") and "--framework ultralytics" in memfront_line
    yolo = upstream_line.split(": ", 1)[1]
    assert yolo.startswith("MALLOC_MMAP_THRESHOLD_=1048576 yolo detect train ") and "epochs=1" in yolo
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ran = subprocess.run(
        [*shlex.split(memfront_line), "--project", str(tmp_path / "memfront")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (tmp_path / "memfront" / "exp" / "weights" / "best.pt").is_file()
    # ultralytics' own command, as printed (the run's folder given, as its users do).
    home = tmp_path / "yolo-home"
    ran = subprocess.run(  # through a shell, as a user pastes it: it starts with an environment setting
        ["sh", "-c", f"{yolo} {shlex.quote('project=' + str(tmp_path / 'yolo'))} name=exp"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
        env={**env, "HOME": str(home), "YOLO_CONFIG_DIR": str(home / "ultralytics"), "YOLO_OFFLINE": "1"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert (tmp_path / "yolo" / "exp" / "weights" / "best.pt").is_file()


@pytest.mark.slow
def test_the_trial_command_says_what_ultralytics_ran(tiny_data: Path) -> None:
    done = run_cli(
        "trial", "--data", str(tiny_data), "--model", "yolo11n.yaml", "--imgsz", "64", "--batch", "8",
        "--workers", "2", "--json", "-",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert record["status"] == "ok" and record["requested"]["framework"] == "ultralytics"
    shown = " ".join(done.stderr.split())  # the table, on stderr with --json -, without its wrapping
    assert "workers 0 (asked 2)" in shown
    assert f"framework ultralytics {importlib.metadata.version('ultralytics')}, yolo11n.yaml" in shown
