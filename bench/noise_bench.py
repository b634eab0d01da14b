"""Benchmark of accuracy with its noise: ground truth of the demo space, and two searches side by side.

Usage::

    .venv/bin/python bench/noise_truth.py                  # the ground truth's runs (resumable, ~70 min)
    .venv/bin/python bench/noise_bench.py [--minutes 8] [--seeds 0 1] [--skip-studies]

Reads the ground truth's runs (``bench/results/noise_truth_runs.jsonl``) and prints:

* the ground truth's table: every accuracy config of the demo space, its mean mAP50-95 over its
  replicates, their standard deviation and count, its leanest peak and speed;
* the knob roles: at the role configs, each system variant's mean over seeds; whether trainings
  that differ only in the cache scored the same; the workers' effect with its 95% interval;
* then, unless ``--skip-studies``, runs two studies of the demo at equal wall time (``--minutes``
  each, per seed of ``--seeds``) one after the other on this machine: today's all-knob TPE
  (memfront before replicates: commit ``BASELINE``, from a git worktree) and memfront with
  replicates, and compares them with the ground truth:

  - hypervolume of each study's front, its points' accuracy taken at the ground truth's means, over
    the ground truth's own hypervolume;
  - regret of the exported config at three budgets: the ground truth's mean of the best config that
    fits minus that of the config the study exports (0, or within the ground truth's interval, is
    the goal);
  - interval coverage: how often the ground truth's mean lies in the study's interval;
  - wall time to 0.95 of the ground truth's hypervolume (issue 13's goal: the new study in at most a
    third of the baseline's time): after each training ends, the study's front at that moment (the
    baseline's: its non-dominated trials; the new study's: its noise-aware front), its configs taken
    at the ground truth's means and leanest peaks, over the truth's hypervolume.

Both studies run the demo space as the ground truth measured it: the baseline's ``studies/demo.yaml``
(256 images, workers 0-1, a 6 GiB limit), which today's memfront reads unchanged.

The baseline's front and export are today's rules, applied here to its stored trials: the
non-dominated trials on their single values, and the fitting front trial with the best single value.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scipy import stats as scipy_stats  # noqa: E402

from search.accuracy import (  # noqa: E402
    Training,
    accuracy_key,
    estimate_accuracy,
    front_hypervolume,
    key_text,
    noise_front,
    trainings_of,
)
from search.study._prepare import open_study, storage_url  # noqa: E402
from search.study._spec import load_study_spec  # noqa: E402
from search.study._stored import read_trials  # noqa: E402

BASELINE = "78da3d5"
GIB = 1024**3


def load_runs(path: Path) -> list[dict[str, Any]]:
    """The ground truth's runs that ended ok."""
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in runs if r["status"] == "ok"]


def trainings_from_runs(runs: list[dict[str, Any]]) -> list[Training]:
    """The ground truth's runs as the trainings memfront's accuracy estimate reads."""
    return [
        Training(
            number=i,
            config=r["knobs"],
            seed=r["seed"],
            accuracy=r["map50_95"],
            peak_host_bytes=r["peak_host_bytes"],
            epoch_seconds=r["epoch_seconds"],
        )
        for i, r in enumerate(runs)
    ]


