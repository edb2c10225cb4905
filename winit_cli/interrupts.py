"""Signals as interruptions: Ctrl-C (SIGINT), SIGTERM and SIGHUP (what `timeout`, `kill`, a
batch scheduler and a closed terminal send) all take one path.

The handler `stop_on` installs only records the signal: Python runs a handler between any two
bytecodes, inside a weakref callback or a `__del__` too, where an exception raised is printed as
"Exception ignored" and dropped (a SIGTERM during `winit report` was once swallowed so, about 1 try
in 20, and the report exited 0; Python's own Ctrl-C handler raises there too). The signal becomes a
KeyboardInterrupt (`Terminated` for SIGTERM and SIGHUP) at the next safe point, `check()` (every
training step, every run a report reads, every wait of a sweep), so
every `except KeyboardInterrupt` that saves what was measured runs for it too; a wait that blocks
in the kernel (a lock) is marked `interruptible()` and raises at once. The CLI then exits with
128 + the signal's number (143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C), as a shell reports a
process killed by it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

# The signal that stopped this process (None: none yet), so that worker processes can be
# stopped with the signal that stopped their parent, and the CLI exits with its code.
received: int | None = None
_pending = False  # received and not yet raised at a safe point
_blocking = 0  # depth of interruptible() blocks the main thread is in


class Terminated(KeyboardInterrupt):
    """A termination signal, raised as an interruption."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_on(*signums: int) -> None:
    """From now on the first of `signums` to arrive raises Terminated at the next `check()`
    (at once inside `interruptible()`); repeats are ignored while what was measured is being
    saved (SIGKILL still stops the process)."""
    global received, _pending
    received, _pending = None, False

    def handler(signum: int, frame) -> None:
        global received, _pending
        if received is not None:
            return
        received, _pending = signum, True
        if _blocking:
            check()

    for s in signums:
        signal.signal(s, handler)


def check() -> None:
    """A safe point: raise the interruption a signal asked for, once."""
    global _pending
    if _pending:
        _pending = False
        raise KeyboardInterrupt() if received == signal.SIGINT else Terminated(received)


@contextmanager
def interruptible() -> Iterator[None]:
    """A block that waits in the kernel (a lock held by another process): a signal raises at
    once inside it rather than waiting for the next safe point after it."""
    global _blocking
    check()
    _blocking += 1
    try:
        yield
    finally:
        _blocking -= 1


def reason(interruption: BaseException) -> str:
    """How a run was interrupted, for its record."""
    if isinstance(interruption, Terminated):
        return f"interrupted by {signal.Signals(interruption.signum).name}"
    return "interrupted by the user (Ctrl-C)"


def exit_code(interruption: BaseException) -> int:
    """What a shell reports for a process stopped by this interruption."""
    return 128 + (interruption.signum if isinstance(interruption, Terminated) else signal.SIGINT)


@contextmanager
def deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP back while the block runs (writing a run's final
    records), then let them in: a signal that arrives while records are being written stops the
    process after they are whole, not half way through."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPPING)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
