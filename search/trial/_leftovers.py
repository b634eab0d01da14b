"""What trials leave on the machine, and who removes it: folders of killed workers, disk caches.

A worker removes its trial's folders itself, in a ``finally``. A worker killed outright (``kill -9``,
a lost session) cannot: its trial child dies with it (``PR_SET_PDEATHSIG``), but the trial folder and
the child's temp folder stay. Their names carry the worker's pid, and the next trial started on the
machine removes those of dead workers that belong to the same user (:func:`remove_abandoned`), and
first kills what is left of their trials: processes the child did not fork (a subprocess, a
``spawn`` or ``forkserver`` worker) do not die with it, and if the worker was stopped by Ctrl-Z they
stay stopped for good, their memory held. They are told by the temp folder their ``TMPDIR`` names.

``cache=disk`` makes yolov5 write a ``.npy`` file beside each image, which memfront removes after the
trial unless the user keeps them. Several trials may use the same dataset at once (``--jobs``), so
the removal is shared (:class:`DiskCacheClaim`): each such trial registers a claim naming the
``.npy`` files that existed before the first of them started; only the last trial to finish removes
the others, and a claim left by a killed worker is settled by the next trial once no live trial
uses that dataset. Claims are made and settled under one lock (a trial starting while the last one
removes its files would otherwise count them as the user's, and keep them for good), in a folder
of the user's own.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = [
    "CHILD_TEMP_PREFIX",
    "TRIAL_PREFIX",
    "DiskCacheClaim",
    "owned_prefix",
    "remove_abandoned",
]

TRIAL_PREFIX = "memfront-trial-"
# Short on purpose: the child's multiprocessing puts AF_UNIX sockets in a folder inside this one,
# and their paths may not exceed 107 bytes. Being generic, it is judged only on a name exactly as
# ``tempfile.mkdtemp(prefix=owned_prefix(...))`` makes it (see _abandoned).
CHILD_TEMP_PREFIX = "mf-"
# What ``tempfile.mkdtemp`` appends to the prefix: 8 characters of ``[a-z0-9_]``.
_MKDTEMP_SUFFIX = r"[a-z0-9_]{8}"


def owned_prefix(prefix: str) -> str:
    """A folder-name prefix that names this process as the owner: ``<prefix><pid>-``."""
    return f"{prefix}{os.getpid()}-"


def _owner_alive(name: str, prefix: str) -> bool:
    owner = name[len(prefix) :].split("-", 1)[0]
    # Another naming: not ours to judge, so never removed.
    return not owner.isdigit() or Path(f"/proc/{owner}").exists()


def _abandoned(folder: Path, prefix: str) -> bool:
    """Whether ``folder`` is a trial folder of this user's that a dead worker left.

    Only a folder this user owns is judged by its pid: run as root, every user's trial folders are
    within reach, and a pid that looks dead may be another user's worker in a pid namespace this
    process cannot see. A link is never followed, and only a name exactly as a worker makes it
    (the prefix, its pid, mkdtemp's suffix) is judged, so that another program's folder with a
    similar name is left alone.
    """
    if not re.fullmatch(rf"{re.escape(prefix)}\d+-{_MKDTEMP_SUFFIX}", folder.name):
        return False
    try:
        status = folder.lstat()
    except OSError:
        return False
    return (
        stat.S_ISDIR(status.st_mode)
        and status.st_uid == os.getuid()
        and not _owner_alive(folder.name, prefix)
    )


def _claims_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"memfront-disk-cache-{os.getuid()}"


# Where memfront before 2026-12-07 kept the claims of every user: those its killed workers left are
# still settled (:func:`remove_abandoned`), and no new claim goes there.
_LEGACY_CLAIMS = "memfront-disk-cache"


@contextlib.contextmanager
def _claims_locked() -> Iterator[Path]:
    """The claims folder, held by this process alone while in the block.

    Raises:
        OSError: If a folder of that name is not this user's own (another user made it in the
            shared temp folder, or it is a link): its claims could not be trusted.
    """
    folder = _claims_dir()
    folder.mkdir(mode=0o700, exist_ok=True)
    status = folder.lstat()
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.getuid() or status.st_mode & 0o022:
        raise OSError(f"{folder} is not a folder of this user's own: remove it")
    descriptor = os.open(folder / "lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield folder


class DiskCacheClaim:
    """A ``cache=disk`` trial's share in removing the ``.npy`` files beside a dataset's images.

    Args:
        data: The dataset's data yaml (claims on the same file share the removal).
        images: Every image of the dataset.
    """

    def __init__(self, data: str, images: Iterable[Path]) -> None:
        self._data = str(Path(data).resolve())
        self._images = list(images)
        with _claims_locked() as folder:
            live = [c for c in _claims(self._data) if c.alive]
            # The baseline is what existed before the first live trial on this dataset started: what
            # that trial wrote is not the user's, even if it was there when this one started.
            baseline = live[0].baseline if live else {str(p) for p in _npy_files(self._images)}
            self._path = folder / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
            self._path.write_text(json.dumps({"data": self._data, "existing": sorted(baseline)}))
        self._baseline = baseline

    def release(self, *, keep: bool) -> None:
        """Ends the claim; the last live claim on the dataset removes the ``.npy`` files trials wrote."""
        with _claims_locked():
            with contextlib.suppress(OSError):
                self._path.unlink()
            if keep or any(c.alive for c in _claims(self._data)):
                return
            _remove_new(self._images, self._baseline)


def _npy_files(images: Iterable[Path]) -> set[Path]:
    from search.data._dataset import snapshot_cache_files

    return snapshot_cache_files(images)


def _remove_new(images: Iterable[Path], baseline: set[str]) -> None:
    for npy in _npy_files(images):
        if str(npy) not in baseline:
            with contextlib.suppress(OSError):
                npy.unlink()


@dataclasses.dataclass(frozen=True)
class _Claim:
    path: Path
    data: str
    baseline: set[str]
    alive: bool


def _claims(data: str | None = None) -> list[_Claim]:
    """Every claim on the machine, oldest first; only those on ``data`` if given."""
    found = []
    folders = (_claims_dir(), Path(tempfile.gettempdir()) / _LEGACY_CLAIMS)
    with contextlib.suppress(OSError):
        paths = [path for folder in folders for path in folder.glob("*.json")]
        for path in sorted(paths, key=lambda p: p.stat().st_mtime):
            try:
                payload = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if data is None or payload.get("data") == data:
                alive = _owner_alive(path.name, "")
                found.append(_Claim(path, str(payload.get("data")), set(payload.get("existing", [])), alive))
    return found


def remove_abandoned(workdir: Path | None = None) -> list[Path]:
    """Removes the trial folders, child temp folders and disk caches of dead workers; returns them.

    Only folders this user owns are removed (see :func:`_abandoned`): run as root, the others in a
    shared temp folder are other users' trials, live ones included.
    """
    removed: list[Path] = []
    temp = Path(tempfile.gettempdir())
    for place, prefix in ((temp, CHILD_TEMP_PREFIX), (workdir or temp, TRIAL_PREFIX)):
        with contextlib.suppress(OSError):
            removed += [folder for folder in place.glob(f"{prefix}*") if _abandoned(folder, prefix)]
    # What their trials left running goes first: it may still be writing into them.
    _kill_processes_of([folder for folder in removed if folder.name.startswith(CHILD_TEMP_PREFIX)])
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    if not any(not claim.alive for claim in _claims()):
        return removed
    with _claims_locked():
        for claim in _claims():
            if claim.alive:
                continue
            with contextlib.suppress(OSError):
                claim.path.unlink()
            removed.append(claim.path)
            if any(c.alive for c in _claims(claim.data)):
                continue  # a live trial uses the dataset: the last of them removes the files
            from search.data._dataset import load_dataset
            from search.errors import InputError

            try:
                dataset = load_dataset(claim.data)
            except InputError:
                continue  # the dataset moved: nothing can be told apart safely
            _remove_new(dataset.all_images, claim.baseline)
    return removed


def _kill_processes_of(child_temps: list[Path]) -> None:
    """Kills this user's processes whose ``TMPDIR`` is one of dead workers' child temp folders: their
    trials', in one pass over /proc.

    Only in this process's pid namespace: one that sees another's processes (a host with its
    containers, sharing /tmp) judges their workers dead by a pid it cannot see.
    """
    if not child_temps:
        return
    markers = {b"TMPDIR=" + os.fsencode(folder) for folder in child_temps}
    try:
        names, own_namespace = os.listdir("/proc"), os.readlink("/proc/self/ns/pid")
    except OSError:
        return
    for name in names:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{name}").st_uid != os.getuid():
                continue
            if os.readlink(f"/proc/{name}/ns/pid") != own_namespace:
                continue
            if markers.intersection(Path(f"/proc/{name}/environ").read_bytes().split(b"\0")):
                os.kill(int(name), signal.SIGKILL)
