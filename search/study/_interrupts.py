"""Storage writes that a Ctrl-C must not cut in two.

The CLI turns SIGINT, SIGTERM and SIGHUP into ``KeyboardInterrupt``. One that lands between Optuna's
``ask`` and the proposal's writes, or within a tell, would leave a trial RUNNING with no worker to
finish it: the next run would wait out the heartbeat grace period to fail it, and a training that
had ended ``ok`` would be trained again. Within :func:`deferred_interrupts` the first such signal
waits for the block's end; a second one interrupts at once (the user insists: storage may hang).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = ["deferred_interrupts"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Holds back the first interrupt until the block ends, then raises ``KeyboardInterrupt``.

    Only signals that already interrupt (a Python handler is set) are held back, and only in the
    main thread, where Python runs signal handlers; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signum)

    previous: dict[int, Any] = {}
    for signum in _SIGNALS:
        handler = signal.getsignal(signum)
        if callable(handler):
            previous[signum] = signal.signal(signum, hold)
    try:
        yield
    except BaseException as error:
        if received and not isinstance(error, KeyboardInterrupt):
            # The block failed after an interrupt was held: the interrupt still stops the worker.
            raise KeyboardInterrupt from error
        raise
    finally:
        for held, handler in previous.items():
            signal.signal(held, handler)
    if received:
        raise KeyboardInterrupt