def truth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per accuracy config: replicates, mean, sd; per full config: peak and epoch seconds."""
    accuracy_runs = [r for r in runs if r["phase"] in ("accuracy", "roles")]
    estimates = estimate_accuracy(trainings_from_runs(accuracy_runs))
    systems: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for run in runs:
        k = run["knobs"]
        systems[(k["batch"], k["imgsz"], k["amp"], k["cache"], k["workers"])].append(run)
    table = []
    for key, estimate in sorted(estimates.configs.items()):
        values = estimate.values
        leanest = min(
            (s for s in systems if s[:3] == key),
            key=lambda s: statistics.median(r["peak_host_bytes"] for r in systems[s]),
        )
        table.append(
            {
                "config": key_text(key),
                "key": list(key),
                "replicates": len(values),
                "mean": estimate.mean,
                "sd": statistics.stdev(values) if len(values) > 1 else None,
                "leanest_system": {"cache": leanest[3], "workers": leanest[4]},
                "leanest_peak_bytes": statistics.median(r["peak_host_bytes"] for r in systems[leanest]),
                "leanest_epoch_seconds": statistics.median(r["epoch_seconds"] for r in systems[leanest]),
            }
        )
    full = {
        "/".join(map(str, s)): {
            "peak_bytes": statistics.median(r["peak_host_bytes"] for r in rs),
            "epoch_seconds": statistics.median(r["epoch_seconds"] for r in rs),
            "runs": len(rs),
        }
        for s, rs in systems.items()
    }
    points = [(row["leanest_peak_bytes"], row["mean"]) for row in table]
    return {"estimates": estimates, "table": table, "full_configs": full, "points": points}


def _difference(a: list[float], b: list[float]) -> dict[str, Any] | None:
    """Mean of ``a`` minus mean of ``b`` with its 95% Welch interval; None below two values each."""
    if len(a) < 2 or len(b) < 2:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1.0
    half = float(scipy_stats.t.ppf(0.975, df)) * se
    return {"difference": diff, "low": diff - half, "high": diff + half, "within_noise": abs(diff) <= half}


def knob_roles(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At each role config: every system variant against the leanest (cache none, workers 0).

    For each variant: its mean over seeds, whether each seed scored exactly as cache ``none`` with the
    same seed and workers (the same random stream), and its mean's difference from the leanest's with
    a 95% Welch interval (within noise: the knob does not change accuracy in expectation).
    """
    role_keys = sorted({(r["knobs"]["batch"], r["knobs"]["imgsz"]) for r in runs if r["phase"] == "roles"})
    found = []
    for batch, imgsz in role_keys:
        variants: dict[tuple[str, int], dict[int, float]] = defaultdict(dict)
        for r in runs:
            k = r["knobs"]
            if (k["batch"], k["imgsz"]) == (batch, imgsz) and r["phase"] in ("accuracy", "roles"):
                variants[(k["cache"], k["workers"])][r["seed"]] = r["map50_95"]
        leanest = variants.get(("none", 0), {})
        rows = {}
        for (cache, workers), seeds in sorted(variants.items()):
            same_stream = variants.get(("none", workers), {})
            identical = all(same_stream.get(seed) == value for seed, value in seeds.items())
            rows[f"{cache}/w{workers}"] = {
                "mean": statistics.fmean(seeds.values()),
                "sd": statistics.stdev(seeds.values()) if len(seeds) > 1 else None,
                "seeds": len(seeds),
                "identical_to_cache_none": identical,
                "vs_leanest": None
                if (cache, workers) == ("none", 0)
                else _difference(list(seeds.values()), list(leanest.values())),
            }
        found.append({"config": f"batch {batch}, imgsz {imgsz}", "variants": rows})
    return found


def run_study(code: Path, minutes: float, seed: int, label: str) -> dict[str, Any]:
    """Runs the demo study with ``code``'s memfront for ``minutes``; returns its trials' stored view."""
    tmp = Path(tempfile.mkdtemp(prefix="memfront-noise-bench-"))
    baseline_demo = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BASELINE}:studies/demo.yaml"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = yaml.safe_load(baseline_demo)  # the space, data and limit the ground truth measured
    spec.update({"timeout": f"{minutes}m", "n_trials": 200, "seed": seed})
    study_file = tmp / "demo.yaml"
    study_file.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "PYTHONPATH": str(code)}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "search", "run", str(study_file)],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{label}: run failed ({done.returncode}): {done.stderr[-2000:]}")
    print(
        f"  {label}, seed {seed}: {wall:.0f} s; {done.stderr.strip().splitlines()[-1] if done.stderr else ''}"
    )
    return {"folder": tmp, "file": study_file, "wall_seconds": wall}


def baseline_view(study_file: Path) -> tuple[list[dict[str, Any]], int]:
    """Today's front (non-dominated trials on single values) of a study, as points with knobs."""
    spec = load_study_spec(study_file)
    study = open_study(spec, storage_url(spec, study_file), create=False)
    stored = [t for t in read_trials(study.get_trials(deepcopy=False)) if t.counts_toward_n_trials]
    return single_value_front(stored), len(stored)


def single_value_front(stored: list[Any]) -> list[dict[str, Any]]:
    """The non-dominated feasible trials on their single values (the baseline's front)."""
    feasible = [
        {
            "key": accuracy_key(t.config),
            "accuracy": t.figures["map50_95"],
            "peak": t.figures["peak_host_bytes"],
        }
        for t in stored
        if t.status == "ok" and t.feasible and t.config and t.figures["map50_95"] is not None
    ]
    front = [
        p
        for p in feasible
        if not any(
            o["accuracy"] >= p["accuracy"]
            and o["peak"] <= p["peak"]
            and o is not p
            and (o["accuracy"] > p["accuracy"] or o["peak"] < p["peak"])
            for o in feasible
        )
    ]
    return front


