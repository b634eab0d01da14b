"""The frameworks' own label caches, kept between trials of the same images.

Before its first epoch, a framework verifies every image and label it trains and validates on
(yolov5's and ultralytics' ``verify_image_label``: each image opened and checked, each label read)
and saves what it found as a ``.cache`` file, which a later training of the same files reads
instead. A trial writes it into its own folder (yolov5 beside the trial's image list, ultralytics
where :func:`search.child.ultralytics_compat.redirect_label_caches` sends it), which is removed
with the trial, so every trial and probe verified everything again: about 2,700 images a second
with yolov5 in one process here (a probe of 20,000 started 7.4 s sooner from the cache,
``bench/label_cache_bench.py``), 2.7 minutes per trial at the 431,000 images users train on. So the
files are kept, as opaque bytes, in memfront's cache folder and put back into the next trial's
folder of the same images.

They are kept under a key of everything their content depends on: the trial's image lists, each
image's and label file's path, type, size, inode and times (:func:`search.data._scans.files_fingerprint`),
the framework's version and Pillow's (which judges the images). The frameworks' own check of a
cache is not enough: yolov5 7.0.14 compares the paths and the *sum* of the files' sizes, so a label
edited to another class of the same width would train on the old labels. With the key, a kept cache
can make a trial faster, never wrong (the bench's kept probes include stat-ing their 40,000 images
and labels). A cache the framework rewrote (it found the kept one damaged, or a trial died before it
wrote all of them) replaces the kept one. At most :data:`MAX_KEPT_BYTES` are kept, the least
recently used removed first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from search.data._dataset import label_file
from search.data._scans import files_fingerprint

__all__ = ["MAX_KEPT_BYTES", "keep_label_caches", "label_cache_key", "restore_label_caches"]

MAX_KEPT_BYTES = 2 * 1024**3
"""The most bytes of label caches kept: yolov5's for the demo's 2,400 training images took 411 kB in
its first command (about 170 bytes an image: some 74 MB at 431,000)."""

Restored = dict[str, tuple[int, int]]
"""The files a restore put into a trial's folder: relative path -> (size, modification time in ns)."""


def label_cache_key(folder: Path, lists: Sequence[str], version: str) -> str:
    """What a trial's label caches depend on: its image lists (``lists``, files in ``folder``),
    their images and label files as they are now, the framework's ``version`` and Pillow's."""
    import PIL

    images: list[str] = []
    for name in lists:
        with contextlib.suppress(OSError):
            images.extend(line for line in (folder / name).read_text().splitlines() if line)
    files = [path for image in images for path in (image, label_file(image))]
    return files_fingerprint("label-caches", files, [list(lists), version, PIL.__version__])[:32]


def restore_label_caches(folder: Path, key: str) -> Restored:
    """Puts the label caches kept under ``key`` into the trial's ``folder``; returns what it put."""
    place = _place()
    restored: Restored = {}
    if place is None:
        return restored
    kept = place / key
    sources: list[Path] = []
    with contextlib.suppress(OSError):  # another worker may be pruning it
        sources = list(kept.rglob("*.cache")) if kept.is_dir() else []
    for source in sources:
        relative = source.relative_to(kept)
        target = folder / relative
        with contextlib.suppress(OSError):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            info = target.stat()
            restored[str(relative)] = (info.st_size, info.st_mtime_ns)
    if restored:
        with contextlib.suppress(OSError):
            os.utime(kept)  # recently used: pruned last
    return restored


def keep_label_caches(
    folder: Path, key: str, patterns: Sequence[str], restored: Restored | None = None
) -> int:
    """Keeps the label caches in the trial's ``folder`` (``patterns``: globs relative to it) under
    ``key``: those the framework wrote, not the ones ``restored`` put there as they were. Returns
    how many it kept; never raises."""
    place = _place()
    if place is None:
        return 0
    kept = 0
    with contextlib.suppress(OSError):
        written = []
        for pattern in patterns:
            for path in folder.glob(pattern):
                relative = str(path.relative_to(folder))
                info = path.stat()
                if path.is_file() and (restored or {}).get(relative) != (info.st_size, info.st_mtime_ns):
                    written.append(path)
        if not written:
            return 0
        (place / key).mkdir(parents=True, exist_ok=True)
        for path in written:
            target = place / key / path.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Whole or not at all: a copy, then a rename over the kept file (two workers keeping
            # the same file at once each rename a whole one).
            handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            os.close(handle)
            try:
                shutil.copyfile(path, temporary)
                os.replace(temporary, target)
                kept += 1
            finally:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
    with contextlib.suppress(OSError):
        _prune(place)
    return kept


def _place() -> Path | None:
    from search.model._calibration import cache_dir

    try:
        return cache_dir() / "label-caches"
    except OSError:
        return None


def _prune(place: Path) -> None:
    """Removes the least recently used kept caches beyond :data:`MAX_KEPT_BYTES`, and copies left
    half done by a process that died (no copy takes an hour)."""
    entries = []
    for entry in place.iterdir():
        if not entry.is_dir():
            continue
        with contextlib.suppress(OSError):
            size = 0
            for path in entry.rglob("*"):
                if path.name.startswith(".") and time.time() - path.stat().st_mtime > 3600:
                    path.unlink()
                elif path.is_file():
                    size += path.stat().st_size
            entries.append((entry.stat().st_mtime, size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries, key=lambda item: item[0]):
        if total <= MAX_KEPT_BYTES:
            break
        shutil.rmtree(entry, ignore_errors=True)
        total -= size
