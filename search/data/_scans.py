"""Dataset scans kept between commands, read again only when a file they read changed.

``run`` (each worker), ``report``, ``plot``, ``export``, ``status`` and the notebook's
``load_study`` all need every image's size (:class:`search.model._predict.DatasetStats`), and
``run`` every label's classes (:mod:`search.data._labels`). Reading both took 7.83 s per 50,000
images here, page cache warm (``bench/scan_bench.py``): at the 431,000 images users train on, over
a minute before each command answers. A scan's result is kept in the cache folder
(:func:`search.model._calibration.cache_dir`, never the user's home) under a fingerprint of what it
read: each file's path, type, size, device and inode, modification time and status-change time
(``os.stat``; the cached read took 1.16 s for the same 50,000), so that a file added, removed,
rewritten, replaced or touched makes the next command read everything again (tools that restore a
file's modification time, ``cp -p``, ``rsync -a``, ``tar``, cannot restore its status-change time).
A cache that cannot be read or written is no error: the scan runs as if there were none.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal, TypeVar

__all__ = ["ScanCache", "cached_scan", "files_fingerprint"]

ScanCache = Literal["store", "read", "off"]
"""How a scan uses the cache: read it and store a new scan; only read it (commands that only read a
study write nothing); or neither (a temporary dataset)."""

_VERSION = 1
T = TypeVar("T")


def cached_scan(
    kind: str,
    *,
    dataset: Path,
    files: Iterable[str | Path],
    settings: Any,
    scan: Callable[[], T],
    encode: Callable[[T], Any],
    decode: Callable[[Any], T],
    store: bool = True,
) -> T:
    """``scan()``'s result, from the cache when no file of ``files`` changed since it was stored.

    Args:
        kind: What is scanned (one cache entry per kind and dataset: a newer scan replaces it).
        dataset: The dataset's yaml (which entry).
        files: Every file the scan reads, in a fixed order.
        settings: JSON-able inputs of the scan other than the files (a class count, files skipped).
        scan: Reads the files; its exceptions propagate and nothing is stored.
        encode: The result as JSON-able data; ``decode`` turns that back into the result.
        store: Store a new scan's result (False: only read the cache).
    """
    fingerprint = files_fingerprint(kind, files, settings)
    path = _entry(kind, dataset)
    if path is not None:
        # Whatever is there (another version's, damaged), a mismatch reads the files again.
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
            stored = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(stored, dict) and stored.get("fingerprint") == fingerprint:
                return decode(stored["value"])
    result = scan()
    if path is not None and store:
        from search.model._calibration import write_cache  # not at import: it imports this module

        entry = {"fingerprint": fingerprint, "dataset": str(dataset), "value": encode(result)}
        write_cache(path, json.dumps(entry, separators=(",", ":")))
    return result


def files_fingerprint(kind: str, files: Iterable[str | Path], settings: Any) -> str:
    """A digest of ``kind``, ``settings`` and each file's path, type, size, device and inode,
    modification and status-change times (what no edit of a file leaves as it was)."""
    digest = hashlib.sha256(json.dumps([_VERSION, kind, settings], sort_keys=True, default=str).encode())
    for file in files:
        try:
            info = os.stat(file)
            state = (
                f"{stat.S_IFMT(info.st_mode)} {info.st_size} {info.st_dev} {info.st_ino} "
                f"{info.st_mtime_ns} {info.st_ctime_ns}"
            )
        except OSError:
            state = "-"
        digest.update(f"{file}\0{state}\n".encode(errors="surrogateescape"))
    return digest.hexdigest()


def _entry(kind: str, dataset: Path) -> Path | None:
    from search.model._calibration import cache_dir  # not at import: it imports this module

    try:
        folder = cache_dir() / "scans"
    except OSError:
        return None
    name = hashlib.sha256(str(dataset.resolve()).encode(errors="surrogateescape")).hexdigest()[:20]
    return folder / f"{kind}-{name}.json"
