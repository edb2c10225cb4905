"""Claims on sweep members: which live process is training which member.

Two `winit compare` commands on one sweep must neither train a member twice nor remove a folder
the other is writing. So before a member is trained, or its unfinished folders are removed, its
claim is taken: an exclusive fcntl lock on <sweep>/.claims/<hash>.lock, held by the process
until the member's outcome is in. The OS releases a lock when its process dies, however it dies
(SIGKILL included), so a claim never outlives its holder and never needs cleaning up; the lock
files themselves stay (removing one would race with a process about to lock it).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from winit_cli import interrupts
from winit_cli.errors import ResultsError
from winit_cli.records.files import open_regular

CLAIMS = ".claims"


class Claims:
    """The claims this process holds on the members of one sweep."""

    def __init__(self, sweep_dir: Path):
        self.dir = Path(sweep_dir) / CLAIMS
        self.held: dict[str, IO] = {}

    def _path(self, config_hash: str) -> Path:
        return self.dir / f"{config_hash[:32]}.lock"

    def _open(self, config_hash: str) -> IO:
        """The member's lock file, read-only: never through a link, never a FIFO."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = open_regular(self._path(config_hash), os.O_RDONLY | os.O_CREAT)
        except OSError as e:
            raise ResultsError(f"{self._path(config_hash)}: cannot claim this sweep member "
                               f"({e.strerror or e})") from None
        return os.fdopen(fd, "rb")

    def take(self, config_hash: str) -> bool:
        """Claim a member if no live process holds it; True if this process now holds it."""
        if config_hash in self.held:
            return True
        lock = self._open(config_hash)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            return False
        self.held[config_hash] = lock
        return True

    def release(self, config_hash: str) -> None:
        lock = self.held.pop(config_hash, None)
        if lock is not None:
            lock.close()  # closing the file releases its lock

    def release_all(self) -> None:
        for config_hash in list(self.held):
            self.release(config_hash)

    def wait(self, config_hashes: list[str]) -> None:
        """Block until no process holds these members (Ctrl-C still interrupts the wait)."""
        for config_hash in config_hashes:
            with self._open(config_hash) as lock, interrupts.interruptible():
                fcntl.flock(lock, fcntl.LOCK_EX)  # granted once the holder ends or dies

    def held_elsewhere(self, config_hash: str) -> bool:
        """Whether another live process holds this member now (for a dry run's listing)."""
        if config_hash in self.held or not self._path(config_hash).exists():
            return False  # never claimed (and a dry run creates no lock file)
        taken = self.take(config_hash)
        if taken:
            self.release(config_hash)
        return not taken
