"""What a command spends reading a large dataset before it answers: a fresh scan against a cached one.

Usage::

    .venv/bin/python bench/scan_bench.py [--images 50000] [--repeats 3] [--json OUT.json]

It makes a dataset of ``--images`` training images (the demo's 64-pixel shapes, copied, each with its
label file; 16 validation images) in a temporary folder, then times, in one run and alternately,
what ``run``, ``report``, ``plot``, ``export`` and ``load_study`` read of it
(:mod:`search.data._scans`):

- **fresh**: every image's header (``DatasetStats.read``) and every label file
  (``label_class_check``) read, with an empty cache folder;
- **cached**: the same calls with the cache those left: one ``os.stat`` per file for the
  fingerprint, then the stored result.

Listing the images (``load_dataset``) is timed apart: both pay it. It is timed against the listing
it replaced too (``Path.rglob`` and a sort of Paths; the same list). Each figure is the median of
``--repeats`` rounds; the page cache is warm in both after the first round (a cold disk makes the
fresh scan slower still).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from search.data._dataset import IMAGE_SUFFIXES, load_dataset  # noqa: E402
from search.data._demo import make_demo_dataset  # noqa: E402
from search.data._labels import label_class_check  # noqa: E402
from search.model._predict import DatasetStats  # noqa: E402


def _make(folder: Path, images: int) -> Path:
    source = folder / "source"
    make_demo_dataset(source, images=16, val_images=16, size=64, seed=0)
    train, labels = folder / "data" / "images" / "train", folder / "data" / "labels" / "train"
    train.mkdir(parents=True)
    labels.mkdir(parents=True)
    pictures = sorted((source / "images" / "train").iterdir())
    texts = sorted((source / "labels" / "train").iterdir())
    for index in range(images):
        shutil.copyfile(pictures[index % 16], train / f"{index:07d}.jpg")
        shutil.copyfile(texts[index % 16], labels / f"{index:07d}.txt")
    data_yaml = folder / "data" / "data.yaml"
    data_yaml.write_text(
        f"path: {folder / 'data'}\ntrain: images/train\nval: {source / 'images' / 'val'}\n"
        "names:\n  0: circle\n  1: square\n  2: triangle\n"
    )
    return data_yaml


def _rglob_listing(data_yaml: Path) -> float:
    """The listing before os.walk: Path.rglob and a sort of Paths (of the training images)."""
    started = time.perf_counter()
    folder = data_yaml.parent / "images" / "train"
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    seconds = time.perf_counter() - started
    assert found == list(load_dataset(data_yaml).train_images)
    return seconds


def _scan(data_yaml: Path) -> tuple[float, float, float]:
    started = time.perf_counter()
    dataset = load_dataset(data_yaml)
    listed = time.perf_counter()
    stats = DatasetStats.read(dataset)
    label_class_check(dataset, skip=stats.unreadable_images)
    return listed - started, time.perf_counter() - listed, float(len(stats.train_sizes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="memfront-scan-bench-") as temporary:
        folder = Path(temporary)
        started = time.perf_counter()
        data_yaml = _make(folder, args.images)
        print(f"dataset: {args.images} training images made in {time.perf_counter() - started:.1f} s")
        listing: list[float] = []
        rglob: list[float] = []
        fresh: list[float] = []
        cached: list[float] = []
        for round_ in range(args.repeats):
            cache = folder / f"cache-{round_}"
            os.environ["MEMFRONT_CACHE_DIR"] = str(cache)  # empty: a fresh scan, which fills it
            listed, seconds, count = _scan(data_yaml)
            assert count == args.images
            listing.append(listed)
            fresh.append(seconds)
            listed, seconds, count = _scan(data_yaml)  # the same folder: from the cache
            listing.append(listed)
            cached.append(seconds)
            rglob.append(_rglob_listing(data_yaml))
            print(f"round {round_ + 1}: fresh {fresh[-1]:.2f} s, cached {cached[-1]:.2f} s")
        result: dict[str, Any] = {
            "images": args.images,
            "repeats": args.repeats,
            "listing_seconds": statistics.median(listing),
            "rglob_listing_seconds": statistics.median(rglob),
            "fresh_seconds": statistics.median(fresh),
            "cached_seconds": statistics.median(cached),
            "fresh_runs": fresh,
            "cached_runs": cached,
        }
    ratio = result["cached_seconds"] / result["fresh_seconds"]
    per = 431_000 / args.images
    print(
        f"sizes and labels of {args.images} images: fresh {result['fresh_seconds']:.2f} s, cached "
        f"{result['cached_seconds']:.2f} s (median of {args.repeats}): cached/fresh {ratio:.3f}; "
        f"listing the images {result['listing_seconds']:.2f} s either way"
    )
    print(
        f"listing: load_dataset {result['listing_seconds']:.2f} s against Path.rglob and a sort of "
        f"Paths {result['rglob_listing_seconds']:.2f} s (training images only): "
        f"{result['listing_seconds'] / result['rglob_listing_seconds']:.2f}"
    )
    print(
        f"scaled to 431,000 images: fresh {result['fresh_seconds'] * per:.0f} s, cached "
        f"{result['cached_seconds'] * per:.0f} s, listing {result['listing_seconds'] * per:.0f} s"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
