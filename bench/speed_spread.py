"""How far one full config's epoch time repeats: the spread behind ``SPEED_SPREAD``.

Usage::

    .venv/bin/python bench/speed_spread.py [RUNS.jsonl ...] [--json OUT.json]

Reads replicated trainings as ``bench/noise_truth.py`` records them (one JSON line per training:
``knobs``, ``seed``, ``status``, ``epoch_seconds``; the default is every runs file under
``bench/results/`` that has such lines) and, for each full config (the five knobs) trained more than
once in one file, compares its epoch times pair by pair: ``1 - shorter / longer``, the lead one
setting would seem to have over another that is the very same setting. It prints each config's
times, the distribution of those leads, and, side by side, how many of these same-setting pairs each
margin would call "faster": none (every lead counts, export's rule before the margin) and
:data:`search.accuracy.SPEED_SPREAD`. Nothing is trained here: the trainings are the noise benches'.
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


def repeated_epoch_times(path: Path) -> dict[str, list[float]]:
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
    return {name: values for name, values in times.items() if len(values) > 1}


def pair_leads(values: list[float]) -> list[float]:
    """The apparent lead of each pair of repeats: ``1 - shorter / longer``."""
    return [1 - min(a, b) / max(a, b) for a, b in itertools.combinations(values, 2)]


def quantile(sorted_values: list[float], q: float) -> float:
    """The ``q`` quantile by linear interpolation (``statistics.quantiles``' inclusive method)."""
    position = q * (len(sorted_values) - 1)
    low = int(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", type=Path, help="runs files (default: bench/results/*runs*.jsonl)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    files = args.runs or sorted(RESULTS.glob("*runs*.jsonl"))
    groups: list[dict[str, Any]] = []
    for path in files:
        for name, values in repeated_epoch_times(path).items():
            leads = pair_leads(values)
            groups.append({"file": path.name, "config": name, "epoch_seconds": values, "leads": leads})
    leads = sorted(lead for group in groups for lead in group["leads"])
    if not leads:
        print("no full config was trained twice in these files: nothing to measure", file=sys.stderr)
        return 1

    print(f"{'file':<36} {'full config':<58} s/epoch over seeds")
    for group in groups:
        times = ", ".join(f"{t:.2f}" for t in group["epoch_seconds"])
        print(f"{group['file']:<36} {group['config']:<58} {times}  (widest lead {max(group['leads']):.0%})")
    quantiles = {f"q{int(100 * q)}": quantile(leads, q) for q in (0.5, 0.75, 0.9, 0.95)}
    print(
        f"\n{len(leads)} pairs of repeats of one full config ({len(groups)} configs, {len(files)} files): "
        f"apparent lead median {quantiles['q50']:.1%}, 75% {quantiles['q75']:.1%}, "
        f"90% {quantiles['q90']:.1%}, 95% {quantiles['q95']:.1%}, widest {leads[-1]:.1%}"
    )
    called = {margin: sum(lead > margin for lead in leads) for margin in (0.0, SPEED_SPREAD)}
    print("same-setting pairs a rule would call one of them faster (all of them are false leads):")
    for margin, count in called.items():
        rule = "any lead (no margin)" if margin == 0 else f"beyond SPEED_SPREAD = {margin:.0%}"
        print(f"  {rule:<28} {count:>4} of {len(leads)} ({count / len(leads):.0%})")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "speed_spread": SPEED_SPREAD,
                    "pairs": len(leads),
                    "configs": len(groups),
                    "median_lead": statistics.median(leads),
                    **quantiles,
                    "widest": leads[-1],
                    "false_leads": {str(margin): count for margin, count in called.items()},
                    "groups": groups,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
