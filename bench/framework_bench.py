"""Benchmark: the demo space on yolov5n (yolov5) and yolo11n (ultralytics), side by side.

Usage::

    .venv/bin/python bench/framework_bench.py [--out bench/results/framework_bench.json]

On one generated shapes dataset (``--images`` train + 64 val images, 320 px), for each framework:

1. Peak memory per knob: a base config (batch 8, imgsz 128, cache none, workers 0) and one knob
   changed at a time (batch 32, imgsz 256, cache ram, cache disk, workers 2; and the RAM cache at
   imgsz 256, alone and with 2 workers, where it is large): real supervised trials of one epoch on
   the whole dataset. Printed: peak PSS, its ratio to the base, seconds per epoch,
   and what the framework really ran (ultralytics starts no dataloader worker on a CPU).
2. Prediction error per framework: each of those runs predicted by the memory model fitted on the
   framework's *other* runs (leave-one-out), from the framework's own footprint-anchored start, as
   an uncalibrated study starts. Printed: each error and the median absolute error.
3. Fronts: the same small study of the demo space (seed, sampler, epochs, trainings) per framework,
   and its noise-aware front, each point with its accuracy interval over seeds (replicates).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.data._dataset import load_dataset  # noqa: E402
from search.data._demo import make_demo_dataset  # noqa: E402
from search.model._predict import DatasetStats, features  # noqa: E402
from search.model._preflight import combined_fit  # noqa: E402
from search.model._start import starting_model  # noqa: E402
from search.results._load import load_study  # noqa: E402
from search.study._run import run_study  # noqa: E402
from search.trial._config import TrialConfig, TrialLimits  # noqa: E402
from search.trial._supervisor import run_trial  # noqa: E402

MIB = 1024**2
MODELS = {"yolov5": "yolov5n.yaml", "ultralytics": "yolo11n.yaml"}
BASE: dict[str, Any] = {"batch": 8, "imgsz": 128, "cache": "none", "workers": 0}
CHANGES: list[tuple[str, dict[str, Any]]] = [
    ("base", {}), ("batch 32", {"batch": 32}), ("imgsz 256", {"imgsz": 256}), ("cache ram", {"cache": "ram"}),
    ("ram s256", {"cache": "ram", "imgsz": 256}), ("cache disk", {"cache": "disk"}),
    ("workers 2", {"workers": 2}), ("w2 ram s256", {"workers": 2, "cache": "ram", "imgsz": 256}),
]  # fmt: skip
STUDY = """\
name: bench-{framework}
data: {data}
framework: {framework}
model: {model}
hyp: demo
epochs: {epochs}
train_images: {train_images}
n_trials: {n_trials}
memory_limit: 3GiB
sampler: tpe
seed: 0
probe_share: 0
space:
  batch: [8, 16]
  imgsz: {{low: 96, high: 160, step: 32}}
  cache: [none, ram, disk]
  workers: {{low: 0, high: 2}}
"""


def knob_runs(framework: str, data: Path) -> list[dict[str, Any]]:
    """One real epoch on the whole dataset per knob change."""
    runs = []
    for label, change in CHANGES:
        knobs = {**BASE, **change}
        config = TrialConfig(
            data=str(data), framework=framework, model=MODELS[framework], hyp="demo", **knobs
        )
        record = run_trial(config, limits=TrialLimits(time_limit_s=900))
        runs.append({
            "label": label, "knobs": knobs, "status": record.status, "used": record.used,
            "peak_host_bytes": record.peak_host_bytes, "epoch_seconds": record.epoch_seconds,
        })  # fmt: skip
        peak = (record.peak_host_bytes or 0) / MIB
        print(f"  {framework:<11} {label:<10} {record.status:<6} peak {peak:7.0f} MiB")
    return runs


def held_out(framework: str, runs: list[dict[str, Any]], stats: DatasetStats) -> list[dict[str, Any]]:
    """Each run predicted by the model fitted on the framework's other runs."""
    start = starting_model(calibration=None, device="cpu", framework=framework)
    rows = []
    for run in runs:
        if run["status"] != "ok":
            continue
        row = features(stats=stats, framework=framework, device="cpu", **run["knobs"])
        rows.append((run["label"], row, float(run["peak_host_bytes"])))
    errors = []
    for label, row, measured in rows:
        others = [(f, y) for other, f, y in rows if other != label]
        model = combined_fit([], others, base=start.model)
        predicted = model.predict(row).total_bytes
        errors.append(
            {"label": label, "predicted": predicted, "measured": measured, "error": predicted / measured - 1}
        )
    return errors


