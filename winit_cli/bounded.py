"""The one bounded reader: every file winit reads that a user, a copy or a crash could have
replaced (configs, sweeps, run records and tables, dataset files) is opened here, so that no
such file can block a read or fill the memory:

- opened non-blocking (a FIFO with no writer returns at once) and refused unless a regular file
  (a FIFO or /dev/zero would be read forever);
- refused beyond a byte cap its caller knows (a sparse 3 GB layers.csv is 3 GB of reading).

Failures are `Unreadable`, whose `why` each caller puts in its own one-line error.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"),
          (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISDIR, "a folder"))


def kind_of(mode: int) -> str | None:
    """What a file that is not a regular file is, in words (None for a regular file)."""
    return next((kind for test, kind in _KINDS if test(mode)),
                None if stat.S_ISREG(mode) else "not a regular file")


class Unreadable(Exception):
    """Why a file cannot be read; `size` is set when it was refused for being too large."""

    def __init__(self, why: str, size: int | None = None):
        super().__init__(why)
        self.why, self.size = why, size


@contextmanager
def opened(path: Path, limit: int, *, follow_links: bool = True) -> Iterator[BinaryIO]:
    """`path` open for reading in binary, once known to be a regular file of at most `limit`
    bytes; raises Unreadable. `follow_links` False for files winit itself keeps in a results
    folder (runs.csv): a link planted there is refused, not read through."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_links else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP and not follow_links:
            raise Unreadable("a symbolic link") from None
        raise Unreadable(e.strerror or str(e)) from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if kind_of(info.st_mode):
            raise Unreadable(kind_of(info.st_mode))
        if info.st_size > limit:
            raise Unreadable(f"{info.st_size:,} bytes, more than the {limit:,} allowed",
                             info.st_size)
        os.set_blocking(fd, True)
        yield f


def read_bytes(path: Path, limit: int, *, follow_links: bool = True) -> bytes:
    """A regular file's bytes, at most `limit` of them (it may grow while it is read); raises
    Unreadable."""
    with opened(path, limit, follow_links=follow_links) as f:
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise Unreadable(e.strerror or str(e)) from None
    if len(data) > limit:
        raise Unreadable(f"more than the {limit:,} bytes allowed", len(data))
    return data
