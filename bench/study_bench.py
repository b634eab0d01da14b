"""Benchmark of the search: runs ``studies/demo.yaml`` end to end, as a user would.

Usage::

    .venv/bin/python bench/study_bench.py [--study studies/demo.yaml] [--out bench/results/study_bench.json]

The study file is copied into a temporary folder (a fresh SQLite storage and demo dataset), run with
the real CLI (``python -m search run``), and read back. Printed: wall time, trials per hour, the front
found (and whether it meets the demo's promise: at least 3 points, best mAP50-95 >= 0.25), and where
the study's wall time went:

* inside trial processes (from spawn to exit), split into the child's start-up (imports, dataset
  scan, caching), yolov5's training loop with validation, and shut-down;
* outside trial processes: everything the search itself does (Optuna ask/tell, SQLite, dataset checks,
  demo-data generation, the CLI's start) — goal <= 5% of the study's wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.results._frame import front, status_counts, trials_frame  # noqa: E402
from search.study._prepare import open_study, storage_url  # noqa: E402
from search.study._spec import load_study_spec  # noqa: E402
from search.study._stored import read_trials  # noqa: E402


def _sum(values: list[float | None]) -> float:
    return float(sum(v for v in values if v is not None))


def run(study_file: Path, keep_db: Path | None = None) -> dict[str, Any]:
    """Runs the study in a temporary copy and returns the figures; optionally keeps its database."""
    with tempfile.TemporaryDirectory(prefix="memfront-study-bench-") as tmp:
        copy = Path(tmp) / study_file.name
        shutil.copy(study_file, copy)
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "search", "run", str(copy)], cwd=ROOT, capture_output=True, text=True
        )
        wall = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"study failed ({done.returncode}):\n{done.stderr[-3000:]}")
        spec = load_study_spec(copy)
        study = open_study(spec, storage_url(spec, copy), create=False)
        frame = trials_frame(study)
        if keep_db is not None:
            shutil.copy(Path(storage_url(spec, copy).removeprefix("sqlite:///")), keep_db)
        records = [t.record for t in read_trials(study.get_trials()) if t.record and t.duplicate_of is None]
    phases = [r.get("phases") or {} for r in records]
    inside = _sum([p.get("process_s") for p in phases])
    accuracy = spec.objectives[0]
    pareto = front(frame, accuracy)
    best = float(pareto[accuracy].max()) if not pareto.empty else None
    return {
        "study": spec.name,
        "command": f"{sys.executable} -m search run {study_file}",
        "machine": {"cpus": os.cpu_count()},
        "wall_seconds": wall,
        "trials_trained": len(records),
        "trials_per_hour": len(records) / wall * 3600,
        "status_counts": status_counts(frame),
        "inside_trials_seconds": inside,
        "startup_seconds": _sum([p.get("startup_s") for p in phases]),
        "training_seconds": _sum([p.get("training_s") for p in phases]),
        "shutdown_seconds": _sum([p.get("shutdown_s") for p in phases]),
        "outside_trials_fraction": (wall - inside) / wall,
        "front": [
            {
                "number": int(r["number"]),
                "batch": int(r["batch"]),
                "imgsz": int(r["imgsz"]),
                "cache": r["cache"],
                "workers": int(r["workers"]),
                accuracy: float(r[accuracy]),
                "peak_host_gib": float(r["peak_host_bytes"]) / 1024**3,
                "epoch_seconds": float(r["epoch_seconds"]),
            }
            for _, r in pareto.iterrows()
        ],
        "best_accuracy": best,
        "promise_met": best is not None and best >= 0.25 and len(pareto) >= 3,
        "stderr_tail": done.stderr.splitlines()[-3:],
    }


def render(result: dict[str, Any]) -> str:
    """The figures as a readable report."""
    wall = result["wall_seconds"]
    lines = [
        f"command: {result['command']}",
        f"study wall time          {wall:8.1f} s",
        f"trials trained           {result['trials_trained']:8d}   "
        f"({result['trials_per_hour']:.1f} per hour)",
        f"status counts            {result['status_counts']}",
        f"inside trial processes   {result['inside_trials_seconds']:8.1f} s  "
        f"(start-up {result['startup_seconds']:.1f} s, training {result['training_seconds']:.1f} s, "
        f"shut-down {result['shutdown_seconds']:.1f} s)",
        f"outside trial processes  {wall - result['inside_trials_seconds']:8.1f} s  "
        f"= {100 * result['outside_trials_fraction']:.2f}% of the wall time (goal <= 5%: "
        f"{'PASS' if result['outside_trials_fraction'] <= 0.05 else 'MISS'})",
        f"child start-up share     {100 * result['startup_seconds'] / wall:8.2f}% of the wall time",
        "front (least memory first):",
    ]
    for point in result["front"]:
        accuracy = next(k for k in point if k.startswith("map") or k == "fitness")
        lines.append(
            f"  trial {point['number']:>2}: batch {point['batch']:>2}, imgsz {point['imgsz']}, "
            f"cache {point['cache']:<4}, workers {point['workers']}: {accuracy} {point[accuracy]:.3f}, "
            f"peak {point['peak_host_gib']:.2f} GiB, {point['epoch_seconds']:.1f} s/epoch"
        )
    lines.append(
        f"demo promise (>= 3 front points, best mAP50-95 >= 0.25): "
        f"{'PASS' if result['promise_met'] else 'MISS'} (best {result['best_accuracy']})"
    )
    return "\n".join(lines)


def main() -> int:
    """Runs the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "demo.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "study_bench.json")
    parser.add_argument("--keep-db", type=Path, help="copy the SQLite file here (e.g. studies/demo.db)")
    args = parser.parse_args()
    result = run(args.study, args.keep_db)
    print(render(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
