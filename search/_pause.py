"""Ctrl-Z: memfront and the processes it started stop together, and their clocks leave the pause out.

A trial runs in a session of its own (so that the terminal's Ctrl-C reaches memfront only, which
stops the trial cleanly), and so do the jobs of ``run --jobs``. The terminal's SIGTSTP therefore
stops memfront alone: its trial would run on with nobody enforcing its memory limit, and on ``fg``
its time limit, the hang watch and the study's timeout would count the pause as work.

The CLI installs :func:`install`: on SIGTSTP memfront stops every process group it follows (a
trial's, with SIGSTOP, which no process can ignore, its dataloader workers included), passes
SIGTSTP on to its jobs (each stops its own trial), stops itself, and on SIGCONT continues them all.
:func:`clock` is :func:`time.monotonic` less the seconds spent stopped so: the time limit, the hang
watch and the study's clocks read it. A trial's child learns of its own pauses from a file the
supervisor writes before continuing it (:func:`follow_pauses`), so that its epoch and batch times
leave the pause out too.

Stdlib only: the trial's child imports it as well.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

__all__ = ["Follower", "clock", "follow_pauses", "followed", "install", "paused_seconds"]

_paused_s = 0.0
_followers: dict[int, Follower] = {}


@dataclasses.dataclass
class Follower:
    """A process (or process group) that stops and continues with this one.

    Attributes:
        pid: The process, or the process group's id.
        group: Whether ``pid`` names a process group (a trial's) rather than one process (a job).
        stop_signal: SIGSTOP for a trial's group; SIGTSTP for a memfront job, which then stops its
            own trial before itself.
        pause_file: Where the follower reads its pauses so far, in seconds (a trial's child); the
            file is written before each continue.
        paused_s: Seconds it spent stopped with this process.
    """

    pid: int
    group: bool
    stop_signal: int
    pause_file: Path | None = None
    paused_s: float = 0.0
    _pidfd: int | None = dataclasses.field(default=None, repr=False)

    def __post_init__(self) -> None:
        # A job reaped before it is unfollowed leaves its PID free for a stranger; a pidfd names
        # the process itself. A trial's group is unfollowed as soon as its leader is reaped, and
        # its number names no other group until a new process takes that PID and leads a group.
        if not self.group:
            with contextlib.suppress(AttributeError, OSError):
                self._pidfd = os.pidfd_open(self.pid)

    def send(self, signum: int) -> None:
        """Sends ``signum`` to the process or its group; one that is gone is no error."""
        with contextlib.suppress(OSError):  # gone, or not ours any more
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, signum)
            else:
                (os.killpg if self.group else os.kill)(self.pid, signum)

    def close(self) -> None:
        """Releases its pidfd."""
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None

    def resume(self, pause_s: float) -> None:
        """Counts a pause of ``pause_s``, tells its child (through its file), and continues it."""
        self.paused_s += pause_s
        if self.pause_file is not None:
            with contextlib.suppress(OSError):  # a trial cleaned up meanwhile
                partial = self.pause_file.with_suffix(".partial")
                partial.write_text(f"{self.paused_s}\n")
                os.replace(partial, self.pause_file)
        self.send(signal.SIGCONT)


def clock() -> float:
    """Seconds on :func:`time.monotonic`, less those this process spent stopped by Ctrl-Z."""
    return time.monotonic() - _paused_s


def paused_seconds() -> float:
    """Seconds this process has spent stopped by Ctrl-Z so far."""
    return _paused_s


@contextlib.contextmanager
def followed(
    pid: int, *, group: bool, stop_signal: int = signal.SIGSTOP, pause_file: Path | None = None
) -> Iterator[Follower]:
    """Makes ``pid`` stop and continue with this process while the block runs."""
    follower = Follower(pid=pid, group=group, stop_signal=stop_signal, pause_file=pause_file)
    _followers[id(follower)] = follower
    try:
        yield follower
    finally:
        _followers.pop(id(follower), None)
        follower.close()


def install() -> None:
    """Stops the followed processes with this one on SIGTSTP (Ctrl-Z), unless SIGTSTP is ignored.

    Main thread only, as every signal handler.
    """
    if signal.getsignal(signal.SIGTSTP) is not signal.SIG_IGN:
        signal.signal(signal.SIGTSTP, _stop_together)


def _stop_together(signum: int, frame: FrameType | None) -> None:
    global _paused_s
    followers = list(_followers.values())
    for follower in followers:
        follower.send(follower.stop_signal)
    stopped_at = time.monotonic()
    # SIGSTOP, not SIGTSTP again: a job runs in a session of its own, whose process group the kernel
    # counts as orphaned, and an orphaned group discards a SIGTSTP left to its default action.
    os.kill(os.getpid(), signal.SIGSTOP)
    pause_s = time.monotonic() - stopped_at
    _paused_s += pause_s
    for follower in followers:
        follower.resume(pause_s)


def follow_pauses(pause_file: str | Path) -> None:
    """In a trial's child: :func:`clock` leaves out the pauses the supervisor writes to ``pause_file``.

    The supervisor stops the child's group with SIGSTOP, which no handler sees; it writes the
    child's pauses so far before it sends SIGCONT, whose handler here reads them. A handler runs at
    the next Python call, so a :func:`clock` read after the continue has them already.
    """
    path = Path(pause_file)

    def read_pauses(signum: int, frame: FrameType | None) -> None:
        global _paused_s
        with contextlib.suppress(OSError, ValueError):
            _paused_s = float(path.read_text())

    signal.signal(signal.SIGCONT, read_pauses)