def time_to_fraction(
    study_file: Path,
    gt: dict[str, Any],
    *,
    noise_aware: bool,
    fraction: float = 0.95,
    memory_limit: int = 6 * GIB,
) -> dict[str, Any]:
    """Seconds from the study's first trial until its front reached ``fraction`` of the truth's hypervolume.

    The front after each training (in the order they ended), its configs at the truth's means and
    leanest peaks; None when it never got there. While the noise is unknown the noise-aware front
    keeps every config (none is beaten beyond noise yet), which can only raise its hypervolume:
    read this beside the regret, which judges what the study would export.
    """
    spec = load_study_spec(study_file)
    study = open_study(spec, storage_url(spec, study_file), create=False)
    frozen = [t for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    stored = read_trials(frozen)
    if not frozen:
        return {"seconds": None, "trajectory": []}
    start = min(t.datetime_start for t in frozen if t.datetime_start is not None)
    truth_of = {tuple(row["key"]): (row["leanest_peak_bytes"], row["mean"]) for row in gt["table"]}
    limit = memory_limit  # the hypervolume's reference point (evaluate() uses 6 GiB, this bench's limit)
    truth_hv = front_hypervolume(gt["points"], memory_limit=limit)
    ends = sorted({t.datetime_complete for t in frozen if t.datetime_complete is not None})
    trajectory, reached = [], None
    for end in ends:
        ended = [f.datetime_complete is not None and f.datetime_complete <= end for f in frozen]
        subset = [s for s, done in zip(stored, ended, strict=True) if done]
        if noise_aware:
            trainings = trainings_of(subset, accuracy=spec.objectives[0], default_seed=spec.seed)
            estimates = estimate_accuracy(trainings, rules=spec.noise_rules)
            keys = [p.estimate.key for p in noise_front(estimates)]
        else:
            keys = [p["key"] for p in single_value_front([t for t in subset if t.counts_toward_n_trials])]
        ratio = front_hypervolume([truth_of[k] for k in keys if k in truth_of], memory_limit=limit) / truth_hv
        seconds = (end - start).total_seconds()
        # The front's configs too: a truth measured anew re-scores the trajectory (noise_rescore.py).
        trajectory.append({"seconds": seconds, "ratio": ratio, "front": [list(k) for k in keys]})
        if reached is None and ratio >= fraction:
            reached = seconds
    return {"seconds": reached, "trajectory": trajectory}


def evaluate(
    label: str, front: list[dict[str, Any]], choose: Any, gt: dict[str, Any], budgets: list[float]
) -> dict[str, Any]:
    """Hypervolume at the ground truth's means, regret per budget, interval coverage."""
    gt_est = gt["estimates"].configs
    limit = 6 * GIB
    hv = front_hypervolume(
        [(p["peak"], gt_est[p["key"]].mean) for p in front if p["key"] in gt_est], memory_limit=limit
    )
    gt_hv = front_hypervolume(gt["points"], memory_limit=limit)
    regrets = []
    for budget in budgets:
        fitting = [row for row in gt["table"] if row["leanest_peak_bytes"] <= budget]
        best = max(fitting, key=lambda row: row["mean"]) if fitting else None
        chosen = choose(budget)
        regret = None if best is None or chosen is None else best["mean"] - gt_est[chosen].mean
        regrets.append(
            {
                "budget_bytes": budget,
                "best": best and best["config"],
                "chosen": chosen and key_text(chosen),
                "regret": regret,
            }
        )
    covered = [p for p in front if p.get("low") is not None and p["key"] in gt_est]
    inside = sum(p["low"] <= gt_est[p["key"]].mean <= p["high"] for p in covered)
    return {
        "label": label,
        "front": [{**p, "key": list(p["key"])} for p in front],
        "hypervolume_ratio": hv / gt_hv if gt_hv else None,
        "regret": regrets,
        "coverage": None if not covered else inside / len(covered),
        "coverage_n": len(covered),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "bench" / "results" / "noise_truth_runs.jsonl")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--skip-studies", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "noise_bench.json")
    args = parser.parse_args()
    runs = load_runs(args.runs)
    gt = truth(runs)
    print(
        f"ground truth: {len(runs)} runs; pooled noise sd {gt['estimates'].noise.sd:.3f} "
        f"({gt['estimates'].noise.df} df)"
    )
    print(f"{'accuracy config':34} {'n':>2} {'mean':>6} {'sd':>6} {'leanest peak':>13} {'s/epoch':>8}")
    for row in gt["table"]:
        sd = "-" if row["sd"] is None else f"{row['sd']:.3f}"
        print(
            f"{row['config']:34} {row['replicates']:>2} {row['mean']:6.3f} {sd:>6} "
            f"{row['leanest_peak_bytes'] / GIB:10.3f} GiB {row['leanest_epoch_seconds']:7.1f}s"
        )
    roles = knob_roles(runs)
    for role in roles:
        print(f"knob roles at {role['config']} (mAP50-95 over seeds; difference from cache none, workers 0):")
        for name, v in role["variants"].items():
            sd = "-" if v["sd"] is None else f"{v['sd']:.3f}"
            same = "identical to cache none per seed" if v["identical_to_cache_none"] else "another stream"
            e = v["vs_leanest"]
            versus = (
                ""
                if e is None
                else (
                    f"; {e['difference']:+.3f} [{e['low']:+.3f}, {e['high']:+.3f}] "
                    + ("within noise" if e["within_noise"] else "BEYOND NOISE")
                )
            )
            print(f"  {name:8} mean {v['mean']:.3f} sd {sd} n {v['seeds']}; {same}{versus}")
    result: dict[str, Any] = {
        "truth": {k: v for k, v in gt.items() if k != "estimates"},
        "noise": {"sd": gt["estimates"].noise.sd, "df": gt["estimates"].noise.df},
        "roles": roles,
    }
    peaks = sorted(row["leanest_peak_bytes"] for row in gt["table"])
    budgets = [peaks[1] * 1.01, peaks[len(peaks) // 2] * 1.01, peaks[-1] * 1.05]
    if args.skip_studies and args.out.exists():
        result["studies"] = json.loads(args.out.read_text()).get("studies")  # the last run's, kept
    if not args.skip_studies:
        worktree = Path(tempfile.mkdtemp(prefix="memfront-baseline-")) / "code"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), BASELINE],
            check=True,
            capture_output=True,
        )
        studies = []
        try:
            for seed in args.seeds:
                base = run_study(worktree, args.minutes, seed, "today's all-knob TPE")
                front, trained = baseline_view(base["file"])

                def base_choice(budget: float, front: list[dict[str, Any]] = front) -> Any:
                    fits = [p for p in front if p["peak"] <= budget]
                    return max(fits, key=lambda p: (p["accuracy"], -p["peak"]))["key"] if fits else None

                studies.append(
                    {
                        **evaluate("today's all-knob TPE", front, base_choice, gt, budgets),
                        "seed": seed,
                        "trainings": trained,
                        "wall_seconds": base["wall_seconds"],
                        "to_095": time_to_fraction(base["file"], gt, noise_aware=False),
                    }
                )
                new = run_study(ROOT, args.minutes, seed, "memfront with replicates")
                import search

                results = search.load_study(new["file"])
                points = [
                    {
                        "key": accuracy_key(row),
                        "accuracy": float(row["accuracy_mean"]),
                        "peak": float(row["config_peak_host_bytes"]),
                        "low": None if math.isnan(row["accuracy_low"]) else float(row["accuracy_low"]),
                        "high": None if math.isnan(row["accuracy_high"]) else float(row["accuracy_high"]),
                        "replicates": int(row["replicates"]),
                    }
                    for _, row in results.front().iterrows()
                ]

                def new_choice(budget: float, results: Any = results) -> Any:
                    choice = results.choice(int(budget))
                    return None if choice.estimate is None else choice.estimate.key

                trainings = len(
                    [t for t in read_trials(results.study.get_trials()) if t.counts_toward_n_trials]
                )
                studies.append(
                    {
                        **evaluate("memfront with replicates", points, new_choice, gt, budgets),
                        "seed": seed,
                        "trainings": trainings,
                        "wall_seconds": new["wall_seconds"],
                        "accuracy_signal": results.accuracy_signal,
                        "to_095": time_to_fraction(new["file"], gt, noise_aware=True),
                    }
                )
                for folder in (base["folder"], new["folder"]):
                    shutil.rmtree(folder, ignore_errors=True)
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False
            )
        result["studies"] = studies
        print(
            f"side by side, {args.minutes:g} min each, seeds {args.seeds}; budgets "
            + ", ".join(f"{b / GIB:.3f} GiB" for b in budgets)
        )
        for s in studies:
            regrets = ", ".join("-" if r["regret"] is None else f"{r['regret']:+.3f}" for r in s["regret"])
            coverage = "-" if s["coverage"] is None else f"{s['coverage']:.2f} of {s['coverage_n']}"
            reached = s["to_095"]["seconds"]
            to_095 = "not reached" if reached is None else f"{reached:.0f} s"
            print(
                f"  {s['label']:26} seed {s['seed']}: {s['trainings']:2} trainings, front {len(s['front'])}, "
                f"hypervolume {s['hypervolume_ratio']:.3f} of the truth's, regret {regrets}, "
                f"coverage {coverage}, 0.95 of the truth's hypervolume after {to_095}"
            )
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
