"""Signals as interruptions: SIGTERM and SIGHUP (what `timeout`, `kill`, a batch scheduler and a
closed terminal send) take the path Ctrl-C takes.

`raise_on` makes each of them raise `Terminated`, a KeyboardInterrupt, so every
`except KeyboardInterrupt` that saves what was measured runs for them too; the CLI then exits
with 128 + the signal's number (143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C), as a shell
reports a process killed by it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager

STOPPING = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

# The last signal turned into an interruption in this process (None: none, or Ctrl-C), so that
# worker processes can be stopped with the signal that stopped their parent.
received: int | None = None


class Terminated(KeyboardInterrupt):
    """A termination signal, raised as an interruption."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def raise_on(*signums: int) -> None:
    """From now on each of `signums` raises Terminated in the main thread, once: repeats are
    ignored while what was measured is being saved (SIGKILL still stops the process)."""

    def handler(signum: int, frame) -> None:
        global received
        received = signum
        for s in signums:
            signal.signal(s, signal.SIG_IGN)
        raise Terminated(signum)

    for s in signums:
        signal.signal(s, handler)


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
