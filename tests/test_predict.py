"""The memory model: its terms on controlled inputs, its fit, and the predict command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from search.data._dataset import load_dataset
from search.data._demo import make_demo_dataset
from search.errors import InputError
from search.measure import _footprint as footprint
from search.model._calibration import Calibration, cache_dir, calibration_key
from search.model._predict import (
    MODEL_STATE_BYTES,
    PRIORS,
    TERMS,
    DatasetStats,
    MemoryModel,
    features,
    loader_workers,
)
from search.model._preflight import Preflight, combined_fit, study_memory_model
from search.model._start import load_starting_model, starting_model

from .conftest import run_cli

MIB = 1024**2


def test_cache_term_is_the_bytes_of_the_resized_images(tmp_path: Path) -> None:
    data_yaml = make_demo_dataset(tmp_path, images=6, val_images=3, size=200)
    # One landscape image among them: yolov5 resizes the long side to imgsz, keeping the aspect.
    Image.new("RGB", (300, 120)).save(tmp_path / "images" / "train" / "000000.jpg")
    stats = DatasetStats.read(load_dataset(data_yaml))
    expected = 0
    for path in sorted((tmp_path / "images").rglob("*.jpg")):
        with Image.open(path) as image:
            ratio = 128 / max(image.size)
            expected += math.ceil(image.width * ratio) * math.ceil(image.height * ratio) * 3
    assert stats.cache_bytes(128) == expected
    ram = features(batch=8, imgsz=128, cache="ram", workers=0, stats=stats)
    none = features(batch=8, imgsz=128, cache="none", workers=0, stats=stats)
    assert ram["ram_cache"] == expected and none["ram_cache"] == 0 and ram["worker_cache_copies"] == 0
    # imgsz is rounded up to the stride, as yolov5 does.
    assert features(batch=8, imgsz=100, cache="none", workers=0, stats=stats)["activations"] == 8 * 128 * 128
    # A larger dataset of the same kind: the mean training image scaled, val unchanged.
    scaled = stats.cache_bytes(128, train_images=60)
    train_only = stats.cache_bytes(128) - stats._resized_bytes(stats.val_sizes, 128)
    assert scaled == pytest.approx(train_only * 10 + stats._resized_bytes(stats.val_sizes, 128))


def test_workers_as_yolov5_caps_them() -> None:
    assert loader_workers(8, 16, cpus=2) == (2, 2)
    assert loader_workers(1, 16, cpus=4) == (1, 2)
    assert loader_workers(4, 1, cpus=8) == (0, 2)  # yolov5 uses no worker for a batch of 1


def test_fit_recovers_known_coefficients() -> None:
    truth = {
        "framework": 1.2e9,
        "activations": 80.0,
        "ram_cache": 1.1,
        "worker_processes": 9e7,
        "worker_cache_copies": 0.4,
    }
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(30):
        cache = float(rng.uniform(0, 5e8)) if rng.random() < 0.6 else 0.0
        workers = float(rng.integers(0, 4))
        row = {
            "framework": 1.0,
            "activations": float(rng.integers(4, 64) * 320**2),
            "ram_cache": cache,
            "worker_processes": workers,
            "worker_cache_copies": cache if workers else 0.0,
        }
        rows.append((row, sum(truth[k] * row[k] for k in TERMS)))
    model = MemoryModel.prior().fit(rows)
    for name in TERMS:
        assert model.coefficients[name] == pytest.approx(truth[name], rel=1e-3)
    assert model.max_error is not None and model.max_error < 1e-6 and model.samples == 30


def test_terms_that_never_varied_keep_their_prior() -> None:
    rows = [
        (
            {
                "framework": 1.0,
                "activations": a,
                "ram_cache": 0.0,
                "worker_processes": 0.0,
                "worker_cache_copies": 0.0,
            },
            1e9 + 50 * a,
        )
        for a in (1e6, 4e6, 9e6)
    ]
    model = MemoryModel.prior().fit(rows)
    assert set(model.fitted_terms) == {"framework", "activations"}
    assert model.coefficients["ram_cache"] == MemoryModel.prior().coefficients["ram_cache"]
    assert model.coefficients["activations"] == pytest.approx(50, rel=1e-6)


def test_predict_command(tiny_data: Path, tmp_path: Path) -> None:
    done = run_cli(
        "predict",
        "--data",
        str(tiny_data),
        "--batch",
        "16",
        "--imgsz",
        "640",
        "--cache",
        "ram",
        "--workers",
        "8",
        "--images",
        "37000",
        "--max-memory",
        "32GB",
        "--json",
        str(tmp_path / "p.json"),
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads((tmp_path / "p.json").read_text())
    assert set(payload["terms"]) == set(TERMS)
    assert payload["total_bytes"] == pytest.approx(sum(payload["terms"].values()), abs=len(TERMS))
    assert payload["terms"]["ram_cache"] > 37000 * 640 * 640 * 3 * 0.9  # 37k images at 640 px
    assert "largest_batch" in payload["fits"] and "cache_modes" in payload["fits"]
    assert "total" in done.stdout
    # 16 training images: the frameworks cap the batch there, so no larger one is suggested.
    small = run_cli(
        "predict", "--data", str(tiny_data), "--batch", "4", "--imgsz", "64", "--max-memory", "64GiB"
    )
    assert small.returncode == 0, small.stderr
    assert "largest batch 16 (every training image: no larger batch)" in " ".join(small.stdout.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "0"], "--batch"),
        (["--images", "0"], "--images"),
        (["--max-memory", "lots"], "--max-memory"),
        (["--amp", "maybe"], "--amp"),
        (["--model", "/nonexistent.pt"], "model checkpoint not found: /nonexistent.pt"),
        (["--device", "gpu"], "device 'gpu': expected cpu"),
    ],
)
def test_predict_bad_input(tiny_data: Path, args: list[str], message: str) -> None:
    done = run_cli("predict", "--data", str(tiny_data), *args, timeout=60)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and message in done.stderr


def test_predict_skips_an_unreadable_image_and_refuses_no_images(tmp_path: Path) -> None:
    data_yaml = make_demo_dataset(tmp_path, images=3, val_images=2, size=32)
    corrupt = tmp_path / "images" / "train" / "000001.jpg"
    corrupt.write_bytes(b"not an image")
    # yolov5 and ultralytics skip a corrupt image with a warning: so do the figures, saying so.
    stats = DatasetStats.read(load_dataset(data_yaml))
    assert len(stats.train_sizes) == 2 and stats.unreadable_images == (corrupt,) and stats.unreadable[0][1]
    done = run_cli("predict", "--data", str(data_yaml), timeout=120)
    assert done.returncode == 0 and "1 image of the dataset cannot be read" in done.stderr.replace("\n", "")
    for image in (tmp_path / "images" / "train").iterdir():
        image.write_bytes(b"not an image either")
    with pytest.raises(InputError, match="no training image can be read"):
        DatasetStats.read(load_dataset(data_yaml))
    for image in (tmp_path / "images" / "train").iterdir():
        image.unlink()
    done = run_cli("predict", "--data", str(data_yaml), timeout=60)
    assert done.returncode == 2 and "no images" in done.stderr


def _stub_footprint(monkeypatch: pytest.MonkeyPatch, value: int) -> list[str]:
    """Replaces the footprint probe with ``value``; returns the devices it was asked for."""
    asked: list[str] = []

    def fake(*, device: str = "cpu", framework: str = "yolov5") -> int:
        asked.append(device)
        return value

    monkeypatch.setattr(footprint, "framework_footprint_bytes", fake)
    return asked


def test_uncalibrated_model_is_anchored_on_the_measured_footprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(tmp_path / "cache"))  # no calibration here
    asked = _stub_footprint(monkeypatch, 845 * MIB)
    start = load_starting_model("yolov5n.yaml", "0")
    assert start.source == "footprint" and asked == ["0"] and start.calibration_rows == []
    assert start.model.coefficients["framework"] == 845 * MIB + MODEL_STATE_BYTES
    assert {k: v for k, v in start.model.coefficients.items() if k != "framework"} == {
        k: v for k, v in PRIORS.items() if k != "framework"
    }
    assert start.origin.startswith(
        "uncalibrated: framework term from this machine's measured footprint (845 MiB)"
    )
    assert "run `memfront calibrate`" in start.origin
    assert start.to_dict() == {
        "source": "footprint",
        "calibration_runs": 0,
        "footprint_bytes": 845 * MIB,
        "model_state_bytes": MODEL_STATE_BYTES,
    }
    # Pre-flight and the study's model start from the same model when no calibration exists.
    stats = DatasetStats(train_sizes=((96, 96),) * 4, val_sizes=((96, 96),))
    preflight = Preflight(stats=stats, limit_bytes=4 * 1024**3, margin=0.1, device="0")
    assert preflight.start.source == "footprint" and preflight.model.coefficients == start.model.coefficients
    studied = study_memory_model([], stats, model_name="yolov5n.yaml", device="0")
    assert studied.coefficients == start.model.coefficients
    # One measured run refits the framework term; the terms it cannot separate keep the anchored priors.
    row = features(batch=4, imgsz=64, cache="none", workers=0, stats=stats)
    refitted = combined_fit([], [(row, 1.1e9)], base=preflight.start.model)
    assert refitted.predict(row).total_bytes == pytest.approx(1.1e9, rel=1e-6)
    assert refitted.coefficients["activations"] == PRIORS["activations"]


def test_starting_model_prefers_the_calibration_and_falls_back_to_priors(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked = _stub_footprint(monkeypatch, 845 * MIB)
    fitted = MemoryModel(coefficients={**PRIORS, "framework": 1.0e9}, samples=6, median_error=0.01)
    rows = [({name: 1.0 for name in TERMS}, 1.0e9)]
    start = starting_model(calibration=Calibration(rows=rows, model=fitted), device="cpu")
    assert start.source == "calibration" and start.model is fitted and start.calibration_rows == rows
    assert start.origin == "calibrated on this machine (6 runs, median error 1.0%)" and asked == []

    def broken(*, device: str = "cpu", framework: str = "yolov5") -> int:
        raise InputError("cannot import torch and yolov5 to measure the framework's footprint: boom")

    monkeypatch.setattr(footprint, "framework_footprint_bytes", broken)
    start = starting_model(calibration=None, device="cpu")
    assert start.source == "priors" and start.model.coefficients == PRIORS
    assert (
        start.origin.startswith("uncalibrated (priors; no footprint: cannot import")
        and "boom" in start.origin
    )


def test_predict_command_uses_the_cached_footprint_and_json_to_stdout(
    tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMFRONT_CACHE_DIR", str(tmp_path / "cache"))  # the CLI child inherits it
    # The footprint `memfront run` caches for this machine (search/measure/_footprint.py reads it back).
    cached = cache_dir() / "footprint" / f"{calibration_key('framework', 'cpu')}.json"
    cached.parent.mkdir(parents=True)
    cached.write_text(json.dumps({"pss_bytes": 845 * MIB}) + "\n")
    done = run_cli(
        "predict", "--data", str(tiny_data), "--batch", "4", "--imgsz", "64", "--amp", "on", "--json", "-"
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)  # nothing but the JSON on stdout
    # What the CLI read: 845 MiB, unless the cache's format changed and it measured the real one.
    known = footprint.framework_footprint_bytes(device="cpu")
    assert payload["basis"]["source"] == "footprint" and payload["basis"]["footprint_bytes"] == known
    assert payload["terms"]["framework"] == known + MODEL_STATE_BYTES
    assert payload["origin"].startswith(
        f"uncalibrated: framework term from this machine's measured footprint ({known / MIB:.0f} MiB)"
    )
    assert payload["knobs"] == {"batch": 4, "imgsz": 64, "cache": "none", "workers": 0, "amp": True}
    assert "GPU memory only" in payload["knobs_without_effect"]["amp"]
    assert "total" in done.stderr and "measured footprint" in done.stderr  # the table went to stderr
    # AMP does not change the host prediction.
    off = run_cli("predict", "--data", str(tiny_data), "--batch", "4", "--imgsz", "64", "--json", "-")
    assert json.loads(off.stdout)["total_bytes"] == payload["total_bytes"]


def test_predict_rejects_amp_exactly_as_trial_does(tiny_data: Path) -> None:
    predicted = run_cli("predict", "--data", str(tiny_data), "--amp", "yes", timeout=60)
    trial = run_cli("trial", "--data", str(tiny_data), "--amp", "yes", timeout=60)
    assert predicted.returncode == trial.returncode == 2
    assert predicted.stderr == trial.stderr and len(predicted.stderr.strip().splitlines()) == 1
