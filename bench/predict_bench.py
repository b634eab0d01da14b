"""Benchmark of memory prediction: held-out error, extrapolation to the full dataset, pre-flight savings.

Usage::

    .venv/bin/python bench/predict_bench.py [--out bench/results/predict_bench.json]

1. Calibration: ``memfront calibrate`` figures for this machine (reused when cached).
2. Held-out at the study's size: trials on 10% of a generated 2,000-image dataset (real, 1 epoch); each
   is predicted by a model fitted on the calibration and the *other* trials (leave-one-out). Goal:
   median absolute error <= 10%.
3. Extrapolation: the model fitted on all 10% trials predicts the full-size run (all 2,000 images,
   one real epoch), for cache none and cache ram, which is then measured. Goal: error <= 10% each.
4. Pre-flight: the same small study (half of its space over the limit) run twice, with and without
   pre-flight: wall time of each, trials skipped, and whether every feasible front point is kept.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.data._dataset import load_dataset  # noqa: E402
from search.data._demo import make_demo_dataset  # noqa: E402
from search.model._calibration import calibrate  # noqa: E402
from search.model._predict import DatasetStats, features  # noqa: E402
from search.model._preflight import combined_fit  # noqa: E402
from search.results._frame import front, trials_frame  # noqa: E402
from search.study._optimize import run_worker  # noqa: E402
from search.study._prepare import open_study, prepare_study, storage_url  # noqa: E402
from search.study._spec import load_study_spec  # noqa: E402
from search.trial._config import TrialConfig, TrialLimits  # noqa: E402
from search.trial._supervisor import run_trial  # noqa: E402

GIB = 1024**3
FULL_IMAGES, IMAGE_SIZE, SUBSET = 2000, 320, 200
SUBSET_RUNS = (  # batch, imgsz, cache, workers
    (8, 160, "none", 0), (16, 320, "none", 0), (16, 320, "ram", 0),
    (8, 256, "ram", 0), (8, 160, "none", 2), (16, 320, "ram", 2),
)  # fmt: skip
FULL_RUNS = ((16, 320, "none", 0), (16, 320, "ram", 0))
PREFLIGHT_STUDY = """\
name: {name}
data: {data}
epochs: 1
n_trials: 4
memory_limit: {limit}
preflight_margin: {margin}
preflight_min_samples: 1
sampler: grid
seed: 0
space:
  batch: [8, 16]
  imgsz: [320]
  cache: [none, ram]
  workers: [0]
