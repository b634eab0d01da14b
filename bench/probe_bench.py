"""Benchmark of probes: a probe's peak and epoch time against a full-epoch run of the same config.

What it measures, side by side in one run, on a synthetic demo dataset of ``--images`` training
images (a quarter as many validation images; ``search.data._demo``):

1. For every system variant (cache none/ram/disk x workers 0/2) of one accuracy config: a probe
   (``search.probe.run_probe``) and a real one-epoch training on the whole dataset (validation
   included, as a study's trial runs it), alternating which goes first. Printed: probe peak / the
   full run's peak (goal within 3%), the probe's projected epoch seconds / the full run's measured
   epoch seconds, and the probe's own seconds / that epoch's seconds (what a probe costs against
   one epoch of the real run; a real run has many).
2. Extrapolation: a study that trains on a subset learns memory from its trainings. Short trainings
   on ``images / 10`` training images (what such a study measures) fit the memory model
   (``search.model``); for each variant the model's prediction for the whole dataset (10x the
   largest set trained on) is printed beside the probe's and the full run's peaks.

Run from the repository root (about 15 minutes at 3000 images on 2 cores)::

    .venv/bin/python bench/probe_bench.py [--images 3000] [--out bench/results/probe_bench.json]

The bench process never imports torch or yolov5 (their pages, mapped here, would be shared with the
runs it measures and lower their PSS).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from search.data._dataset import load_dataset  # noqa: E402
from search.data._demo import make_demo_dataset  # noqa: E402
from search.model._predict import DatasetStats, features, load_starting_model  # noqa: E402
from search.model._preflight import combined_fit, record_features  # noqa: E402
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
    for batch, imgsz, cache, workers in SUBSET_CONFIGS:
        record = run_trial(_config(data, batch, imgsz, cache, workers, train_images=subset))
        print(
            f"subset {batch}/{imgsz} {cache} w{workers}: {record.status} {record.peak_host_bytes}", flush=True
        )
        if record.status == "ok" and record.peak_host_bytes:
            rows.append((record_features(record.to_dict(), stats), float(record.peak_host_bytes)))
    start = load_starting_model("yolov5n.yaml", "cpu")
    model = combined_fit(start.calibration_rows, rows, base=start.model)

    results = []
    for index, (cache, workers) in enumerate(VARIANTS):
        config = _config(data, args.batch, args.imgsz, cache, workers)
        runs: dict[str, Any] = {}
        for kind in ("probe", "full") if index % 2 == 0 else ("full", "probe"):
            began = time.monotonic()
            if kind == "probe":
                probe = run_probe(config)
                runs["probe"] = {
                    "status": probe.status, "peak_host_bytes": probe.peak_host_bytes, "peak_phase": probe.peak_phase,
                    "projected_epoch_seconds": probe.projected_epoch_seconds, "seconds": probe.seconds,
                    "images_per_second": probe.images_per_second, "train": probe.train, "val": probe.val,
                }  # fmt: skip
            else:
                record = run_trial(config)
                runs["full"] = {
                    "status": record.status, "peak_host_bytes": record.peak_host_bytes,
                    "peak_phase": record.memory.get("peak_phase"), "epoch_seconds": record.epoch_seconds,
                    "wall_seconds": record.wall_seconds,
                }  # fmt: skip
            runs[kind]["bench_seconds"] = time.monotonic() - began
        knobs = {"batch": args.batch, "imgsz": args.imgsz, "cache": cache, "workers": workers}
        predicted = model.predict(features(stats=stats, train_images=None, **knobs)).total_bytes
        row = {"cache": cache, "workers": workers, **runs, "predicted_peak_host_bytes": predicted}
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


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else a / b


def _line(row: dict[str, Any]) -> str:
    probe, full = row["probe"], row["full"]
    return (
        f"cache {row['cache']:<4} workers {row['workers']}: probe {probe['status']} {_mib(probe['peak_host_bytes'])} "
        f"({probe['peak_phase']}) in {probe['seconds']:.1f} s, projected epoch {_s(probe['projected_epoch_seconds'])}; "
        f"full {full['status']} {_mib(full['peak_host_bytes'])} ({full['peak_phase']}), epoch {_s(full['epoch_seconds'])}"
    )


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f} MiB"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(results: list[dict[str, Any]], *, images: int, subset: int) -> str:
    head = (
        f"| cache | workers | full-run peak | probe peak | probe/full peak | model-only ({subset} img fit) "
        f"| model/full | full epoch | projected | projected/full | probe s | probe s / epoch s | peak set in |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    )
    lines = [head]
    for row in results:
        probe, full = row["probe"], row["full"]
        lines.append(
            f"| {row['cache']} | {row['workers']} | {_mib(full['peak_host_bytes'])} | {_mib(probe['peak_host_bytes'])} "
            f"| {_fmt(_ratio(probe['peak_host_bytes'], full['peak_host_bytes']))} "
            f"| {_mib(row['predicted_peak_host_bytes'])} "
            f"| {_fmt(_ratio(row['predicted_peak_host_bytes'], full['peak_host_bytes']))} "
            f"| {_s(full['epoch_seconds'])} | {_s(probe['projected_epoch_seconds'])} "
            f"| {_fmt(_ratio(probe['projected_epoch_seconds'], full['epoch_seconds']))} "
            f"| {probe['seconds']:.1f} | {_fmt(_ratio(probe['seconds'], full['epoch_seconds']))} "
            f"| {probe['peak_phase']} / {full['peak_phase']} |"
        )
    peaks = [
        _ratio(r["probe"]["peak_host_bytes"], r["full"]["peak_host_bytes"])
        for r in results
        if r["probe"]["status"] == "ok" and r["full"]["status"] == "ok"
    ]
    worst = max((abs(p - 1) for p in peaks if p is not None), default=None)
    summary = f"\n{len(peaks)} variants on {images} train images; worst |probe/full - 1| = "
    summary += "-" if worst is None else f"{100 * worst:.1f}% (goal 3%)"
    ratios = [_ratio(r["probe"]["seconds"], r["full"]["epoch_seconds"]) for r in results]
    ratios = [r for r in ratios if r is not None]
    if ratios:
        summary += f"; median probe seconds / epoch seconds = {statistics.median(ratios):.2f}"
    return "\n".join(lines) + summary


if __name__ == "__main__":
    sys.exit(main())
