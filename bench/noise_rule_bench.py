"""How many degrees of freedom the noise needs before a study ranks: simulated studies, side by side.

Usage::

    .venv/bin/python bench/noise_rule_bench.py [--studies 400] [--seed 0]

A real study of the demo costs 12 minutes, and whether a rule ranks draws shows only over hundreds of
studies; so this bench runs memfront's own decisions (:func:`search.study._replicates.plan_next`,
:func:`search.accuracy.estimate_accuracy`, :func:`search.accuracy.pick_config`) on simulated
trainings. The world is the demo space's ground truth measured in today's environment
(``bench/results/noise_truth_runs_2026-12-06.jsonl``: each accuracy config's mean mAP50-95 over all
its 48 runs, and its leanest peak). A training of a config draws its mean plus a noise, from the 18
runs at cache none, workers 0 (3 seeds of each config; the other runs are other random streams):

* ``normal``: one sd for every config, those runs' pooled sd;
* ``residuals``: a residual of those runs, drawn with replacement from all configs' (each scaled by
  sqrt(n / (n - 1)) to keep its variance): the demo's real tails and unequal spreads.

A study trains ``N`` trainings (6, 8, 10: the demo's 12 minutes give 6-7; and 16), the sampler's
new config being a uniformly drawn untrained one (TPE's first draws are random). Per rule
(``accuracy_min_df`` 1 to 4, 1 being the rule before it existed, where the first replicate made the
noise known; the default with ``accuracy_family_wise``; and a prior on 4 degrees of freedom at the
world's sd, and at 0.6 of it: one that understates the noise), over ``--studies`` simulated studies:

* ``ranks``: the share of studies that rank any two configs;
* ``wrong``: the share that claim, for any pair, that a config beats another beyond noise when its
  true mean is lower (a finding that is not one: what the guide forbids);
* ``front``: the share that claim it for a pair where the claimed better config needs no more memory
  (the claims that drop a config from the front);
* ``export``: the share whose export says its pick beats the runner-up beyond noise when the
  runner-up is truly better;
* ``regret``: the true mean of the best config minus that of the config export picks at the study's
  limit (everything fits), mean with its standard error over the studies;
* ``configs``: how many accuracy configs the study measured.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from noise_bench import load_runs, truth  # noqa: E402

from search.accuracy import (  # noqa: E402
    NoiseRules,
    Training,
    estimate_accuracy,
    fits_budget,
    needs_no_more_memory,
    pick_config,
)
from search.study._replicates import Running, plan_next  # noqa: E402

CHOICES: dict[str, list[Any]] = {
    "batch": [8, 16],
    "imgsz": [96, 128, 160],
    "cache": ["none"],
    "workers": [0],
    "amp": [False],
}
TRAININGS = (6, 8, 10, 16)


def rules_for(sd: float) -> dict[str, NoiseRules]:
    """The rules compared, the priors at the world's noise ``sd`` and below it."""
    return {
        "min_df 1 (before)": NoiseRules(min_df=1),
        "min_df 2": NoiseRules(min_df=2),
        "min_df 3 (default)": NoiseRules(min_df=3),
        "min_df 4": NoiseRules(min_df=4),
        "min_df 3, family-wise": NoiseRules(min_df=3, family_wise=True),
        f"prior {sd:.3f}/4 df": NoiseRules(prior_sd=sd, prior_df=4),
        f"prior {0.6 * sd:.3f}/4 df": NoiseRules(prior_sd=0.6 * sd, prior_df=4),
        f"prior {sd:.3f}/4, family": NoiseRules(prior_sd=sd, prior_df=4, family_wise=True),
    }


def world(path: Path) -> dict[str, Any]:
    """The truth's means, leanest peaks and residuals, per accuracy config (cache none, workers 0)."""
    runs = load_runs(path)
    table = truth(runs)["table"]
    means = {tuple(row["key"]): row["mean"] for row in table}
    peaks = {tuple(row["key"]): row["leanest_peak_bytes"] for row in table}
    by_config: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    for run in runs:
        if run["phase"] == "accuracy":
            k = run["knobs"]
            by_config[(k["batch"], k["imgsz"], k["amp"])].append(run["map50_95"])
    residuals = []
    for values in by_config.values():
        if len(values) > 1:
            mean, scale = statistics.fmean(values), math.sqrt(len(values) / (len(values) - 1))
            residuals += [(v - mean) * scale for v in values]
    sd = math.sqrt(sum(r * r for r in residuals) / len(residuals))
    return {"means": means, "peaks": peaks, "residuals": residuals, "sd": sd}


