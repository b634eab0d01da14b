"""Storage writes a Ctrl-C must not cut in two (search.study._interrupts), with real signals."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from search.study._interrupts import deferred_interrupts


@pytest.fixture(autouse=True)
def interruptible() -> Iterator[None]:
    """SIGINT raising KeyboardInterrupt, as memfront's CLI sets it: a test session started in the
    background (nohup, ``&`` in a script) inherits it ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_the_first_interrupt_lands_after_the_block() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), deferred_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        done.append("the block went on")
    assert done == ["the block went on"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_a_second_interrupt_lands_at_once() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), deferred_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the user insists (a storage that hangs)
        done.append("not reached")
    assert done == []
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_held_interrupt_still_stops_when_the_block_fails() -> None:
    # E.g. a tell refused because another worker failed the trial meanwhile: the worker would go on.
    with pytest.raises(KeyboardInterrupt) as stopped, deferred_interrupts():
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("the block's own error")
    assert isinstance(stopped.value.__cause__, ValueError)


def test_a_signal_the_process_does_not_handle_is_left_alone() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup's
    try:
        with deferred_interrupts():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, previous)


def test_without_an_interrupt_the_block_ends_as_it_would() -> None:
    with deferred_interrupts():
        pass
    with pytest.raises(ValueError), deferred_interrupts():
        raise ValueError("its own error, not an interrupt")


def test_outside_the_main_thread_nothing_is_held() -> None:
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(_enter_elsewhere()))
    thread.start()
    thread.join()
    assert seen == [signal.default_int_handler]


def _enter_elsewhere() -> object:
    with deferred_interrupts():
        return signal.getsignal(signal.SIGINT)  # Python runs handlers in the main thread only
