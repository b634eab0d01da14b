"""What keeping the frameworks' label caches between trials saves a probe on a large dataset.

Usage::

    .venv/bin/python bench/label_cache_bench.py [--images 20000] [--pairs 3] [--json OUT.json]

It makes a dataset of ``--images`` training images (the demo's 64-pixel shapes, copied, each with its
label file; 16 validation images), then runs real yolov5 probes on all of it (cache none, no
workers, batch 32, imgsz 64; 8 training batches and one validation pass: a probe's work is bounded,
its start-up is not), in pairs side by side:

- **scan**: an empty memfront cache folder, so yolov5 verifies every image and label (what every
  trial and probe did before the caches were kept, :mod:`search.data._label_caches`);
- **kept**: the cache that probe left, which the next probe of the same image lists reads.

Each pair's two probes run one after the other on the same files, after one untimed probe that
brings the files into the page cache for both; the figures are each probe's start-up (until its
first training batch, from the record's phases) and wall time, and their ratios per pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from scan_bench import _make  # noqa: E402

from search.probe._run import ProbeBounds  # noqa: E402
from search.trial._config import TrialConfig  # noqa: E402
from search.trial._supervisor import run_trial  # noqa: E402


def _probe(data_yaml: Path) -> tuple[float, float]:
    config = TrialConfig(data=str(data_yaml), batch=32, imgsz=64, epochs=1, cache="none", workers=0)
    bounds = ProbeBounds(train_min_batches=8, train_max_batches=8, validation_passes=1)
    record = run_trial(config, probe=bounds.to_dict())
    assert record.status == "ok", record.error
    return float(record.phases["startup_s"]), float(record.wall_seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="memfront-label-cache-bench-") as temporary:
        folder = Path(temporary)
        data_yaml = _make(folder, args.images)
        # Once, untimed, with a cache folder of its own: the files in the page cache for both of
        # each pair (else the scanning probe, always first, would pay the disk for both).
        os.environ["MEMFRONT_CACHE_DIR"] = str(folder / "cache-warm-up")
        _probe(data_yaml)
        for pair in range(args.pairs):
            cache = folder / f"cache-{pair}"
            os.environ["MEMFRONT_CACHE_DIR"] = str(cache)  # empty: this pair's first probe scans
            scan_startup, scan_wall = _probe(data_yaml)
            kept_startup, kept_wall = _probe(data_yaml)
            rows.append(
                {"scan_startup_s": scan_startup, "scan_wall_s": scan_wall,
                 "kept_startup_s": kept_startup, "kept_wall_s": kept_wall}
            )  # fmt: skip
            print(
                f"pair {pair + 1}: start-up scan {scan_startup:.1f} s, kept {kept_startup:.1f} s "
                f"({kept_startup / scan_startup:.2f}); wall scan {scan_wall:.1f} s, kept {kept_wall:.1f} s "
                f"({kept_wall / scan_wall:.2f})"
            )
            shutil.rmtree(cache, ignore_errors=True)
    saved = [r["scan_startup_s"] - r["kept_startup_s"] for r in rows]
    ratios = [r["kept_wall_s"] / r["scan_wall_s"] for r in rows]
    per_image = statistics.median(saved) / args.images
    print(
        f"{args.images} images, {args.pairs} pairs: start-up {statistics.median(saved):.1f} s shorter "
        f"with the kept cache (median; {1000 * per_image:.2f} ms per image, {per_image * 431_000 / 60:.1f} "
        f"min at 431,000 images); wall kept/scan {statistics.median(ratios):.2f} "
        f"(range {min(ratios):.2f}-{max(ratios):.2f})"
    )
    if args.json is not None:
        args.json.write_text(json.dumps({"images": args.images, "pairs": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
