"""The frameworks' own label caches, kept between trials of the same image lists.

Before its first epoch, a framework verifies every image and label it trains and validates on
(yolov5's and ultralytics' ``verify_image_label``: each image opened and checked, each label read)
and saves what it found as a ``.cache`` file, which a later training of the same files reads
instead. A trial writes it into its own folder (yolov5 beside the trial's image list, ultralytics
where :func:`search.child.ultralytics_compat.redirect_label_caches` sends it), which is removed
with the trial, so every trial and probe verified everything again: yolov5 scanned about 2,000
images a second here, over 3.5 minutes per whole-dataset probe at the 431,000 images users train
on, against 0.14 s per 5,000 from its cache. So the files are kept, as opaque bytes, in memfront's
cache folder under a digest of the trial's image lists and the framework's version, and put back
into the next trial's folder with the same lists. The framework checks a cache itself (its
version, and a hash of the files' paths and sizes) and verifies again where it does not match: a
kept cache can make a trial faster, never wrong. At most :data:`MAX_KEPT_BYTES` are kept, the least
recently used removed first.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["MAX_KEPT_BYTES", "keep_label_caches", "label_cache_key", "restore_label_caches"]

MAX_KEPT_BYTES = 2 * 1024**3
"""The most bytes of label caches kept (a yolov5 cache of 431,000 images is on the order of 100 MB)."""


def label_cache_key(folder: Path, lists: Sequence[str], version: str) -> str:
    """What a trial's label caches depend on: the content of its image lists (``lists``, files in
    ``folder``) and the framework's ``version``."""
    digest = hashlib.sha256(version.encode())
    for name in lists:
        with contextlib.suppress(OSError):
            digest.update(name.encode() + b"\0" + (folder / name).read_bytes())
    return digest.hexdigest()[:32]


def restore_label_caches(folder: Path, key: str) -> int:
    """Puts the label caches kept under ``key`` into the trial's ``folder``; returns how many."""
    place = _place()
    kept = None if place is None else place / key
    if kept is None or not kept.is_dir():
        return 0
    restored = 0
    for source in kept.rglob("*.cache"):
        target = folder / source.relative_to(kept)
        with contextlib.suppress(OSError):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            restored += 1
    with contextlib.suppress(OSError):
        os.utime(kept)  # recently used: pruned last
    return restored


def keep_label_caches(folder: Path, key: str, patterns: Sequence[str]) -> bool:
    """Keeps the label caches the trial's ``folder`` holds (``patterns``: globs relative to it)
    under ``key``, unless kept already; returns whether it kept any. Never raises."""
    place = _place()
    found = [path for pattern in patterns for path in folder.glob(pattern) if path.is_file()]
    if place is None or not found or (place / key).is_dir():
        return False
    try:
        place.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=place, prefix=f".{key}."))
    except OSError:
        return False
    try:
        for path in found:
            target = staging / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
        # Whole or not at all: another worker keeping the same lists at once loses the rename.
        os.rename(staging, place / key)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return False
    _prune(place)
    return True


def _place() -> Path | None:
    from search.model._calibration import cache_dir

    try:
        return cache_dir() / "label-caches"
    except OSError:
        return None


def _prune(place: Path) -> None:
    """Removes the least recently used kept caches beyond :data:`MAX_KEPT_BYTES`, and copies left
    half done."""
    entries = []
    for entry in place.iterdir():
        if entry.name.startswith("."):
            # A copy whose process died before its rename: no copy takes an hour.
            with contextlib.suppress(OSError):
                if time.time() - entry.stat().st_mtime > 3600:
                    shutil.rmtree(entry, ignore_errors=True)
            continue
        if not entry.is_dir():
            continue
        with contextlib.suppress(OSError):
            size = sum(path.stat().st_size for path in entry.rglob("*") if path.is_file())
            entries.append((entry.stat().st_mtime, size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda item: item[0]):
        if total <= MAX_KEPT_BYTES:
            break
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
