"""Benchmark of probes: a probe's peak and epoch time against a full-epoch run of the same config.

What it measures, side by side in one run, on a synthetic demo dataset of ``--images`` training
images (a quarter as many validation images; ``search.data._demo``):

1. For every system variant (cache none/ram/disk x workers 0/2, or those of ``--workers``) of one
   accuracy config: ``--probes`` probes (``search.probe.run_probe``) interleaved with
   ``--full-runs`` real one-epoch trainings on the whole dataset (validation included, as a study's
   trial runs it), in the order full, probe, full, probe, ... Printed: the median probe peak / the
   full runs' median peak (goal within 3%) beside the full runs' own spread (max / min - 1: what
   one run can resolve) and the probes', the probe's projected training seconds against the full
   runs' measured ones, both validation passes, and the probe's own seconds / one full epoch's
   (what a probe costs against one epoch of the real run; a real run has many). Each full run's
   tree peak in each of its validation passes is printed too: with ``--full-epochs N`` they show how
   the real run's memory moves from epoch to epoch (``--caches`` picks variants).
2. Extrapolation: a study that trains on a subset learns memory from its trainings. Short trainings
   on ``images / 10`` training images (what such a study measures) fit the memory model
   (``search.model``); for each variant the model's prediction for the whole dataset (10x the
   largest set trained on) is printed beside the probe's and the full run's peaks.

Run from the repository root (about 15 minutes at 3000 images on 2 cores)::

    .venv/bin/python bench/probe_bench.py [--images 3000] [--full-runs 2] [--probes 1] [--workers 0 2]
        [--caches none ram disk] [--full-epochs 1] [--skip-subset] [--out bench/results/probe_bench.json]

The bench process never imports torch or yolov5 (their pages, mapped here, would be shared with the
runs it measures and lower their PSS).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.data._dataset import load_dataset  # noqa: E402
from search.data._demo import make_demo_dataset  # noqa: E402
from search.model._predict import DatasetStats, features  # noqa: E402
from search.model._preflight import combined_fit, record_features  # noqa: E402
from search.model._start import load_starting_model  # noqa: E402
from search.probe import run_probe  # noqa: E402
from search.trial._config import TrialConfig  # noqa: E402
from search.trial._supervisor import run_trial  # noqa: E402

VARIANTS = [(cache, workers) for workers in (0, 2) for cache in ("none", "ram", "disk")]
SUBSET_CONFIGS = [
    (8, 96, "none", 0),
    (16, 128, "none", 0),
    (16, 128, "ram", 0),
    (8, 128, "ram", 2),
    (16, 96, "none", 2),
]


def _config(data: str, batch: int, imgsz: int, cache: str, workers: int, **extra: Any) -> TrialConfig:
    return TrialConfig(
        data=data, batch=batch, imgsz=imgsz, cache=cache, workers=workers, hyp="demo", epochs=1, **extra
    )  # type: ignore[arg-type]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--imgsz", type=int, default=128)
    parser.add_argument("--full-runs", type=int, default=2, help="full-epoch runs per variant")
    parser.add_argument("--probes", type=int, default=1, help="probes per variant")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="the variants' workers")
    parser.add_argument("--caches", nargs="+", default=["none", "ram", "disk"], help="the variants' caches")
    parser.add_argument("--full-epochs", type=int, default=1, help="epochs of each full run")
    parser.add_argument("--skip-subset", action="store_true", help="no model-only predictions")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "bench" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "probe_bench.json")
    args = parser.parse_args()

    folder = args.data_dir / f"shapes-{args.images}-{args.size}"
    data_yaml = folder / "data.yaml"
    if not data_yaml.is_file():
        make_demo_dataset(folder, images=args.images, size=args.size, seed=0)
    data = str(data_yaml)
    stats = DatasetStats.read(load_dataset(data))
    subset = args.images // 10

    # 2 first: the subset trainings that fit the model (what a study on a subset would have measured).
    rows = []
    for batch, imgsz, cache, workers in [] if args.skip_subset else SUBSET_CONFIGS:
        record = run_trial(_config(data, batch, imgsz, cache, workers, train_images=subset))
        print(
            f"subset {batch}/{imgsz} {cache} w{workers}: {record.status} {record.peak_host_bytes}", flush=True
        )
        if record.status == "ok" and record.peak_host_bytes:
            rows.append((record_features(record.to_dict(), stats), float(record.peak_host_bytes)))
    start = load_starting_model("yolov5n.yaml", "cpu")
    model = combined_fit(start.calibration_rows, rows, base=start.model)

    results = []
    for cache, workers in [v for v in VARIANTS if v[1] in args.workers and v[0] in args.caches]:
        config = _config(data, args.batch, args.imgsz, cache, workers)
        full_config = config.model_copy(update={"epochs": args.full_epochs})
        # Full runs and probes alternate, so that a drift of the machine falls on both alike; the full
        # runs' spread is what one run can resolve.
        fulls: list[dict[str, Any]] = []
        probes: list[dict[str, Any]] = []
        for index in range(max(args.full_runs, args.probes + 1)):
            if index < args.full_runs:
                fulls.append(_full(full_config))
            if index < args.probes:
                probes.append(_probe(config))
        knobs = {"batch": args.batch, "imgsz": args.imgsz, "cache": cache, "workers": workers}
        predicted = (
            model.predict(features(stats=stats, train_images=None, **knobs)).total_bytes if rows else None
        )
        row = {
            "cache": cache,
            "workers": workers,
            "probes": probes,
            "full": fulls,
            "predicted_peak_host_bytes": predicted,
        }
        results.append(row)
        print(_line(row), flush=True)

    print()
    print(_table(results, images=args.images, subset=subset))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
                "images": args.images, "val_images": args.images // 4, "size": args.size,
                "batch": args.batch, "imgsz": args.imgsz, "subset_images": subset,
                "subset_trainings": len(rows), "results": results,
            },
            indent=2,
        )
        + "\n"
    )  # fmt: skip
    print(f"\nwritten to {args.out}")
    return 0


def _probe(config: TrialConfig) -> dict[str, Any]:
    probe = run_probe(config)
    return {
        "status": probe.status, "peak_host_bytes": probe.peak_host_bytes, "peak_phase": probe.peak_phase,
        "projected_epoch_seconds": probe.projected_epoch_seconds, "seconds": probe.seconds,
        "projected_train_seconds": probe.projected_train_seconds,
        "validation_seconds": probe.validation_seconds,
        "images_per_second": probe.images_per_second, "train": probe.train, "val": probe.val,
    }  # fmt: skip


def _full(config: TrialConfig) -> dict[str, Any]:
    record = run_trial(config)
    train = record.epochs[0].get("train_seconds") if record.epochs else None
    return {
        "status": record.status, "peak_host_bytes": record.peak_host_bytes,
        "peak_phase": record.memory.get("peak_phase"), "epoch_seconds": record.epoch_seconds,
        "train_seconds": train,
        "validation_seconds": record.validation_seconds,
        "validation_peaks": _pass_peaks(record),
        "wall_seconds": record.wall_seconds,
    }  # fmt: skip


def _pass_peaks(record: Any) -> list[int]:
    """The tree's peak in each validation pass (the epochs' and yolov5's final one over best.pt)."""
    series = record.memory.get("series") or {}
    times, host = series.get("t_s") or [], series.get("host_bytes") or []
    bounds = [entry["start_s"] for entry in record.timeline]
    peaks = []
    for index, entry in enumerate(record.timeline):
        if entry["phase"] != "validation":
            continue
        end = bounds[index + 1] if index + 1 < len(bounds) else float("inf")
        inside = [h for t, h in zip(times, host, strict=True) if entry["start_s"] <= t < end and h]
        peaks.append(max(inside) if inside else 0)
    return peaks


