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

from winit_cli.errors import ResultsError

_FILE_MODE = 0o644


def atomic_write(path: Path, text: str | bytes) -> None:
    """Write to a temp file beside `path`, then rename: readers never see half a file."""
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


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    # pandas writes floats with repr precision: they round-trip exactly (norms span 40 decades).
    atomic_write(path, frame.to_csv(index=False))


def write_json(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=2, default=str, allow_nan=False) + "\n")


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: unreadable ({e})") from None


def finite(x: Any) -> float | None:
    """A real number as a float, or None where there is none to write: JSON has no inf/NaN, so
    an unbounded depth scale or the log of a zero gradient is written as null (an empty cell)."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):  # numpy scalars are Real
        return None
    return float(x) if math.isfinite(x) else None


def finite_values(d: dict) -> dict:
    """Floats that could not be measured become None; counts stay integers."""
    return {k: finite(v) if isinstance(v, float) else v for k, v in d.items()}
