"""Signals as interruptions, driven by calling the installed handler as the interpreter would
(with the signal's plain int number), so no signal is ever sent to the test process: the
handler only records, `check()` raises once, `interruptible()` raises at once, exit codes and
reasons are a shell's."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator

import pytest

from winit_cli import interrupts


@pytest.fixture()
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """stop_on(SIGINT, SIGTERM, SIGHUP), undone afterwards; yields `deliver(signum, at_once)`,
    which runs the handler the process would run for that signal. Outside `interruptible()` the
    handler must only record: an interruption it raises is turned into this test's failure
    rather than left to stop the whole pytest session."""
    before = {s: signal.getsignal(s) for s in interrupts.STOPPING}
    monkeypatch.setattr(interrupts, "received", None)
    monkeypatch.setattr(interrupts, "_pending", False)
    try:
        interrupts.stop_on(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        handlers = {s: signal.getsignal(s) for s in interrupts.STOPPING}
        assert all(callable(h) and h is not before[s] for s, h in handlers.items())

        def deliver(signum: int, at_once: bool = False) -> None:
            if at_once:
                handlers[signum](int(signum), None)
                return
            try:
                handlers[signum](int(signum), None)
            except KeyboardInterrupt:
                pytest.fail("the handler raised outside interruptible()")

        yield deliver
    finally:
        for s, h in before.items():
            signal.signal(s, h)


@pytest.mark.parametrize("signum, kind, name", [
    (signal.SIGINT, KeyboardInterrupt, None),
    (signal.SIGTERM, interrupts.Terminated, "SIGTERM"),
    (signal.SIGHUP, interrupts.Terminated, "SIGHUP"),
])
def test_a_signal_is_raised_at_the_next_check_once(installed, signum, kind, name) -> None:
    """The handler records and returns; check() raises KeyboardInterrupt for Ctrl-C and
    Terminated(signum) for the others, then nothing more; a repeat is ignored."""
    installed(signum)
    assert interrupts.received == signum
    installed(signal.SIGTERM if signum != signal.SIGTERM else signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as caught:
        interrupts.check()
    assert type(caught.value) is kind
    if name is not None:
        assert caught.value.signum == signum and str(caught.value) == name
    interrupts.check()
    assert interrupts.received == signum


def test_inside_interruptible_a_signal_raises_at_once_and_not_after(installed) -> None:
    with pytest.raises(interrupts.Terminated), interrupts.interruptible():
        installed(signal.SIGTERM, at_once=True)
    interrupts.stop_on(signal.SIGTERM)  # a fresh start: nothing received
    with interrupts.interruptible():
        pass
    installed(signal.SIGHUP)  # outside the block again: recorded, not raised
    with pytest.raises(interrupts.Terminated):
        interrupts.check()


@pytest.mark.parametrize("interruption, code, why", [
    (KeyboardInterrupt(), 130, "interrupted by the user (Ctrl-C)"),
    (interrupts.Terminated(signal.SIGTERM), 143, "interrupted by SIGTERM"),
    (interrupts.Terminated(signal.SIGHUP), 129, "interrupted by SIGHUP"),
])
def test_exit_code_and_reason_are_a_shells(interruption, code: int, why: str) -> None:
    """128 + the signal's number, as a shell reports a process killed by it."""
    assert interrupts.exit_code(interruption) == code
    assert interrupts.reason(interruption) == why


def test_deferred_blocks_the_stopping_signals_only_while_it_runs() -> None:
    def blocked() -> set[int]:
        return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))

    outside = blocked()
    with interrupts.deferred():
        assert blocked() >= interrupts.STOPPING
    assert blocked() == outside
