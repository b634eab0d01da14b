"""Issue 13's wall-time goal where probes matter: a large dataset, trainings on a subset.

Usage::

    .venv/bin/python bench/noise_truth.py --runs bench/results/subset_truth_runs.jsonl --phase accuracy
    .venv/bin/python bench/subset_bench.py [--seeds 0 1] [--skip-studies]

The demo (``studies/demo.yaml``: 2400 training images, accuracy trainings on a seeded sample of 256,
a 1.3 GiB limit) is the case the issue describes: a user cannot afford a training on the whole
dataset to learn what a full config costs. This bench compares, on that space:

* **memfront** (this checkout): the demo study itself, run for real per seed (its own timeout and
  ``n_trials``): accuracy from subset trainings and their replicates, memory from probes on all 2400
  images;
* **today's all-knob TPE** (memfront at ``BASELINE``, before probes and replicates): to know what a
  full config costs on the whole dataset it trains every sampled config on the whole dataset. It is
  *replayed*, not run (one of its trainings takes 5-8 minutes here): its configs are the ones its own
  sampler draws with that seed (``BASELINE``'s ``TPESampler`` and ``suggest``, run from a git
  worktree; TPE's first ten draws are random and do not depend on the values it is told), and each
  training is charged a lower bound of its time: ``epochs`` x the training seconds of one epoch that
  a probe of that full config measured on the whole dataset (no start-up, no validation). A config
  drawn again costs nothing (``BASELINE`` tells the earlier result), nor does one over the limit.

The ground truth: each accuracy config's mean mAP50-95 over subset trainings with seeds 0, 1, 2
(``bench/noise_truth.py``, the demo's own trainings) and its leanest full config's peak on the whole
dataset (cache none, workers 0, probed). The time to 0.95 of the truth's hypervolume (reference: the
demo's limit) is taken after each training from the front at that moment, its configs at the truth's
means and leanest peaks: memfront's noise-aware front, measured from its first trial's start (probes
included); the baseline's *every* feasible config drawn so far (at least its own front's
hypervolume). Both choices favour the baseline, so the ratio printed is an upper bound on
memfront's time over the baseline's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from noise_bench import time_to_fraction, trainings_from_runs  # noqa: E402

from search.accuracy import estimate_accuracy, front_hypervolume, key_text  # noqa: E402
from search.data._demo import make_demo_dataset  # noqa: E402
from search.probe import run_probe  # noqa: E402
from search.study._spec import load_study_spec  # noqa: E402
from search.trial._config import TrialConfig, TrialLimits, resolve_hyp, resolve_model  # noqa: E402

BASELINE = "78da3d5"
DRAWS = 10  # TPE's random start-up draws: past them its draws depend on the values it was told
GIB = 1024**3
LEANEST = {"cache": "none", "workers": 0}

# Run inside BASELINE's worktree: its own sampler and suggest, asked DRAWS times.
_DRAW_SCRIPT = """
import json, sys
import optuna
from search.study._space import make_sampler
from search.study._space import effective_space, suggest
from search.study._spec import load_study_spec
optuna.logging.set_verbosity(optuna.logging.ERROR)
spec = load_study_spec(sys.argv[1])
space = effective_space(spec)
study = optuna.create_study(directions=["maximize", "minimize"], sampler=make_sampler(spec, space, spec.seed))
draws = []
for _ in range(int(sys.argv[2])):
    trial = study.ask()
    draws.append(suggest(trial, spec, space))
    study.tell(trial, [0.0, 1.0])  # start-up draws are random: the values do not matter
