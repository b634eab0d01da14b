"""The kernel's own per-trial accounting: a memory cgroup for each trial, where this process may make one.

A trial's processes are moved into a cgroup of their own, a child of this process's memory cgroup,
and its peak is read when the trial ends: ``memory.peak`` on cgroup v2, ``memory.max_usage_in_bytes``
on cgroup v1. The kernel charges page cache (the dataset files read, the ``.npy`` files written) to the
cgroup too, so this is not the PSS figure memfront reports; it is recorded beside it for comparison.
Where no memory cgroup is writable (an unprivileged user on a v1 host, a v2 host whose parent group
does not delegate the memory controller) the record says why, and nothing else changes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from pathlib import Path
from typing import Any

__all__ = ["TrialCgroup", "cgroup_figures", "locate_memory_cgroup", "memory_cgroup_root"]

_PREFIX = "memfront-"


def memory_cgroup_root() -> tuple[Path, int] | tuple[None, str]:
    """This process's memory cgroup folder and its version (2 or 1), or (None, why not)."""
    try:
        cgroups = Path("/proc/self/cgroup").read_text()
        mountinfo = Path("/proc/self/mountinfo").read_text()
    except OSError as error:
        return None, f"cannot read /proc/self/cgroup: {error.strerror}"
    return locate_memory_cgroup(cgroups, mountinfo)


def locate_memory_cgroup(cgroups: str, mountinfo: str) -> tuple[Path, int] | tuple[None, str]:
    """Finds the memory cgroup named in ``/proc/PID/cgroup`` text under its mount in ``mountinfo`` text.

    cgroup v2 (the ``0::/path`` line) counts only where its folder lists the memory controller in
    ``cgroup.controllers``; otherwise a v1 hierarchy with the memory controller is used.
    """
    v1_mount = v2_mount = None
    for mount in mountinfo.splitlines():
        fields = mount.split(" - ")
        if len(fields) != 2:
            continue
        point, kind = fields[0].split()[4], fields[1].split()
        if kind[0] == "cgroup2":
            v2_mount = Path(point)
        elif kind[0] == "cgroup" and "memory" in kind[-1].split(","):
            v1_mount = Path(point)
    for line in cgroups.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if hierarchy == "0" and v2_mount is not None:
            folder = v2_mount / path.lstrip("/")
            if "memory" in _read(folder / "cgroup.controllers").split():
                return folder, 2
        elif "memory" in controllers.split(",") and v1_mount is not None:
            return v1_mount / path.lstrip("/"), 1
    return None, "no memory cgroup controller for this process (cgroup v2 without memory, and no v1 memory)"


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@dataclasses.dataclass
class TrialCgroup:
    """A trial's memory cgroup: :meth:`create`, :meth:`add` the child, :meth:`peak_bytes`, :meth:`remove`."""

    path: Path
    version: int

    @classmethod
    def create(cls, name: str) -> TrialCgroup | str:
        """Makes a child memory cgroup of this process's own; returns why not if it cannot."""
        root, version = memory_cgroup_root()
        if root is None:
            return str(version)
        _remove_abandoned(root)
        path = root / f"{_PREFIX}{os.getpid()}-{name}"
        try:
            path.mkdir()
        except OSError as error:
            return f"cannot create a cgroup in {root}: {error.strerror}"
        group = cls(path=path, version=int(version))
        if not group._peak_file().is_file():
            group.remove()
            return f"{root} does not give its child cgroups the memory controller"
        return group

    def _peak_file(self) -> Path:
        return self.path / ("memory.peak" if self.version == 2 else "memory.max_usage_in_bytes")

    def add(self, pid: int) -> bool:
        """Moves ``pid`` into the cgroup (the processes it starts later follow); False if it could not."""
        try:
            (self.path / "cgroup.procs").write_text(str(pid))
        except OSError:
            return False
        return True

    def kill_all(self) -> None:
        """SIGKILLs every process still in the cgroup: a descendant that left the trial's process
        group and outlived its parent (``setsid``, then orphaned) is found here when nowhere else."""
        for line in _read(self.path / "cgroup.procs").split():
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                os.kill(int(line), signal.SIGKILL)

    def peak_bytes(self) -> int | None:
        """The kernel's peak charge of the cgroup (page cache included)."""
        text = _read(self._peak_file()).strip()
        return int(text) if text.isdigit() else None

    def remove(self) -> None:
        """Removes the cgroup once its processes are gone (retries briefly while they exit)."""
        deadline = time.monotonic() + 5
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.05)


def _remove_abandoned(root: Path) -> None:
    """Removes empty trial cgroups whose worker died before it could (``kill -9``)."""
    with contextlib.suppress(OSError):
        for folder in root.glob(f"{_PREFIX}*"):
            owner = folder.name[len(_PREFIX) :].split("-", 1)[0]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                with contextlib.suppress(OSError):
                    folder.rmdir()


def cgroup_figures(cgroup: TrialCgroup | str, *, joined: bool) -> dict[str, Any]:
    """The kernel's per-trial peak, where it could account the trial; then the cgroup is removed."""
    if isinstance(cgroup, str):
        return {"available": False, "reason": cgroup}
    try:
        if not joined:
            return {"available": False, "reason": f"could not move the trial into {cgroup.path}"}
        return {
            "available": True,
            "version": cgroup.version,
            "peak_bytes": cgroup.peak_bytes(),
            "note": "the kernel's charge: page cache included, so not the PSS figure",
        }
    finally:
        cgroup.remove()
