"""Reading process memory from Linux's ``/proc``: cheap figures, exact PSS, and the trial's tree.

Costs measured on a 2-core machine: ``/proc/PID/stat`` and ``/proc/PID/status`` a few microseconds a
process; ``/proc/PID/smaps_rollup`` (PSS) ~62 ms of CPU for a 1 GB yolov5 tree, growing with the
resident size, since the kernel walks every resident page.
"""

from __future__ import annotations

import dataclasses
import os

from search._pause import clock

__all__ = [
    "PAGE_SIZE",
    "ProcessTree",
    "Proportional",
    "Resident",
    "StallWatch",
    "group_alive",
    "last_pid",
    "parse_stat",
    "read_cpu_ticks",
    "read_pss",
    "read_pss_bytes",
    "read_resident",
    "read_stat",
    "read_statm",
    "read_vmhwm_bytes",
    "reset_own_vmhwm",
]

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)


def _stat_fields(data: bytes) -> list[bytes]:
    """A ``/proc/PID/stat`` line's fields after the command name (which may hold spaces and
    parentheses): the state first, then ``ppid``, ``pgrp``, ... as in proc(5) from field 3."""
    return data[data.rindex(b")") + 2 :].split()


def parse_stat(data: bytes) -> tuple[int, int, int, int]:
    """Returns (ppid, pgrp, minflt, rss_pages) from a ``/proc/PID/stat`` line."""
    fields = _stat_fields(data)
    return int(fields[1]), int(fields[2]), int(fields[7]), int(fields[21])


def read_cpu_ticks(pid: int) -> int | None:
    """User and system CPU time a process has used, in clock ticks (``/proc/PID/stat``); None if gone."""
    data = _read(f"/proc/{pid}/stat")
    if data is None:
        return None
    fields = _stat_fields(data)
    return int(fields[11]) + int(fields[12])


class StallWatch:
    """Whether a trial's processes have used less than a CPU-second together for a while: hung.

    The while is on :func:`search._pause.clock`: a trial stopped with memfront by Ctrl-Z is not hung.
    """

    def __init__(self) -> None:
        self._ticks: int | None = None
        self._active_at = clock()

    def stalled(self, pids: set[int], stall_s: float | None) -> bool:
        """Reads the processes' CPU time; whether it has not moved by a second for ``stall_s``."""
        ticks = sum(filter(None, (read_cpu_ticks(pid) for pid in pids)))
        # Any change counts as activity: a worker that ended takes its ticks out of the sum.
        if self._ticks is None or abs(ticks - self._ticks) >= _TICKS_PER_S:
            self._ticks, self._active_at = ticks, clock()
        return stall_s is not None and clock() - self._active_at > stall_s


@dataclasses.dataclass(frozen=True)
class Resident:
    """Resident memory of one process by kind, in bytes (``/proc/PID/status``)."""

    anon: int
    file: int
    shmem: int
    hwm: int

    @property
    def total(self) -> int:
        """RSS."""
        return self.anon + self.file + self.shmem

    @property
    def shared(self) -> int:
        """File-backed and shared-memory pages: those other processes may map too."""
        return self.file + self.shmem


def read_statm(pid: int) -> Resident | None:
    """The cheapest resident read (``/proc/PID/statm``): anon, and file + shmem together as ``file``.

    ``VmHWM`` is not in it (``hwm`` is 0); a zombie reads as None.
    """
    data = _read(f"/proc/{pid}/statm")
    if data is None:
        return None
    fields = data.split()
    resident, shared = int(fields[1]) * PAGE_SIZE, int(fields[2]) * PAGE_SIZE
    if resident == 0:
        return None
    return Resident(anon=resident - shared, file=shared, shmem=0, hwm=0)


def last_pid() -> int:
    """The most recently created process or thread ID (``/proc/loadavg``): a new one means a fork."""
    data = _read("/proc/loadavg")
    return int(data.split()[-1]) if data else -1


def _kib_fields(data: bytes, keys: tuple[bytes, ...]) -> dict[bytes, int]:
    """The ``Key:   N kB`` lines of a /proc file among ``keys``, in bytes."""
    prefixes = tuple(key + b":" for key in keys)
    values = {}
    for line in data.splitlines():
        if line.startswith(prefixes):
            key, value = line.split(b":", 1)
            values[key] = int(value.split()[0]) * 1024
    return values