def front_of(framework: str, data: Path, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """A small study of the demo space; its noise-aware front with intervals over seeds."""
    spec = folder / f"bench-{framework}.yaml"
    spec.write_text(STUDY.format(
        framework=framework, model=MODELS[framework], data=data, epochs=args.epochs,
        train_images=args.train_images, n_trials=args.n_trials,
    ))  # fmt: skip
    started = time.monotonic()
    run_study(spec, progress=False)
    wall = time.monotonic() - started
    results = load_study(spec)
    front = results.front()
    points = [
        {
            "batch": int(row["batch"]), "imgsz": int(row["imgsz"]), "cache": str(row["cache"]),
            "accuracy_mean": float(row["accuracy_mean"]), "accuracy_low": float(row["accuracy_low"]),
            "accuracy_high": float(row["accuracy_high"]),
            "replicates": int(row["replicates"]), "peak_host_bytes": float(row["config_peak_host_bytes"]),
        }
        for _, row in front.iterrows()
    ]  # fmt: skip
    trained = results.trials[results.trials["status"] == "ok"]
    return {
        "wall_seconds": wall, "points": points, "trainings": len(results.trials),
        "ok": len(trained), "accuracy_note": results.accuracy_note(),
        "best_mean": float(trained["map50_95"].max()) if len(trained) else None,
    }  # fmt: skip


def report(results: dict[str, Any]) -> None:
    """Prints the side-by-side tables."""
    print(f"\n== peak memory per knob (1 epoch, {results['images']} train + 64 val images, 320 px) ==")
    print(
        f"{'change':<11}"
        + "".join(f"{fw + ' peak':>20}{'x base':>8}{'s/ep':>7}{'ran w':>6}" for fw in MODELS)
    )
    for index, (label, _) in enumerate(CHANGES):
        line = f"{label:<11}"
        for framework in MODELS:
            run = results["knobs"][framework][index]
            base = results["knobs"][framework][0]["peak_host_bytes"] or 1
            peak = run["peak_host_bytes"] or 0
            used = run["used"] or {}
            seconds, workers = run["epoch_seconds"] or 0, used.get("workers", "-")
            line += f"{peak / MIB:>16.0f} MiB{peak / base:>8.2f}{seconds:>7.1f}{workers:>6}"
        print(line)
    print("\n== held-out prediction error (leave-one-out over the runs above, uncalibrated start) ==")
    for framework in MODELS:
        errors = results["held_out"][framework]
        cells = ", ".join(f"{e['label']} {100 * e['error']:+.1f}%" for e in errors)
        median = statistics.median(abs(e["error"]) for e in errors) if errors else float("nan")
        print(f"{framework:<11} median |error| {100 * median:.1f}%  ({cells})")
    print("\n== fronts: the same demo-space study per framework (map50_95 mean [interval], replicates) ==")
    for framework in MODELS:
        front = results["fronts"][framework]
        print(f"{framework} ({MODELS[framework]}): {front['ok']}/{front['trainings']} trainings ok in "
              f"{front['wall_seconds'] / 60:.1f} min; best {front['best_mean'] or 0:.3f}")  # fmt: skip
        for p in front["points"]:
            knobs = f"batch {p['batch']:>2}, imgsz {p['imgsz']:>3}, cache {p['cache']:<4}"
            print(f"  {knobs}: {p['accuracy_mean']:.3f} "
                  f"[{p['accuracy_low']:.3f}, {p['accuracy_high']:.3f}] ({p['replicates']} replicates)  "
                  f"peak {p['peak_host_bytes'] / MIB:.0f} MiB")  # fmt: skip
        if front["accuracy_note"]:
            print(f"  note: {front['accuracy_note']}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "framework_bench.json")
    parser.add_argument("--images", type=int, default=1200, help="train images of the generated dataset")
    parser.add_argument("--train-images", type=int, default=256, help="the studies' training subset")
    parser.add_argument("--epochs", type=int, default=8, help="the studies' epochs")
    parser.add_argument("--n-trials", type=int, default=6, help="the studies' trainings")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "images": args.images,
        "knobs": {},
        "held_out": {},
        "fronts": {},
        # A copy: vars() is the namespace itself, and args.out must stay a Path.
        "args": {**vars(args), "out": str(args.out)},
    }
    with tempfile.TemporaryDirectory(prefix="memfront-framework-bench-") as tmp:
        folder = Path(tmp)
        data = make_demo_dataset(folder / "data", images=args.images, val_images=64, size=320, seed=0)
        stats = DatasetStats.read(load_dataset(data))
        print("peak memory per knob:")
        for framework in MODELS:
            results["knobs"][framework] = knob_runs(framework, data)
            results["held_out"][framework] = held_out(framework, results["knobs"][framework], stats)
        print("fronts:")
        for framework in MODELS:
            results["fronts"][framework] = front_of(framework, data, folder, args)
            print(f"  {framework}: {len(results['fronts'][framework]['points'])} front points")
    report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nresults in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