"""


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def measure(data: Path, knobs: tuple[int, int, str, int], images: int | None) -> dict[str, Any]:
    """One real 1-epoch trial."""
    batch, imgsz, cache, workers = knobs
    record = run_trial(
        TrialConfig(
            data=str(data),
            batch=batch,
            imgsz=imgsz,
            cache=cache,
            workers=workers,  # type: ignore[arg-type]
            epochs=1,
            train_images=images,
        ),
        limits=TrialLimits(time_limit_s=900),
    )
    if record.status != "ok":
        raise SystemExit(f"trial {knobs} on {images} images: {record.status} {record.error}")
    return {
        "knobs": knobs,
        "images": images,
        "peak": float(record.peak_host_bytes or 0),
        "wall": record.wall_seconds,
    }


def bench(out: Path) -> dict[str, Any]:
    """Runs every part and returns the figures."""
    results: dict[str, Any] = {"command": f"{sys.executable} bench/predict_bench.py"}
    started = time.monotonic()
    log("calibration (cached per machine) ...")
    calibration = calibrate(on_run=lambda i, n, k: log(f"  calibration run {i + 1}/{n}: {k}"))
    results["calibration"] = calibration.model.to_dict()
    with tempfile.TemporaryDirectory(prefix="memfront-predict-bench-") as tmp:
        data = make_demo_dataset(
            Path(tmp) / "data", images=FULL_IMAGES, val_images=100, size=IMAGE_SIZE, seed=3
        )
        stats = DatasetStats.read(load_dataset(data))

        def row(run: dict[str, Any]) -> tuple[dict[str, float], float]:
            batch, imgsz, cache, workers = run["knobs"]
            return (
                features(
                    batch=batch,
                    imgsz=imgsz,
                    cache=cache,
                    workers=workers,
                    stats=stats,
                    train_images=run["images"],
                ),
                run["peak"],
            )

        subset = []
        for knobs in SUBSET_RUNS:
            log(f"subset trial ({SUBSET} images) {knobs} ...")
            subset.append(measure(data, knobs, SUBSET))
        held_out = []
        for index, run in enumerate(subset):
            others = [row(r) for i, r in enumerate(subset) if i != index]
            model = combined_fit(list(calibration.rows), others)
            predicted = model.predict(row(run)[0]).total_bytes
            held_out.append(
                {
                    "knobs": run["knobs"],
                    "measured": run["peak"],
                    "predicted": predicted,
                    "error": (predicted - run["peak"]) / run["peak"],
                }
            )
        results["held_out"] = held_out
        results["held_out_median_abs_error"] = statistics.median(abs(h["error"]) for h in held_out)
        model = combined_fit(list(calibration.rows), [row(r) for r in subset])
        results["fitted"] = model.to_dict()
        extrapolated = []
        for knobs in FULL_RUNS:
            batch, imgsz, cache, workers = knobs
            predicted = model.predict(
                features(batch=batch, imgsz=imgsz, cache=cache, workers=workers, stats=stats)
            ).total_bytes
            log(f"full-size run ({FULL_IMAGES} images) {knobs}, predicted {predicted / GIB:.2f} GiB ...")
            run = measure(data, knobs, None)
            extrapolated.append(
                {
                    "knobs": knobs,
                    "predicted": predicted,
                    "measured": run["peak"],
                    "error": (predicted - run["peak"]) / run["peak"],
                    "wall": run["wall"],
                }
            )
        results["extrapolation"] = extrapolated
        full_none = next(r["measured"] for r in extrapolated if r["knobs"][2] == "none")
        results["preflight"] = preflight(Path(tmp), data, full_none)
    results["total_seconds"] = time.monotonic() - started
    return results


def preflight(folder: Path, data: Path, full_none_peak: float) -> dict[str, Any]:
    """The same study with and without pre-flight; its limit puts the cache=ram half over it.

    The study trains on all 2,000 images, whose RAM cache (~0.6 GiB at imgsz 320) puts both
    cache=ram configurations well over a limit just above the largest cache=none one (its peak
    measured by the full-size run). An earlier version trained on 1,000 images: the smaller cache put
    batch 8 with cache ram right at the limit, neither clearly feasible nor infeasible.
    """
    limit = int(full_none_peak + 0.05 * GIB)
    outcome: dict[str, Any] = {"limit_bytes": limit}
    for label, margin in (("with", "0.1"), ("without", "null")):
        study_file = folder / f"preflight-{label}.yaml"
        study_file.write_text(
            PREFLIGHT_STUDY.format(name=f"pf-{label}", data=data, limit=limit, margin=margin)
        )
        spec = load_study_spec(study_file)
        log(f"pre-flight study {label} pre-flight ...")
        started = time.monotonic()
        done = run_worker(prepare_study(spec, study_file))
        wall = time.monotonic() - started
        frame = trials_frame(open_study(spec, storage_url(spec, study_file), create=False))
        kept = sorted((int(r["batch"]), int(r["imgsz"]), r["cache"]) for _, r in front(frame).iterrows())
        outcome[label] = {
            "wall_seconds": wall,
            "skipped": done.preflight_skipped,
            "statuses": frame["status"].value_counts().to_dict(),
            "front": kept,
        }
    outcome["saved_fraction"] = 1 - outcome["with"]["wall_seconds"] / outcome["without"]["wall_seconds"]
    outcome["front_kept"] = outcome["with"]["front"] == outcome["without"]["front"]
    return outcome


def render(results: dict[str, Any]) -> str:
    """The figures as a table."""
    lines = [f"command: {results['command']}"]
    for item in results["held_out"]:
        lines.append(
            f"held-out {item['knobs']}: predicted {item['predicted'] / GIB:.3f} GiB, "
            f"measured {item['measured'] / GIB:.3f} GiB, error {100 * item['error']:+.1f}%"
        )
    error = results["held_out_median_abs_error"]
    lines.append(
        f"held-out median |error| {100 * error:.1f}% (goal <= 10%: {'PASS' if error <= 0.1 else 'MISS'})"
    )
    for item in results["extrapolation"]:
        verdict = "PASS" if abs(item["error"]) <= 0.1 else "MISS"
        lines.append(
            f"extrapolation {SUBSET} -> {FULL_IMAGES} images {item['knobs']}: predicted "
            f"{item['predicted'] / GIB:.3f} GiB, measured {item['measured'] / GIB:.3f} GiB, "
            f"error {100 * item['error']:+.1f}% (goal <= 10%: {verdict})"
        )
    pre = results["preflight"]
    lines.append(
        f"pre-flight: limit {pre['limit_bytes'] / GIB:.2f} GiB; with {pre['with']['wall_seconds']:.1f} s "
        f"({pre['with']['skipped']} skipped), without {pre['without']['wall_seconds']:.1f} s: "
        f"{100 * pre['saved_fraction']:.0f}% saved; feasible front kept: {pre['front_kept']}"
    )
    lines.append(f"total {results['total_seconds']:.0f} s")
    return "\n".join(lines)


def main() -> int:
    """Runs the benchmark and writes its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "predict_bench.json")
    args = parser.parse_args()
    results = bench(args.out)
    print(render(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
