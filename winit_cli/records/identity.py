"""What a run folder is now, as far as the run store's copy of it goes (records/store.py): the
sizes and mtimes of the files load_run reads, and a hash of summary.json (a copy with preserved
mtimes still differs). A folder whose identity is unchanged is not read again.

Hashing every summary.json was most of a warm report's check of 10,000 folders, so the hash is
taken again only where summary.json's stat changed since it was taken (git's index does the
same): the store keeps each summary.json's device, inode, size, mtime and ctime beside its
hash. A file rewritten in place, even with its size kept and its mtime set back (cp -p, touch
-r, rsync --inplace -t), has a new ctime, which no user can set; a copy has a new inode.

A stat is kept only where it can be trusted: timestamps come from a clock that ticks every few
milliseconds (every second or two on some file systems), so a file changed again within the
tick in which it was stat'ed keeps the same times. Like git's "racily clean" entries, a stat
whose mtime or ctime is not older than the sync that took it (`since`: the file system's own
clock, read from the store's lock file just before) is not kept, and that summary.json is
hashed again by every sync until one finds it older. What this cannot catch: a summary.json
changed with its size, mtime and ctime all kept, which takes setting the system clock back or a
file system that keeps no ctime (FAT); `rm -r <results>/.winit/store` reads every folder anew.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from winit_cli.bounded import Unreadable, read_bytes
from winit_cli.records.files import MAX_JSON_BYTES

# The files whose sizes and mtimes decide whether a folder is read again (summary.json also by
# hash); sweep.yaml is its sweep's (<sweep>/runs/<run-id>).
IDENTITY_FILES = ("summary.json", "config.yaml", "layers.csv", "metrics.csv", "../../sweep.yaml")


def now_on_disk(fd: int) -> int | None:
    """The file system's clock now, in ns: the mtime of the file open at `fd` (the store's
    lock, winit's own), set to now. None where it cannot be set (another user's store): then
    no stat is kept and every summary.json is hashed, as it once always was."""
    try:
        os.utime(fd)
        return os.fstat(fd).st_mtime_ns
    except OSError:
        return None


class Identities:
    """Run folders' identities for one sync: `known` gives each folder's stored (identity,
    stat) by its path; `since` is now_on_disk() taken before any folder is stat'ed."""

    def __init__(self, known: dict[str, tuple[str, str]], since: int | None):
        self.known = known
        self.since = since
        self._sweeps: dict[str, str] = {}  # a sweep's sweep.yaml, stat'ed once for its runs

    def __call__(self, rel: str, run_dir: Path) -> tuple[str, str]:
        """(identity, stat to keep: "" where none can be trusted) of the folder at `run_dir`,
        stored as `rel`."""
        folder = os.fspath(run_dir)
        stats = []
        for name in IDENTITY_FILES[:-1]:
            try:
                stats.append(os.stat(f"{folder}/{name}"))
            except OSError:
                stats.append(None)
        parts = ["-" if st is None else f"{st.st_size}:{st.st_mtime_ns}" for st in stats]
        # where load_run reads it (reader.sweep_of): the grandparent as written, not through a
        # linked run folder's target
        parts.append(self._sweep(os.path.dirname(os.path.dirname(folder))))
        summary = stats[0]
        key = "" if summary is None else (f"{summary.st_dev}:{summary.st_ino}:{summary.st_size}:"
                                         f"{summary.st_mtime_ns}:{summary.st_ctime_ns}")
        stored_identity, stored_key = self.known.get(rel, ("", ""))
        if key and key == stored_key:  # unchanged since a sync that could trust its stat
            parts.append(stored_identity.rsplit("|", 1)[-1])
        else:
            parts.append(summary_hash(f"{folder}/summary.json"))
        if summary is None or self.since is None \
                or max(summary.st_mtime_ns, summary.st_ctime_ns) >= self.since:
            key = ""  # racy (or no clock to tell): hashed again next time
        return "|".join(parts), key

    def _sweep(self, sweep_dir: str) -> str:
        if sweep_dir not in self._sweeps:
            try:
                st = os.stat(f"{sweep_dir}/sweep.yaml")
                self._sweeps[sweep_dir] = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                self._sweeps[sweep_dir] = "-"
        return self._sweeps[sweep_dir]


def summary_hash(path: str) -> str:
    """The first 32 hex digits of summary.json's SHA-256, "-" where it is no regular file
    (bounded: a FIFO planted there must not hang the report)."""
    try:
        return hashlib.sha256(read_bytes(Path(path), MAX_JSON_BYTES)).hexdigest()[:32]
    except Unreadable:
        return "-"