def _ok(runs: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in runs if r["status"] == "ok" and r.get(key) is not None]


def _mean(runs: list[dict[str, Any]], key: str) -> float | None:
    values = _ok(runs, key)
    return statistics.fmean(values) if values else None


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = _ok(runs, key)
    return statistics.median(values) if values else None


def _spread(runs: list[dict[str, Any]]) -> float | None:
    """max / min - 1 of the runs' peaks."""
    peaks = _ok(runs, "peak_host_bytes")
    return max(peaks) / min(peaks) - 1 if len(peaks) > 1 else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def _line(row: dict[str, Any]) -> str:
    probes, fulls = row["probes"], row["full"]
    probed = ", ".join(f"{p['status']} {_mib(p['peak_host_bytes'])} ({p['peak_phase']})" for p in probes)
    peaks = ", ".join(_mib(f["peak_host_bytes"]) for f in fulls)
    return (
        f"cache {row['cache']:<4} workers {row['workers']}: probes {probed} in "
        f"{_s(_mean(probes, 'seconds'))}, train {_s(_mean(probes, 'projected_train_seconds'))} + val "
        f"{_s(_mean(probes, 'validation_seconds'))}; full runs {peaks}, "
        f"train {_s(_mean(fulls, 'train_seconds'))} + val {_s(_mean(fulls, 'validation_seconds'))}; "
        "the full runs' validation passes peaked at "
        + "; ".join(", ".join(_mib(p) for p in f.get("validation_peaks") or []) for f in fulls)
    )


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(results: list[dict[str, Any]], *, images: int, subset: int) -> str:
    head = (
        "| cache | workers | full-run peaks | spread | probe peaks | spread | probe / full (medians) "
        f"| model only ({subset}-image fit) | model / full median | full train s (1st epoch) | probe train s "
        "| ratio | full val s (median pass) | probe val s | probe s | probe s / full epoch s (median) "
        "| peak set in (probes / full runs) |\n"
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    worst, spreads = [], []
    for row in results:
        probes, fulls = row["probes"], row["full"]
        full_peak = _median(fulls, "peak_host_bytes")
        full_train, full_val = _mean(fulls, "train_seconds"), _mean(fulls, "validation_seconds")
        probe_train = _mean(probes, "projected_train_seconds")
        ratio = _ratio(_median(probes, "peak_host_bytes"), full_peak)
        if ratio is not None:
            worst.append(abs(ratio - 1))
        full_spread = _spread(fulls)
        if full_spread is not None:
            spreads.append(full_spread)
        probe_seconds = _mean(probes, "seconds")
        phases = [", ".join(str(r["peak_phase"]) for r in runs) for runs in (probes, fulls)]
        cells = [
            row["cache"], str(row["workers"]), " / ".join(_mib(f["peak_host_bytes"]) for f in fulls),
            _pct(full_spread), " / ".join(_mib(p["peak_host_bytes"]) for p in probes),
            _pct(_spread(probes)), _fmt(ratio), _mib(row["predicted_peak_host_bytes"]),
            _fmt(_ratio(row["predicted_peak_host_bytes"], full_peak)), _s(full_train), _s(probe_train),
            _fmt(_ratio(probe_train, full_train)), _s(full_val), _s(_mean(probes, "validation_seconds")),
            _s(probe_seconds), _fmt(_ratio(probe_seconds, _mean(fulls, "epoch_seconds"))), " / ".join(phases),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    summary = f"\n{len(results)} variants on {images} train images; worst |probe / full - 1| (medians) = "
    summary += "-" if not worst else f"{100 * max(worst):.1f}% (goal 3%)"
    if spreads:
        summary += f"; largest spread of one config's full runs: {100 * max(spreads):.1f}%"
    return "\n".join(lines) + summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


if __name__ == "__main__":
    sys.exit(main())