def read_resident(pid: int) -> Resident | None:
    """Reads RssAnon, RssFile, RssShmem and VmHWM of a process; None if it is gone."""
    data = _read(f"/proc/{pid}/status")
    if data is None:
        return None
    values = _kib_fields(data, (b"RssAnon", b"RssFile", b"RssShmem", b"VmHWM"))
    if b"RssAnon" not in values:
        return None  # a zombie: no memory left
    return Resident(
        anon=values[b"RssAnon"],
        file=values.get(b"RssFile", 0),
        shmem=values.get(b"RssShmem", 0),
        hwm=values.get(b"VmHWM", 0),
    )


@dataclasses.dataclass(frozen=True)
class Proportional:
    """PSS of one process by kind, in bytes (``/proc/PID/smaps_rollup``)."""

    anon: int
    file: int
    shmem: int

    @property
    def total(self) -> int:
        """PSS."""
        return self.anon + self.file + self.shmem


def read_pss(pid: int) -> Proportional | None:
    """Reads the PSS of a process by kind from ``/proc/PID/smaps_rollup``; None if it is gone.

    This is the expensive read: the kernel walks every resident page of the process.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    values = _kib_fields(data, (b"Pss", b"Pss_Anon", b"Pss_File", b"Pss_Shmem"))
    if b"Pss" not in values:
        return None
    if b"Pss_Anon" not in values:  # kernels before 5.7 do not split PSS by kind
        return Proportional(anon=values[b"Pss"], file=0, shmem=0)
    return Proportional(
        anon=values[b"Pss_Anon"], file=values.get(b"Pss_File", 0), shmem=values.get(b"Pss_Shmem", 0)
    )


def read_pss_bytes(pid: int) -> int | None:
    """PSS of one process in bytes; None if it is gone."""
    pss = read_pss(pid)
    return None if pss is None else pss.total


def read_vmhwm_bytes(pid: int | str) -> int | None:
    """Reads the kernel's resident high-water mark (``VmHWM``) of one process, in bytes."""
    data = _read(f"/proc/{pid}/status")
    return None if data is None else _kib_fields(data, (b"VmHWM",)).get(b"VmHWM")


def reset_own_vmhwm() -> bool:
    """Lowers this process's ``VmHWM`` to its resident memory now; whether the kernel allowed it.

    Writing ``5`` to ``/proc/self/clear_refs`` (Linux 4.0+) resets the high-water mark of the whole
    process (its threads share it); no privilege is needed for one's own process. Nothing else of
    the process changes: what it reports as ``VmHWM`` afterwards is its peak since the reset.
    """
    try:
        fd = os.open("/proc/self/clear_refs", os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, b"5")
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class ProcessTree:
    """The processes of a trial: the root, its descendants, and its process group.

    Args:
        root_pid: The trial's main process; it leads its own process group.
    """

    def __init__(self, *, root_pid: int) -> None:
        self.root_pid = root_pid
        self.pids: set[int] = {root_pid}

    def scan(self) -> dict[int, tuple[int, int, int, int]]:
        """Scans ``/proc`` and returns {pid: (ppid, pgrp, minflt, rss_pages)} of the tree."""
        table: dict[int, tuple[int, int, int, int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            data = _read(f"/proc/{name}/stat")
            if data is not None:
                table[int(name)] = parse_stat(data)
        members = {pid for pid, row in table.items() if row[1] == self.root_pid}
        if self.root_pid in table:
            members.add(self.root_pid)
        # Descendants that left the group (setsid) are still the trial's: follow ppid links.
        grew = True
        while grew:
            grew = False
            for pid, row in table.items():
                if pid not in members and row[0] in members:
                    members.add(pid)
                    grew = True
        self.pids = members
        return {pid: table[pid] for pid in members}

    def read(self) -> dict[int, tuple[int, int, int, int]]:
        """Reads the known members' stat lines without rescanning ``/proc``."""
        rows = {}
        for pid in self.pids:
            data = _read(f"/proc/{pid}/stat")
            if data is not None:
                rows[pid] = parse_stat(data)
        return rows


def read_stat(pid: int) -> tuple[int, int, int, int] | None:
    """(ppid, pgrp, minflt, rss_pages) of a process; None if it is gone."""
    data = _read(f"/proc/{pid}/stat")
    return None if data is None else parse_stat(data)


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    alive = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        data = _read(f"/proc/{name}/stat")
        if data is None:
            continue
        fields = _stat_fields(data)
        if int(fields[2]) == pgid and fields[0] != b"Z":
            alive.append(int(name))
    return alive
