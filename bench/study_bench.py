"""Benchmark of the search: runs ``studies/demo.yaml`` end to end, as a user would.

Usage::

    .venv/bin/python bench/study_bench.py [--study studies/demo.yaml] [--out bench/results/study_bench.json]

The study file is copied into a temporary folder (a fresh SQLite storage and demo dataset), run with
the real CLI (``python -m search run``), and read back with ``search.load_study``. Printed: wall
time, trainings and probes, the noise-aware front as ``report`` shows it (each accuracy config's mean
with its 95% interval and replicates, memory and epoch time on the whole dataset), and where the
study's wall time went:

* inside trial and probe processes (from spawn to exit), the trainings' split into the child's
  start-up (imports, dataset scan, caching), the framework's training loop with validation, and
  shut-down;
* outside them: everything the search itself does (Optuna ask/tell, SQLite, dataset checks, the
  memory model's fits, demo-data generation, the CLI's start) — goal <= 5% of the study's wall time.
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

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.results._load import load_study  # noqa: E402
from search.results._results import StudyResults  # noqa: E402


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
        results = load_study(copy)
        if keep_db is not None:
            shutil.copy(copy.with_suffix(".db"), keep_db)
        return summarize(results, wall=wall, command=f"{sys.executable} -m search run {study_file}",
                         stderr_tail=done.stderr.splitlines()[-3:])  # fmt: skip


def summarize(results: StudyResults, *, wall: float, command: str, stderr_tail: list[str]) -> dict[str, Any]:
    """The figures of a study that ran for ``wall`` seconds."""
    trained = results.trials[results.trials["duplicate_of"].isna()]
    records = [results.record(int(number)) or {} for number in trained["number"]]
    phases = [record.get("phases") or {} for record in records]
    front = results.front()
    probes = results.probes
    noise = results.estimates.noise
    inside_trainings = _sum([p.get("process_s") for p in phases])
    probing = _sum([p.seconds for p in probes])
    inside = inside_trainings + probing
    return {
        "study": results.spec.name,
        "command": command,
        "machine": {"cpus": os.cpu_count()},
        "wall_seconds": wall,
        "trainings": len(phases),
        "trainings_per_hour": len(phases) / wall * 3600,
        "probes": len(probes),
        "probe_seconds": probing,
        "status_counts": results.status_counts(),
        "inside_seconds": inside,
        "startup_seconds": _sum([p.get("startup_s") for p in phases]),
        "training_seconds": _sum([p.get("training_s") for p in phases]),
        "shutdown_seconds": _sum([p.get("shutdown_s") for p in phases]),
        "outside_fraction": (wall - inside) / wall,
        "noise_sd": noise.sd,
        "noise_df": noise.df,
        "accuracy_note": results.accuracy_note(),
        "front": [
            {
                "number": int(r["number"]),
                "batch": int(r["batch"]),
                "imgsz": int(r["imgsz"]),
                "cache": r["config_cache"],
                "workers": int(r["config_workers"]),
                "accuracy_mean": float(r["accuracy_mean"]),
                "accuracy_low": None if pd.isna(r["accuracy_low"]) else float(r["accuracy_low"]),
                "accuracy_high": None if pd.isna(r["accuracy_high"]) else float(r["accuracy_high"]),
                "replicates": int(r["replicates"]),
                "peak_host_gib": float(r["config_peak_host_bytes"]) / 1024**3,
                "epoch_seconds": None
                if pd.isna(r["config_epoch_seconds"])
                else float(r["config_epoch_seconds"]),
                "memory_source": r["memory_source"],
            }
            for _, r in front.iterrows()
        ],
        "stderr_tail": stderr_tail,
    }


def render(result: dict[str, Any]) -> str:
    """The figures as a readable report."""
    wall = result["wall_seconds"]
    noise = (
        "unknown" if result["noise_sd"] is None else f"±{result['noise_sd']:.3f} ({result['noise_df']} df)"
    )
    lines = [
        f"command: {result['command']}",
        f"study wall time          {wall:8.1f} s",
        f"trainings                {result['trainings']:8d}   ({result['trainings_per_hour']:.1f} per hour)",
        f"probes                   {result['probes']:8d}   ({result['probe_seconds']:.1f} s)",
        f"status counts            {result['status_counts']}",
        f"inside trial and probe processes {result['inside_seconds']:8.1f} s  "
        f"(trainings: start-up {result['startup_seconds']:.1f} s, "
        f"training {result['training_seconds']:.1f} s, shut-down {result['shutdown_seconds']:.1f} s)",
        f"outside them             {wall - result['inside_seconds']:8.1f} s  "
        f"= {100 * result['outside_fraction']:.2f}% of the wall time (goal <= 5%: "
        f"{'PASS' if result['outside_fraction'] <= 0.05 else 'MISS'})",
        f"child start-up share     {100 * result['startup_seconds'] / wall:8.2f}% of the wall time",
        f"accuracy noise           {noise} per training",
        "front (least memory first; accuracy: mean [95% interval] over replicates; whole-dataset memory):",
    ]
    for point in result["front"]:
        interval = (
            "[unknown]" if point["accuracy_low"] is None
            else f"[{point['accuracy_low']:.3f}, {point['accuracy_high']:.3f}]"
        )  # fmt: skip
        seconds = "n/a" if point["epoch_seconds"] is None else f"{point['epoch_seconds']:.1f}"
        lines.append(
            f"  trial {point['number']:>2}: batch {point['batch']:>2}, imgsz {point['imgsz']}, "
            f"cache {point['cache']:<4}, workers {point['workers']}: {point['accuracy_mean']:.3f} {interval} "
            f"({point['replicates']}), peak {point['peak_host_gib']:.2f} GiB ({point['memory_source']}), "
            f"{seconds} s/epoch"
        )
    if result["accuracy_note"]:
        lines.append(f"note: {result['accuracy_note']}")
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