print(json.dumps(draws))
"""


def knobs_text(knobs: dict[str, Any]) -> str:
    """One full config, short."""
    return f"{knobs['batch']}/{knobs['imgsz']}/{knobs['cache']}/w{knobs['workers']}"


def baseline_draws(worktree: Path, seed: int, tmp: Path) -> list[dict[str, Any]]:
    """The first ``DRAWS`` full configs ``BASELINE``'s TPE samples on the demo's space with ``seed``."""
    study = yaml.safe_load(
        subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BASELINE}:studies/demo.yaml"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    today = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text())
    study.update({"seed": seed, "space": {**study["space"], "workers": today["space"]["workers"]}})
    study_file = tmp / f"baseline-{seed}.yaml"
    study_file.write_text(yaml.safe_dump(study))
    done = subprocess.run(
        [sys.executable, "-c", _DRAW_SCRIPT, str(study_file), str(DRAWS)],
        cwd=tmp,
        env={"PYTHONPATH": str(worktree), "PATH": "/usr/bin:/bin", "HOME": str(tmp)},
        check=True,
        capture_output=True,
        text=True,
    )
    return [{**d, "amp": False} for d in json.loads(done.stdout.strip().splitlines()[-1])]


def probe_all(configs: list[dict[str, Any]], spec: Any, path: Path, data: Path) -> dict[str, dict[str, Any]]:
    """Probes each full config on the whole dataset once (resumable: one JSON line per probe)."""
    done = {}
    if path.exists():
        done = {knobs_text(r["knobs"]): r for r in map(json.loads, path.read_text().splitlines()) if r}
    model, hyp = resolve_model(spec.model), resolve_hyp(spec.hyp)
    limits = TrialLimits(memory_limit_bytes=spec.memory_limit, time_limit_s=600)
    for knobs in configs:
        if knobs_text(knobs) in done:
            continue
        config = TrialConfig(data=str(data), model=model, hyp=hyp, epochs=spec.epochs, seed=0, **knobs)
        result = run_probe(config, limits=limits)
        row = {
            "knobs": knobs,
            "status": result.status,
            "peak_host_bytes": result.peak_host_bytes,
            "projected_train_seconds": result.projected_train_seconds,
            "seconds": result.seconds,
        }
        with path.open("a") as out:
            out.write(json.dumps(row) + "\n")
        done[knobs_text(knobs)] = row
        print(
            f"  probe {knobs_text(knobs):18} {result.status:12} "
            f"peak {(result.peak_host_bytes or 0) / GIB:.3f} GiB"
            f"  train {result.projected_train_seconds or 0:.1f} s/epoch  ({result.seconds:.0f} s)",
            flush=True,
        )
    return done


def ground_truth(runs_path: Path, probes: dict[str, dict[str, Any]], spec: Any) -> dict[str, Any]:
    """Per accuracy config: the subset trainings' mean over seeds and the leanest full peak."""
    runs = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()]
    ok = [r for r in runs if r["status"] == "ok" and r["phase"] == "accuracy"]
    estimates = estimate_accuracy(trainings_from_runs(ok))
    table = []
    for key, estimate in sorted(estimates.configs.items()):
        probe = probes[knobs_text({"batch": key[0], "imgsz": key[1], **LEANEST})]
        fits = probe["status"] == "ok" and probe["peak_host_bytes"] <= spec.memory_limit
        table.append(
            {
                "config": key_text(key),
                "key": list(key),
                "replicates": len(estimate.values),
                "mean": estimate.mean,
                "sd": statistics.stdev(estimate.values) if len(estimate.values) > 1 else None,
                # over the limit: the point adds nothing to a hypervolume
                "leanest_peak_bytes": probe["peak_host_bytes"] if fits else float(spec.memory_limit),
            }
        )
    points = [(row["leanest_peak_bytes"], row["mean"]) for row in table]
    return {"table": table, "points": points, "noise_sd": estimates.noise.sd, "noise_df": estimates.noise.df}


def baseline_timeline(
    draws: list[dict[str, Any]], probes: dict[str, dict[str, Any]], gt: dict[str, Any], spec: Any
) -> dict[str, Any]:
    """Charged seconds and the hypervolume of every feasible config drawn so far, after each draw."""
    truth_of = {tuple(row["key"]): (row["leanest_peak_bytes"], row["mean"]) for row in gt["table"]}
    truth_hv = front_hypervolume(gt["points"], memory_limit=spec.memory_limit)
    seconds, seen, feasible, steps, reached = 0.0, set(), [], [], None
    for knobs in draws:
        probe = probes[knobs_text(knobs)]
        fits = probe["status"] == "ok" and probe["peak_host_bytes"] <= spec.memory_limit
        charged = 0.0
        if knobs_text(knobs) not in seen and fits:
            charged = spec.epochs * probe["projected_train_seconds"]
            feasible.append((knobs["batch"], knobs["imgsz"], knobs["amp"]))
        seen.add(knobs_text(knobs))
        seconds += charged
        ratio = front_hypervolume([truth_of[k] for k in feasible], memory_limit=spec.memory_limit) / truth_hv
        step = {"knobs": knobs, "fits": fits, "charged_seconds": charged, "seconds": seconds, "ratio": ratio}
        steps.append(step)
        if reached is None and ratio >= 0.95:
            reached = seconds
    return {"seconds": reached, "lower_bound": seconds if reached is None else None, "steps": steps}


