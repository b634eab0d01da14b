"""Re-scores the last side-by-side run of ``bench/noise_bench.py`` against a ground truth measured anew.

Usage::

    .venv/bin/python bench/noise_truth.py --study DEMO78.yaml --runs NEW.jsonl --phase accuracy
    .venv/bin/python bench/noise_rescore.py --runs NEW.jsonl [--bench bench/results/noise_bench.json]

(``DEMO78.yaml``: ``git show 78da3d5:studies/demo.yaml``, the space the bench's studies ran on.)

A ground truth's per-seed values depend on the environment the trainings ran in (packages, CPU):
the same training can score differently on another machine while its expectation stays put. This
takes the studies as the bench stored them (each front point's config and interval, and the config
each study exported at each budget) and scores them against the means of ``--runs``' accuracy
phase: regret per budget (the new truth's best mean among the configs whose leanest peak fits,
minus the mean of the config the study exported; the budgets and peaks are the bench's, as memory
does not move with the numerics) and interval coverage; with a bench run that stored each step's
front, the time to 0.95 of the new truth's hypervolume too. It prints both truths side by side.
Nothing is trained here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.accuracy import front_hypervolume  # noqa: E402

GIB = 1024**3


def accuracy_means(path: Path) -> dict[str, list[float]]:
    """Each accuracy config's mAP50-95 values in a runs file's accuracy phase, by the bench's name."""
    values: dict[str, list[float]] = defaultdict(list)
    for line in path.read_text().splitlines():
        run = json.loads(line)
        if run["phase"] == "accuracy" and run["status"] == "ok" and run["map50_95"] is not None:
            k = run["knobs"]
            values[f"batch {k['batch']}, imgsz {k['imgsz']}, amp {'on' if k['amp'] else 'off'}"].append(
                float(run["map50_95"])
            )
    return dict(values)


def _name(key: list[Any]) -> str:
    batch, imgsz, amp = key
    return f"batch {batch}, imgsz {imgsz}, amp {'on' if amp else 'off'}"


def _time_to_fraction(
    to_095: dict[str, Any], peaks: dict[str, float], means: dict[str, float], fraction: float = 0.95
) -> float | str | None:
    """When the study's front first reached ``fraction`` of the new truth's hypervolume (a text: the
    bench run predates storing each step's front; None: never)."""
    steps = to_095.get("trajectory") or []
    if not steps or "front" not in steps[0]:
        return "- (fronts not stored)"
    limit = 6 * GIB  # the bench's reference point
    truth = front_hypervolume([(peaks[c], means[c]) for c in means if c in peaks], memory_limit=limit)
    for step in steps:
        names = [_name(key) for key in step["front"]]
        points = [(peaks[n], means[n]) for n in names if n in means and n in peaks]
        if truth and front_hypervolume(points, memory_limit=limit) / truth >= fraction:
            return float(step["seconds"])
    return None


def rescore(bench: dict[str, Any], means: dict[str, float]) -> list[dict[str, Any]]:
    """Regret per budget and interval coverage of every stored study against ``means``."""
    peaks = {row["config"]: row["leanest_peak_bytes"] for row in bench["truth"]["table"]}
    scored = []
    for study in bench["studies"]:
        regrets = []
        for entry in study["regret"]:
            fitting = [c for c in means if peaks.get(c, float("inf")) <= entry["budget_bytes"]]
            best = max(fitting, key=lambda c: means[c]) if fitting else None
            chosen = entry["chosen"]
            regret = None if best is None or chosen not in means else means[best] - means[chosen]
            regrets.append(
                {"budget_bytes": entry["budget_bytes"], "best": best, "chosen": chosen, "regret": regret}
            )
        to_095 = _time_to_fraction(study.get("to_095") or {}, peaks, means)
        covered = [p for p in study["front"] if p.get("low") is not None and _name(p["key"]) in means]
        inside = sum(p["low"] <= means[_name(p["key"])] <= p["high"] for p in covered)
        scored.append(
            {
                "label": study["label"],
                "seed": study["seed"],
                "regret": regrets,
                "coverage": None if not covered else inside / len(covered),
                "coverage_n": len(covered),
                "to_095_seconds": to_095,
            }
        )
    return scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="the new truth's runs (noise_truth.py)")
    parser.add_argument("--bench", type=Path, default=ROOT / "bench" / "results" / "noise_bench.json")
    parser.add_argument("--out", type=Path, default=None, help="write the scores as JSON here")
    args = parser.parse_args()
    bench = json.loads(args.bench.read_text())
    values = accuracy_means(args.runs)
    means = {config: statistics.mean(v) for config, v in values.items()}
    old = {row["config"]: row for row in bench["truth"]["table"]}
    print(f"{'accuracy config':30} {'bench truth':>17} {'new truth':>17}")
    for config in sorted(old, key=lambda c: old[c]["leanest_peak_bytes"]):
        row, new = old[config], values.get(config, [])
        sd = "" if len(new) < 2 else f" sd {statistics.stdev(new):.3f}"
        shown = f"{statistics.mean(new):.3f} (n {len(new)}){sd}" if new else "-"
        print(f"{config:30} {row['mean']:.3f} (n {row['replicates']}) {'':>3} {shown}")
    scored = rescore(bench, means)
    print("the bench's studies scored against the new truth (regret per budget; interval coverage):")
    for s in scored:
        regrets = ", ".join("-" if r["regret"] is None else f"{r['regret']:+.3f}" for r in s["regret"])
        chosen = ", ".join(str(r["chosen"]) for r in s["regret"])
        coverage = "-" if s["coverage"] is None else f"{s['coverage']:.2f} of {s['coverage_n']}"
        reached = s["to_095_seconds"]
        to_095 = reached if isinstance(reached, str) else "never" if reached is None else f"{reached:.0f} s"
        print(
            f"  {s['label']:26} seed {s['seed']}: regret {regrets}; coverage {coverage}; "
            f"0.95 of its hypervolume after {to_095}; exported {chosen}"
        )
    if args.out is not None:
        args.out.write_text(
            json.dumps({"means": means, "values": values, "studies": scored}, indent=2) + "\n"
        )
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
