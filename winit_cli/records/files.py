"""Writing and reading the files of a run: atomically, with enough digits to round-trip.

Every output goes through `atomic_write` (temp file beside the target, fsync, rename), so a
crash never leaves a half-written CSV that looks complete.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from winit_cli.bounded import Unreadable, read_bytes
from winit_cli.errors import ResultsError

_FILE_MODE = 0o644


def atomic_write(path: Path, text: str | bytes, *, parents: bool = True) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file. With
    `parents` False the folder must exist: a run's files are never written into a folder that
    was removed under it (it would reappear holding only part of a run)."""
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes 0600; results are ordinary readable files
        with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: Path, frame: pd.DataFrame, *, parents: bool = True) -> None:
    # pandas writes floats with repr precision: they round-trip exactly (norms span 40 decades).
    atomic_write(path, frame.to_csv(index=False), parents=parents)


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
