"""Where a run stands: the one `Status` that training, the run record, the runs index, sweeps
and `winit.watch` all hold. A leaf module (it imports nothing from winit), so that every layer
can name a status without reaching into another's."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    RUNNING = "running"  # the process is (or was, if it died) still training
    COMPLETE = "complete"
    DIVERGED = "diverged"  # stopped at a non-finite loss or gradient; what was recorded is kept
    INTERRUPTED = "interrupted"  # Ctrl-C or a signal
    FAILED = "failed"  # an error stopped it; `error` says which

    @property
    def finished(self) -> bool:
        """Finished runs are ranked and resumed past; the others are tabulated, or redone."""
        return self in (Status.COMPLETE, Status.DIVERGED)
