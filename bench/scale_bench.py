"""Benchmark of scaling out: trials per hour with 1 and 2 local jobs, and the coordination overhead.

Usage::

    .venv/bin/python bench/scale_bench.py [--trials 8] [--out bench/results/scale_bench.json]

1. Throughput: the same small study (a generated dataset of 64 images, 2 epochs per trial) run twice
   from scratch, once with ``memfront run`` (one job) and once with ``memfront run --jobs 2``, both on
   a journal file; trials per hour of each and their ratio, measured side by side in one run.
2. Coordination: the same study with 3 workers (3 ``memfront run`` processes) on a real PostgreSQL
   server on loopback (tests/postgres.py). Each worker times every call it makes into the storage
   (:func:`search.study._storage.storage_clock`); the overhead is the time the workers spent in storage calls
   on their own thread (the calls that delay their next trial) over their total wall time. Goal < 2%.
   The heartbeat threads' storage time, which overlaps training, is printed separately.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.data._demo import make_demo_dataset  # noqa: E402
from search.study._prepare import open_study  # noqa: E402
from search.study._spec import load_study_spec  # noqa: E402
from search.study._stored import StudyKeys, counts_toward_n_trials  # noqa: E402
from tests.postgres import PostgresServer  # noqa: E402

STUDY = """\
name: scale-bench
data: {data}
hyp: demo
epochs: 2
n_trials: {n_trials}
memory_limit: 4GiB
sampler: random
seed: 3
space:
  batch: [4, 8, 16]
  imgsz: [64, 96, 128]
  cache: [none, ram]
  workers: [0]
"""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _counted(study: Any) -> int:
    """Configurations of n_trials that trained to the end."""
    return sum(1 for t in counts_toward_n_trials(study.get_trials()) if t.status == "ok")


def throughput(folder: Path, spec_path: Path, jobs: int) -> dict[str, Any]:
    """One fresh run of the study with ``jobs`` local jobs on a journal file."""
    journal = folder / f"jobs{jobs}.journal"
    command = [sys.executable, "-m", "search", "run", str(spec_path), "--storage", f"journal:{journal}"]
    if jobs > 1:
        command += ["--jobs", str(jobs)]
    log(f"throughput: {jobs} job(s) ...")
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    study = open_study(load_study_spec(spec_path), f"journal:{journal}", create=False)
    trained = _counted(study)
    return {"jobs": jobs, "wall_seconds": wall, "trials": trained, "trials_per_hour": trained / wall * 3600}


def coordination(spec_path: Path, workers: int) -> dict[str, Any]:
    """The study with ``workers`` workers on PostgreSQL; each worker's time split."""
    server = PostgresServer().start()
    try:
        url = server.new_database()
        log(f"coordination: {workers} workers on PostgreSQL ...")
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "search", "run", str(spec_path), "--storage", url],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        errors = [p.communicate()[1] for p in procs]
        wall = time.monotonic() - started
        if any(p.returncode != 0 for p in procs):
            raise RuntimeError("\n".join(e[-1000:] for e in errors))
        study = open_study(load_study_spec(spec_path), url, create=False)
        announcements = [v for k, v in study.user_attrs.items() if k.startswith(StudyKeys.WORKER_PREFIX)]
        times = [v["times"] for v in announcements if "times" in v]
        trained = _counted(study)
    finally:
        server.stop()
    total = sum(t["wall"] for t in times)
    storage = sum(t["storage"] for t in times)
    return {
        "workers": workers,
        "wall_seconds": wall,
        "trials": trained,
        "per_worker": times,
        "storage_seconds": storage,
        "storage_calls": sum(t["storage_calls"] for t in times),
        "heartbeat_storage_seconds": sum(t["heartbeat_storage"] for t in times),
        "worker_wall_seconds": total,
        "overhead_fraction": storage / total,
    }


def render(result: dict[str, Any]) -> str:
    """The figures as a readable report."""
    one, two = result["throughput"]
    ratio = two["trials_per_hour"] / one["trials_per_hour"]
    pg = result["coordination"]
    lines = [f"machine: {result['machine']['cpus']} CPUs; study: {result['study']}"]
    for run in (one, two):
        lines.append(
            f"{run['jobs']} job(s): {run['trials']} trials in {run['wall_seconds']:.1f} s = "
            f"{run['trials_per_hour']:.1f} trials/hour"
        )
    lines += [
        f"throughput 2 jobs / 1 job: {ratio:.2f}x",
        f"{pg['workers']} workers on PostgreSQL: {pg['trials']} trials in {pg['wall_seconds']:.1f} s; "
        f"storage calls {pg['storage_calls']:.0f}, {pg['storage_seconds']:.2f} s of "
        f"{pg['worker_wall_seconds']:.1f} worker-seconds = {100 * pg['overhead_fraction']:.3f}% "
        f"(goal < 2%: {'PASS' if pg['overhead_fraction'] < 0.02 else 'MISS'})",
        f"heartbeat threads' storage time (overlaps training): {pg['heartbeat_storage_seconds']:.2f} s",
    ]
    for index, times in enumerate(pg["per_worker"]):
        lines.append(
            f"  worker {index}: wall {times['wall']:.1f} s, training {times['training']:.1f} s, "
            f"waiting {times['waiting']:.1f} s, storage {times['storage']:.2f} s"
        )
    return "\n".join(lines)


def main() -> int:
    """Runs the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scale_bench.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memfront-scale-bench-") as tmp:
        folder = Path(tmp)
        data = make_demo_dataset(folder / "shapes", images=64, val_images=32, size=128, seed=0)
        specs = {}
        for name in ("one", "two", "pg"):
            path = folder / name / "scale-bench.yaml"
            path.parent.mkdir()
            path.write_text(STUDY.format(data=data, n_trials=args.trials))
            specs[name] = path
        result = {
            "command": f"{sys.executable} bench/scale_bench.py --trials {args.trials}",
            "machine": {"cpus": os.cpu_count()},
            "study": f"{args.trials} trials, 64 images, 2 epochs, batch 4-16, imgsz 64-128",
            "throughput": [throughput(folder, specs["one"], 1), throughput(folder, specs["two"], 2)],
            "coordination": coordination(specs["pg"], 3),
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