def run_memfront(seed: int, minutes: float | None, n_trials: int | None) -> tuple[Path, float]:
    """Runs the demo study with ``seed`` (and a longer timeout or more trials, if given) in a folder of
    its own; its study file and wall seconds."""
    tmp = Path(tempfile.mkdtemp(prefix="memfront-subset-bench-"))
    study = yaml.safe_load((ROOT / "studies" / "demo.yaml").read_text())
    study["seed"] = seed
    if minutes is not None:
        study["timeout"] = f"{minutes:g}m"
    if n_trials is not None:
        study["n_trials"] = n_trials
    study_file = tmp / "demo.yaml"
    study_file.write_text(yaml.safe_dump(study))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "search", "run", str(study_file)], cwd=tmp, capture_output=True, text=True
    )
    if done.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SystemExit(f"memfront, seed {seed}: run failed ({done.returncode}): {done.stderr[-2000:]}")
    return study_file, time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "results" / "subset_truth_runs.jsonl")
    parser.add_argument("--probes", type=Path, default=ROOT / "bench" / "results" / "subset_probes.jsonl")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--minutes", type=float, help="memfront's study timeout (default: the demo's)")
    parser.add_argument("--n-trials", type=int, help="memfront's study n_trials (default: the demo's)")
    parser.add_argument("--skip-studies", action="store_true", help="keep the last run's memfront figures")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "subset_bench.json")
    args = parser.parse_args()
    spec = load_study_spec(ROOT / "studies" / "demo.yaml")
    tmp = Path(tempfile.mkdtemp(prefix="memfront-subset-bench-"))
    # a killed bench still removes its worktree and demo data (the finally below)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    try:
        compare(args, spec, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def compare(args: argparse.Namespace, spec: Any, tmp: Path) -> None:
    """Draws, probes, the ground truth, memfront's studies and the comparison (see the module)."""
    worktree = tmp / "baseline"
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), BASELINE],
        check=True,
        capture_output=True,
    )
    try:
        draws = {seed: baseline_draws(worktree, seed, tmp) for seed in args.seeds}
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False)
    batches, sizes = spec.space.choices("batch"), spec.space.choices("imgsz")
    leanest = [{"batch": b, "imgsz": s, **LEANEST, "amp": False} for b in batches for s in sizes]
    needed = leanest + [d for seed in args.seeds for d in draws[seed]]
    print(f"probing {len({knobs_text(k) for k in needed})} full configs on the whole dataset (resumable)")
    data = make_demo_dataset(
        tmp / "data", images=spec.demo_images, val_images=spec.demo_val_images, size=spec.demo_size, seed=0
    )
    probes = probe_all(needed, spec, args.probes, data)
    gt = ground_truth(args.runs, probes, spec)
    print(f"ground truth: subset trainings of {spec.train_images} images; noise sd {gt['noise_sd']:.3f}")
    for row in gt["table"]:
        sd = "-" if row["sd"] is None else f"{row['sd']:.3f}"
        print(
            f"  {row['config']:30} n {row['replicates']} mean {row['mean']:.3f} sd {sd}  "
            f"leanest peak on {spec.demo_images} images {row['leanest_peak_bytes'] / GIB:.3f} GiB"
        )
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    # other seeds' studies stay in the file: a run with new seeds adds to it
    result: dict[str, Any] = {"truth": gt, "baseline": {}, "memfront": dict(previous.get("memfront", {}))}
    for seed in args.seeds:
        result["baseline"][str(seed)] = baseline_timeline(draws[seed], probes, gt, spec)
        if args.skip_studies:
            continue
        study_file, wall = run_memfront(seed, args.minutes, args.n_trials)
        to_095 = time_to_fraction(study_file, gt, noise_aware=True, memory_limit=spec.memory_limit)
        result["memfront"][str(seed)] = {**to_095, "wall_seconds": wall}
        shutil.rmtree(study_file.parent, ignore_errors=True)
    print(f"time to 0.95 of the truth's hypervolume (reference: the {spec.memory_limit / GIB:.2f} GiB limit)")
    for seed in args.seeds:
        base, new = result["baseline"][str(seed)], result["memfront"].get(str(seed))
        order = ", ".join(
            knobs_text(s["knobs"]) + ("" if s["fits"] else " (over)") + f" {s['charged_seconds']:.0f}s"
            for s in base["steps"]
        )
        print(f"  seed {seed}: today's all-knob TPE on {spec.demo_images} images draws {order}")
        base_s = base["seconds"]
        base_text = (
            f"at least {base_s:.0f} s" if base_s is not None else f"more than {base['lower_bound']:.0f} s"
        )
        new_s = None if new is None else new["seconds"]
        new_text = "not run" if new is None else "not reached" if new_s is None else f"{new_s:.0f} s"
        bound = base_s if base_s is not None else base["lower_bound"]
        ratio = f"{new_s / bound:.2f}" if new_s is not None and bound else "-"
        print(
            f"  seed {seed}: memfront {new_text}; today's all-knob TPE {base_text}; "
            f"ratio at most {ratio} (goal: at most 0.33)"
        )
        if new is not None and new["trajectory"]:
            end = new["trajectory"][-1]["seconds"]
            theirs = max([s["ratio"] for s in base["steps"] if s["seconds"] <= end], default=0.0)
            print(
                f"  seed {seed}: at memfront's last training ({end:.0f} s): memfront "
                f"{new['trajectory'][-1]['ratio']:.3f} of the truth's hypervolume, "
                f"today's all-knob TPE at most {theirs:.3f}"
            )
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
