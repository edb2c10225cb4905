"""Writing and reading the files of a results folder: atomically, never through a link, never
over a file winit did not write, never blocking, with enough digits to round-trip.

Every output goes through `atomic_write` (temp file beside the target, fsync, rename), so a
crash never leaves a half-written CSV that looks complete. What already stands at the target
must be a regular file winit may write: a symbolic link, a FIFO, a device or a read-only file
is refused (an OSError saying which), never followed, truncated or replaced; the rename itself
never follows a link either. Every other file winit opens in a results folder (a lock, a file
read back) is opened by `open_regular`: O_NOFOLLOW and O_NONBLOCK, then fstat says it is a
regular file, so a planted link or FIFO is an error, not a write elsewhere or a hang.
Every CSV goes through `csv_text`, so no cell a spreadsheet would run as a formula is written.
"""

from __future__ import annotations

import errno
import json
import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from winit_cli.bounded import Unreadable, kind_of, read_bytes
from winit_cli.errors import ResultsError

_FILE_MODE = 0o644


def refusal(path: Path | str, why: str) -> OSError:
    """The OSError of a target winit will not write: callers report `strerror` as for any other."""
    return OSError(errno.EPERM, f"{why}: not a file winit wrote, left as it is", str(path))


def check_target(path: Path) -> None:
    """Raise unless `path` is absent or a regular file this process may write."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    kind = kind_of(st.st_mode)
    if kind:
        raise refusal(path, kind)
    # the mode bits too: root may write any file, but a file made read-only was meant to stay
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK, follow_symlinks=False):
        raise refusal(path, "a read-only file")


def open_regular(path: Path, flags: int = os.O_RDONLY) -> int:
    """A descriptor on the regular file `path`, opened without following a link and without
    blocking (a FIFO with no writer would wait forever); O_CREAT in `flags` creates it. Raises
    OSError (refusal's for a FIFO, device or socket) otherwise. Never truncates."""
    flags = (flags & ~os.O_TRUNC) | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, _FILE_MODE)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENXIO):  # a link; a FIFO with no reader (O_WRONLY)
            raise refusal(path, kind_of(os.lstat(path).st_mode) or "not a regular file") \
                from None
        raise
    mode = os.fstat(fd).st_mode
    if kind_of(mode):
        os.close(fd)
        raise refusal(path, kind_of(mode))
    return fd


def atomic_write(path: Path, text: str | bytes, *, parents: bool = True) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file. With
    `parents` False the folder must exist: a run's files are never written into a folder that
    was removed under it (it would reappear holding only part of a run)."""
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; results are ordinary readable files
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)  # replaces the name: never writes through a link put there since
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP's list): such a
# cell is written with a leading apostrophe, which spreadsheets show as text. Numbers (-1.5,
# +3e-4) are numbers, not formulas, and are written as they are.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def neutralised(cell: Any) -> Any:
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS) and not _is_number(cell):
        return "'" + cell
    return cell


def csv_text(frame: pd.DataFrame, *, header: bool = True) -> str:
    """The one way winit turns a table into CSV: floats with repr precision, so they round-trip
    exactly (norms span 40 decades); text cells that could be formulas neutralised."""
    text = frame.select_dtypes(include=["object", "string"]).columns
    if len(text):
        frame = frame.copy()
        for column in text:
            frame[column] = frame[column].map(neutralised)
    return frame.to_csv(index=False, header=header)


def write_csv(path: Path, frame: pd.DataFrame, *, parents: bool = True) -> None:
    atomic_write(path, csv_text(frame), parents=parents)

def write_json(path: Path, data: dict, *, parents: bool = True) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n",
                 parents=parents)


MAX_JSON_BYTES = 16 << 20  # a summary.json is a few kB


def read_json(path: Path) -> Any:
    """A JSON file from a results folder, or ResultsError("<path>: unreadable (why)"). Only a
    regular file is opened for reading (a FIFO would block), and at most MAX_JSON_BYTES."""
    def unreadable(why: str) -> ResultsError:
        return ResultsError(f"{path}: unreadable ({why})")

    try:
        data = read_bytes(path, MAX_JSON_BYTES)
    except Unreadable as e:
        raise unreadable(f"larger than {MAX_JSON_BYTES >> 20} MB" if e.size else e.why) from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise unreadable(f"not UTF-8: byte 0x{data[e.start]:02x} at offset {e.start}") from None
    except (ValueError, RecursionError) as e:  # JSONDecodeError; an integer of 4,300+ digits
        raise unreadable(f"not JSON: {str(e)[:80]}") from None


def finite(x: Any) -> float | None:
    """A real number as a float, or None where there is none to write: JSON has no inf/NaN, so
    an unbounded depth scale or the log of a zero gradient is written as null (an empty cell)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):  # numpy scalars are Real
        return None
    return float(x) if math.isfinite(x) else None


def finite_values(d: dict) -> dict:
    """Floats that could not be measured become None; counts stay integers."""
    return {k: finite(v) if isinstance(v, float) else v for k, v in d.items()}