def simulate(
    truth_world: dict[str, Any], rules: NoiseRules, n: int, noise: str, rng: random.Random
) -> dict[str, Any]:
    """One study of ``n`` trainings under ``rules``; what it ranked and exported."""
    means, peaks = truth_world["means"], truth_world["peaks"]
    trainings: list[Training] = []
    while len(trainings) < n:
        estimates = estimate_accuracy(trainings, rules=rules)
        attempts = [Running(config=t.config, seed=t.seed, feasible=True) for t in trainings]
        plan = plan_next(
            estimates, attempts, choices=CHOICES, first_seed=0, trainings_left=n - len(trainings)
        )
        if plan is None:
            break
        if "batch" in plan.fixed:
            key = (plan.fixed["batch"], plan.fixed["imgsz"], False)
        else:
            untried = sorted(set(means) - {estimates.key_of(t.config) for t in trainings})
            if not untried:
                break
            key = rng.choice(untried)
        seed = 0 if plan.seed is None else plan.seed
        draw = (
            rng.gauss(0.0, truth_world["sd"]) if noise == "normal" else rng.choice(truth_world["residuals"])
        )
        config = {"batch": key[0], "imgsz": key[1], "cache": "none", "workers": 0, "amp": False}
        trainings.append(
            Training(
                number=len(trainings),
                config=config,
                seed=seed,
                accuracy=min(1.0, max(0.0, means[key] + draw)),
                peak_host_bytes=peaks[key],
            )
        )
    estimates = estimate_accuracy(trainings, rules=rules)
    keys = list(estimates.configs)
    wrong = any(estimates.better(a, b) and means[a] < means[b] for a in keys for b in keys if a != b)
    front_wrong = any(
        estimates.better(a, b)
        and means[a] < means[b]
        and needs_no_more_memory(estimates.configs[a].leanest, estimates.configs[b].leanest)
        for a in keys
        for b in keys
        if a != b
    )
    pick = pick_config(estimates, fits_budget(math.inf))
    regret = max(means.values()) - (means[pick.estimate.key] if pick else 0.0)
    runner = None if pick is None or pick.runner_up is None else pick.runner_up.key
    export_wrong = (
        pick is not None
        and runner is not None
        and estimates.better(pick.estimate.key, runner)
        and means[pick.estimate.key] < means[runner]
    )
    return {
        "ranks": estimates.signal,
        "wrong": wrong,
        "front_wrong": front_wrong,
        "export_wrong": export_wrong,
        "regret": regret,
        "configs": len(keys),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, default=ROOT / "bench" / "results" / "noise_truth_runs_2026-12-06.jsonl"
    )
    parser.add_argument("--studies", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "noise_rule_bench.json")
    args = parser.parse_args()
    truth_world = world(args.runs)
    best = max(truth_world["means"].values())
    print(
        f"world: {len(truth_world['means'])} accuracy configs, true means "
        + ", ".join(f"{k[0]}/{k[1]} {m:.3f}" for k, m in sorted(truth_world["means"].items()))
        + f"; noise sd {truth_world['sd']:.3f} ({len(truth_world['residuals'])} residuals); best {best:.3f}"
    )
    print(f"{args.studies} simulated studies per cell; regret: mean ± standard error over them")
    results = []
    for noise in ("normal", "residuals"):
        for n in TRAININGS:
            print(f"noise {noise}, {n} trainings")
            print(
                f"  {'rule':<24} {'ranks':>6} {'wrong':>6} {'front':>6} {'export':>7} "
                f"{'regret':>15} {'configs':>8}"
            )
            for label, rules in rules_for(truth_world["sd"]).items():
                rng = random.Random(f"{args.seed}/{noise}/{n}")  # each rule from the same seed
                runs = [simulate(truth_world, rules, n, noise, rng) for _ in range(args.studies)]
                regrets = [r["regret"] for r in runs]
                row = {
                    "noise": noise,
                    "trainings": n,
                    "rule": label,
                    "ranks": statistics.fmean(r["ranks"] for r in runs),
                    "wrong": statistics.fmean(r["wrong"] for r in runs),
                    "front_wrong": statistics.fmean(r["front_wrong"] for r in runs),
                    "export_wrong": statistics.fmean(r["export_wrong"] for r in runs),
                    "regret": statistics.fmean(regrets),
                    "regret_se": statistics.stdev(regrets) / math.sqrt(len(regrets)),
                    "configs": statistics.fmean(r["configs"] for r in runs),
                }
                results.append(row)
                print(
                    f"  {label:<24} {row['ranks']:>6.2f} {row['wrong']:>6.3f} {row['front_wrong']:>6.3f} "
                    f"{row['export_wrong']:>7.3f} "
                    f"{row['regret']:>8.3f} ± {row['regret_se']:.3f} {row['configs']:>8.1f}"
                )
    args.out.write_text(
        json.dumps({"studies": args.studies, "seed": args.seed, "results": results}, indent=2)
    )
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
