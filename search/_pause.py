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
import functools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = [
    "Follower",
    "clock",
    "follow_pauses",
    "followed",
    "install",
    "paused_seconds",
    "resumed_within",
    "set_parent_death_signal",
    "starting",
]

_paused_s = 0.0
_resumed_at: float | None = None
_followers: dict[int, Follower] = {}
_deferring = 0  # blocks in which a Ctrl-Z waits: starting a process to follow, or stopping
_stop_waiting = False  # a Ctrl-Z came during one
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


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

    A job's SIGTSTP is blocked from its start (:func:`starting`) until this handler is in place, then
    delivered. This process is continued if its parent dies while it is stopped (a job whose
    ``run --jobs`` was killed; a stopped process nobody continues would hold its trial's memory
    for good). Main thread only, as every signal handler.
    """
    if signal.getsignal(signal.SIGTSTP) is not signal.SIG_IGN:
        signal.signal(signal.SIGTSTP, _stop_together)
        set_parent_death_signal(signal.SIGCONT)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTSTP})


@contextlib.contextmanager
def starting(*, block_in_child: bool = False) -> Iterator[None]:
    """Around starting a process and following it: a Ctrl-Z meanwhile waits until it is followed.

    Args:
        block_in_child: Start the process with SIGTSTP blocked (a memfront job, whose
            :func:`install` unblocks it): in a session of its own, before its handler is in place,
            its SIGTSTP would be discarded.
    """
    global _deferring
    _deferring += 1
    mask = None
    if block_in_child and threading.current_thread() is threading.main_thread():
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTSTP})
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _deferring -= 1
        _raise_waiting_stop()


def resumed_within(seconds: float) -> bool:
    """Whether this process was continued after a Ctrl-Z less than ``seconds`` ago.

    The other jobs of a ``run --jobs`` were stopped as long: their heartbeats are as old as this
    one's, until each beats again.
    """
    return _resumed_at is not None and time.monotonic() - _resumed_at < seconds


def _raise_waiting_stop() -> None:
    global _stop_waiting
    if not _deferring and _stop_waiting:
        _stop_waiting = False
        signal.raise_signal(signal.SIGTSTP)


def _stop_together(signum: int, frame: FrameType | None) -> None:
    global _paused_s, _resumed_at, _stop_waiting, _deferring
    if _deferring:
        # A process being started and not followed yet, or this handler running already (a Ctrl-Z
        # as it ends, which a job may get from its `run --jobs`): stopped once that is done.
        _stop_waiting = True
        return
    _deferring += 1
    # Interrupts that come while stopped (the shell's `kill %1` is SIGTERM then SIGCONT) wait until
    # the followers are continued: raised inside this handler, they would leave them stopped.
    held: list[int] = []
    previous: dict[int, Any] = {}
    followers = list(_followers.values())
    stopped_at = time.monotonic()
    try:
        for held_signal in _HELD:
            if callable(signal.getsignal(held_signal)):
                previous[held_signal] = signal.signal(held_signal, lambda number, _: held.append(number))
        for follower in followers:
            follower.send(follower.stop_signal)
        # SIGSTOP, not SIGTSTP again: a job runs in a session of its own, whose process group the
        # kernel counts as orphaned, and an orphaned group discards a SIGTSTP left to its default action.
        os.kill(os.getpid(), signal.SIGSTOP)
    finally:
        _stop_waiting = False  # a Ctrl-Z before the stop: this stop was its
        pause_s = time.monotonic() - stopped_at
        _paused_s += pause_s
        _resumed_at = time.monotonic()
        for follower in followers:
            follower.resume(pause_s)
        for swapped, handler in previous.items():
            signal.signal(swapped, handler)
        _deferring -= 1
        if held:
            # One: the CLI reads each as Ctrl-C, and a second would break through a block that
            # holds the first (search.study._interrupts) as a user's second Ctrl-C does.
            signal.raise_signal(held[0])
        _raise_waiting_stop()


def follow_pauses(pause_file: str | Path) -> None:
    """In a trial's child: :func:`clock` leaves out the pauses the supervisor writes to ``pause_file``.

    The supervisor stops the child's group with SIGSTOP, which no handler sees; it writes the
    child's pauses so far before it sends SIGCONT, whose handler here reads them. A handler runs at
    the next Python call, so a :func:`clock` read after the continue has them already. The handler
    restarts the system calls it interrupts (torch's and the frameworks' C code need not retry
    them), and every process the child forks (its dataloader workers) is continued if the child
    dies while they are stopped: killed with a stopped memfront, it would leave them stopped for
    good (their check of their parent runs only while they run).
    """
    path = Path(pause_file)

    def read_pauses(signum: int, frame: FrameType | None) -> None:
        global _paused_s
        with contextlib.suppress(OSError, ValueError):
            _paused_s = float(path.read_text())

    signal.signal(signal.SIGCONT, read_pauses)
    signal.siginterrupt(signal.SIGCONT, False)
    _prctl()
    os.register_at_fork(after_in_child=lambda: set_parent_death_signal(signal.SIGCONT))


def set_parent_death_signal(signum: int) -> None:
    """Asks the kernel to send ``signum`` to this process when its parent (the thread that started
    it) ends (``PR_SET_PDEATHSIG``; Linux only)."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)


_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    # Looked up once, before any fork: a lookup in a forked child of a threaded process could wait
    # for ever on the dynamic loader's lock, held by a thread that did not follow it.
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return function
