"""The trial's child process group: started, waited for and killed.

:mod:`search.trial._supervisor` starts the child in a session of its own, so that the child and its
dataloader workers form one process group; this module holds the three process-level steps it
takes on that group, each with the kernel behaviour it works around.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from typing import Any

from search.measure._procfs import read_vmhwm_bytes, reset_own_vmhwm

__all__ = ["ExitWatch", "kill_tree", "spawn"]

_FALLBACK_POLL_S = 0.1
# A trial started from another thread between a child's start and the read of the mark after it
# (see spawn) could reset the mark below what that child carried off.
_SPAWN_LOCK = threading.Lock()


class ExitWatch:
    """Waits for a child's exit without polling: on a pidfd where the kernel has them (Linux 5.3+)."""

    def __init__(self, pid: int) -> None:
        self._poll: select.poll | None = None
        self._fd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self._fd = os.pidfd_open(pid)
            self._poll = select.poll()
            self._poll.register(self._fd, select.POLLIN)

    def wait(self, timeout_s: float | None) -> None:
        """Returns when the child has exited, or after ``timeout_s`` (None: no limit)."""
        if self._poll is None:
            time.sleep(_FALLBACK_POLL_S if timeout_s is None else min(timeout_s, _FALLBACK_POLL_S))
            return
        self._poll.poll(None if timeout_s is None else max(1, int(timeout_s * 1000)))

    def close(self) -> None:
        """Releases the pidfd."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = self._poll = None


def spawn(command: list[str], **options: Any) -> tuple[subprocess.Popen[bytes], int | None]:
    """Starts ``command`` with ``subprocess.Popen(**options)``; returns it and this process's VmHWM.

    ``subprocess`` starts a child with vfork where it can, and at its exec Linux keeps the
    high-water mark of this process's memory (VmHWM, not its resident size) in the child's
    ``ru_maxrss``: a notebook that once held 2.5 GB gave every trial 2.5 GB there. The mark is
    lowered to the resident size first (this process's own VmHWM then reads its peak since the last
    trial started); where the kernel refuses, the mark read after the start is the old one, and
    :func:`search.trial._outcome.apply_kernel_floor` leaves out a ``ru_maxrss`` not above it.
    """
    with _SPAWN_LOCK:
        reset_own_vmhwm()
        child: subprocess.Popen[bytes] = subprocess.Popen(command, **options)
        # Read after the child's exec (Popen returns only then): the mark it carried off, or above.
        return child, read_vmhwm_bytes(os.getpid())


def kill_tree(pgid: int, pids: set[int]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    # Descendants that left the group (setsid) are still the trial's.
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
