"""Ground truth of the demo space: every accuracy config over seeds, every system variant's cost.

Usage::

    .venv/bin/python bench/noise_truth.py [--study S.yaml] [--runs R.jsonl] [--phase all]

``--study`` (default ``studies/demo.yaml``) gives the space, the data (its ``train_images`` subset and
``demo_val_images`` too), model, hyp, epochs and limit. ``bench/noise_bench.py``'s runs were taken
with the demo of commit 78da3d5 (256 images: ``git show 78da3d5:studies/demo.yaml``);
``bench/subset_bench.py``'s with today's demo and ``--phase accuracy``.

Runs real memfront trials (``search.trial.run_trial``, the study's dataset, model, hyp and epochs) in
three phases, each run appended to ``--runs`` as one JSON line as soon as it ends, so that the bench
resumes where it stopped (a run already in the file is not run again):

* ``accuracy``: every accuracy config of the demo space (batch x imgsz; AMP is off on a CPU) with
  seeds 0, 1, 2, on the leanest system setting (cache none, workers 0);
* ``roles``: at two accuracy configs, every other system variant (cache none/ram/disk x workers 0/1)
  with the same three seeds: do the system knobs change accuracy in expectation?
* ``memory``: at the other accuracy configs, each other system variant once (seed 0, 3 epochs): the
  peak memory and epoch time of every full config (memory repeats within 2-4% over seeds, and the
  peak is reached in the first epoch).

``bench/noise_bench.py`` reads the file: the ground truth's table, the knob-role test, and the side-by-
side comparison of studies.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.data._demo import make_demo_dataset  # noqa: E402
from search.study._spec import load_study_spec  # noqa: E402
from search.trial._config import TrialConfig, TrialLimits, resolve_hyp, resolve_model  # noqa: E402
from search.trial._supervisor import run_trial  # noqa: E402

SEEDS = (0, 1, 2)
ROLE_CONFIGS = ((16, 128), (8, 96))
LEANEST = ("none", 0)
MEMORY_EPOCHS = 3


def planned_runs(spec_path: Path) -> list[dict[str, Any]]:
    """Every run of the three phases, in order: knobs, seed, epochs, phase."""
    spec = load_study_spec(spec_path)
    batches = spec.space.choices("batch")
    sizes = spec.space.choices("imgsz")
    systems = list(itertools.product(spec.space.choices("cache"), spec.space.choices("workers")))
    runs = []
    for batch, imgsz in itertools.product(batches, sizes):
        for seed in SEEDS:
            runs.append(_run("accuracy", batch, imgsz, LEANEST, seed, spec.epochs))
    for batch, imgsz in ROLE_CONFIGS:
        for system in systems:
            if system != LEANEST:
                for seed in SEEDS:
                    runs.append(_run("roles", batch, imgsz, system, seed, spec.epochs))
    for batch, imgsz in itertools.product(batches, sizes):
        if (batch, imgsz) not in ROLE_CONFIGS:
            for system in systems:
                if system != LEANEST:
                    runs.append(_run("memory", batch, imgsz, system, 0, MEMORY_EPOCHS))
    return runs


def _run(
    phase: str, batch: int, imgsz: int, system: tuple[str, int], seed: int, epochs: int
) -> dict[str, Any]:
    cache, workers = system
    knobs = {"batch": batch, "imgsz": imgsz, "cache": cache, "workers": workers, "amp": False}
    return {"phase": phase, "knobs": knobs, "seed": seed, "epochs": epochs}


def run_key(run: dict[str, Any]) -> str:
    """What identifies a run in the file."""
    k = run["knobs"]
    return f"{k['batch']}/{k['imgsz']}/{k['cache']}/{k['workers']}/{k['amp']}/s{run['seed']}/e{run['epochs']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "demo.yaml")
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "results" / "noise_truth_runs.jsonl")
    parser.add_argument("--phase", choices=["all", "accuracy", "roles", "memory"], default="all")
    args = parser.parse_args()
    spec = load_study_spec(args.study)
    done = set()
    if args.runs.exists():
        done = {run_key(json.loads(line)) for line in args.runs.read_text().splitlines() if line.strip()}
    planned = planned_runs(args.study)
    todo = [r for r in planned if args.phase in ("all", r["phase"]) and run_key(r) not in done]
    print(f"noise truth: {len(todo)} runs to do ({len(done)} already in {args.runs})", flush=True)
    with tempfile.TemporaryDirectory(prefix="memfront-noise-truth-") as tmp:
        data = make_demo_dataset(
            Path(tmp) / "data",
            images=spec.demo_images,
            val_images=spec.demo_val_images,
            size=spec.demo_size,
            seed=0,
        )
        model, hyp = resolve_model(spec.model), resolve_hyp(spec.hyp)
        limits = TrialLimits(memory_limit_bytes=spec.memory_limit, time_limit_s=900)
        for index, run in enumerate(todo, 1):
            config = TrialConfig(
                data=str(data),
                model=model,
                hyp=hyp,
                epochs=run["epochs"],
                seed=run["seed"],
                train_images=spec.train_images,  # the study's subset, a seeded sample per seed
                **run["knobs"],
            )
            started = time.monotonic()
            record = run_trial(config, limits=limits)
            line = {
                **run,
                "status": record.status,
                "map50_95": record.map50_95,
                "map50": record.map50,
                "peak_host_bytes": record.peak_host_bytes,
                "epoch_seconds": record.epoch_seconds,
                "wall_seconds": record.wall_seconds,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            with args.runs.open("a") as out:
                out.write(json.dumps(line) + "\n")
            print(
                f"[{index}/{len(todo)}] {run['phase']:8} {run_key(run):28} {record.status:6} "
                f"mAP50-95 {record.map50_95 or 0:.3f}  peak {(record.peak_host_bytes or 0) / 2**30:.3f} GiB  "
                f"{record.epoch_seconds or 0:.1f} s/epoch  ({time.monotonic() - started:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
