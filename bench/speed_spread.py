"""How far one full config's epoch time repeats: the spread behind ``SPEED_SPREAD``.

Usage::

    .venv/bin/python bench/speed_spread.py [--json OUT.json]

Nothing is trained: it reads what the other benches recorded under ``bench/results/``.

- **Short epochs**: the replicated trainings of ``bench/noise_truth.py`` (``*runs*.jsonl``: one line
  per training with ``knobs``, ``status`` and ``epoch_seconds``; 15 epochs of 256 images, about 3 s
  each). For each full config (the five knobs) trained more than once in one file, its epoch times
  are compared pair by pair: ``1 - shorter / longer``, the lead one setting would seem to have over
  another that is the very same setting.
- **Whole-dataset epochs**: the real runs of ``bench/probe_bench.py`` (``probe_bench*.json``: 3000
  images, first epochs' training of 30-50 s), the same pairs over one file's runs of one system
  variant; and each probe's projected training time against the median of its variant's runs (what
  a study's probed epoch time rests on).

It prints each group's times, the distribution of the leads, and, side by side, how many of these
same-setting pairs each margin would call "faster": none (every lead counts, export's rule before
the margin) and :data:`search.accuracy.SPEED_SPREAD`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.accuracy import SPEED_SPREAD  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CURRENT_PROBES = "probe_bench_twopass.json"
"""The probe bench run of the probe as it is now (two bounded epochs; README *Probes*): the other
files' probes are earlier designs, whose projections are not today's. Their real runs still repeat."""


def short_epoch_groups(path: Path) -> list[dict[str, Any]]:
    """Each full config's epoch times in one runs file (trainings that ended ``ok`` with one)."""
    times: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text().splitlines():
        run = json.loads(line)
        seconds = run.get("epoch_seconds")
        if run.get("status") != "ok" or not seconds or "knobs" not in run:
            continue
        k = run["knobs"]
        name = (
            f"batch {k['batch']}, imgsz {k['imgsz']}, cache {k['cache']}, workers {k['workers']}, "
            f"amp {'on' if k['amp'] else 'off'}"
        )
        times[name].append(float(seconds))
    return [{"file": path.name, "config": n, "seconds": v} for n, v in times.items() if len(v) > 1]


def probe_bench_groups(path: Path) -> tuple[list[dict[str, Any]], list[float]]:
    """One probe bench file's repeated real runs per variant (first epoch's training seconds), and
    each probe's projected training time over the median of its variant's runs."""
    bench = json.loads(path.read_text())
    groups, ratios = [], []
    for result in bench.get("results", []):
        runs = [r for r in result.get("full") or [] if r.get("status") == "ok" and r.get("train_seconds")]
        trained = [float(r["train_seconds"]) for r in runs]
        knobs = f"batch {bench['batch']}, imgsz {bench['imgsz']}"
        name = f"{knobs}, cache {result['cache']}, workers {result['workers']}"
        if len(trained) > 1:
            groups.append({"file": path.name, "config": name, "seconds": trained})
        probes = result.get("probes") or ([result["probe"]] if "probe" in result else [])
        projected = [p["projected_train_seconds"] for p in probes if p.get("status") == "ok"]
        if trained:
            ratios += [seconds / statistics.median(trained) for seconds in projected if seconds]
    return groups, ratios


def pair_leads(values: list[float]) -> list[float]:
    """The apparent lead of each pair of repeats: ``1 - shorter / longer``."""
    return [1 - min(a, b) / max(a, b) for a, b in itertools.combinations(values, 2)]


def summary(title: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Prints the groups and their leads' distribution against the margins; returns the figures."""
    print(f"\n{title}\n{'file':<32} {'full config':<58} seconds over repeats")
    for group in groups:
        group["leads"] = pair_leads(group["seconds"])
        times = ", ".join(f"{t:.2f}" for t in group["seconds"])
        print(f"{group['file']:<32} {group['config']:<58} {times}  (widest lead {max(group['leads']):.0%})")
    leads = sorted(lead for group in groups for lead in group["leads"])
    twentieths = statistics.quantiles(leads, n=20, method="inclusive")  # the 5%, 10%, ..., 95% points
    quantiles = {f"q{5 * (i + 1)}": twentieths[i] for i in (9, 14, 17, 18)}
    files = len({group["file"] for group in groups})
    print(
        f"{len(leads)} pairs of repeats of one full config ({len(groups)} configs, {files} files): "
        f"apparent lead median {quantiles['q50']:.1%}, 75% {quantiles['q75']:.1%}, "
        f"90% {quantiles['q90']:.1%}, 95% {quantiles['q95']:.1%}, widest {leads[-1]:.1%}"
    )
    called = {margin: sum(lead > margin for lead in leads) for margin in (0.0, SPEED_SPREAD)}
    print("same-setting pairs a rule would call one of them faster (all of them are false leads):")
    for margin, count in called.items():
        rule = "any lead (no margin)" if margin == 0 else f"beyond SPEED_SPREAD = {margin:.0%}"
        print(f"  {rule:<28} {count:>4} of {len(leads)} ({count / len(leads):.0%})")
    return {
        "pairs": len(leads), "configs": len(groups), **quantiles, "widest": leads[-1],
        "false_leads": {str(margin): count for margin, count in called.items()}, "groups": groups,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    short = [g for path in sorted(RESULTS.glob("*runs*.jsonl")) for g in short_epoch_groups(path)]
    whole: list[dict[str, Any]] = []
    ratios: list[float] = []
    for path in sorted(RESULTS.glob("probe_bench*.json")):
        groups, probe_ratios = probe_bench_groups(path)
        whole += groups
        ratios += probe_ratios if path.name == CURRENT_PROBES else []
    if not short or not whole:
        print("no full config was run twice in bench/results: nothing to measure", file=sys.stderr)
        return 1
    figures = {
        "speed_spread": SPEED_SPREAD,
        "short_epochs": summary("short epochs (noise benches: 15 epochs of 256 images)", short),
        "whole_dataset_epochs": summary("whole-dataset epochs (probe bench: 3000 images, first one)", whole),
    }
    ratios.sort()
    print(
        f"\nprobes' projected training over their variant's real first epoch ({CURRENT_PROBES}): "
        f"{len(ratios)} probes, "
        f"{ratios[0]:.3f}-{ratios[-1]:.3f} (median {statistics.median(ratios):.3f}); "
        f"{sum(abs(r - 1) <= SPEED_SPREAD for r in ratios)} within SPEED_SPREAD"
    )
    figures["probe_over_run"] = ratios
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
