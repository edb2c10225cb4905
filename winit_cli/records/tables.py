"""A run's CSV tables (layers.csv, metrics.csv, ...), read one at a time with every cell checked
(`read_table`), or many runs' at once (`read_many`, what a cold report over thousands of runs
does): each file parsed by Arrow's CSV reader where that is certain to give what `read_table`
gives, records/plausible.py's checks screened in one vectorised pass over all of them, and any
file the fast path or the screen does not clear read again by `read_table` and checked on its
own. A table is used or left out, with the same reason, whichever way it was read; the fast
path only saves the time of pandas' parser and per-run checks (most of a cold report's).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from winit_cli.bounded import Unreadable, opened
from winit_cli.errors import shorten
from winit_cli.records.plausible import suspects, table_problem

# The columns that hold text: the module's name, in layers.csv of runs of `winit.watch`, a
# residual MLP's layer role (input, branch_inner, branch_out, output; records/rows.py), and
# which tensor a row of histograms.csv counts.
TEXT_COLUMNS = ("name", "role", "tensor", "parametrization")  # the last: winit widths' CSVs
# The largest table a run could honestly hold (a depth-100 run recorded at every one of 30,000
# steps writes about 1 GB of layers.csv), and what pandas can parse without filling the memory;
# a larger one (a sparse 3 GB file) is refused before it is read.
MAX_TABLE_BYTES = 1 << 30


def read_table(path: Path, required: tuple[str, ...] = ("step",), keys: tuple[str, ...] = ("step",)
               ) -> tuple[pd.DataFrame | None, str | None]:
    """A run's CSV table with every column numeric, or (None, why it cannot be used): every
    column winit writes to layers.csv and metrics.csv is a number (TEXT_COLUMNS aside, read as
    text), so a cell that is not one means the file was damaged, and nothing computed from it
    could be trusted. `keys` may not be empty either (other cells may: a non-finite value is
    written as an empty cell), and a file that does not end with a newline was cut short
    (winit's writes are whole)."""
    name = path.name
    if not path.is_file():  # a FIFO named layers.csv would block read_csv forever
        return None, f"{name} is missing" + (" (not a regular file)" if path.exists() else "")
    try:
        with opened(path, MAX_TABLE_BYTES) as f:
            if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
                return None, f"{name} is truncated (it ends mid-line)"
            f.seek(0)
            frame = pd.read_csv(f)
    except Unreadable as e:
        return None, f"{name} is unreadable ({e.why})"
    except pd.errors.EmptyDataError:
        return None, f"{name} is empty"
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, ValueError) as e:
        return None, f"{name} is unreadable ({str(e).strip().splitlines()[0][:120]})"
    missing = [c for c in required if c not in frame.columns]
    if missing:
        return None, f"{name} lacks columns {missing}"
    for column in frame.columns:
        if column in TEXT_COLUMNS:
            frame[column] = frame[column].astype(str)
            continue
        if pd.api.types.is_numeric_dtype(frame[column]) and not (
                column in keys and frame[column].isna().any()):
            continue  # parsed as numbers already: nothing to check (most of the time spent)
        numbers = pd.to_numeric(frame[column], errors="coerce")
        bad = numbers.isna() & frame[column].notna()
        if column in keys:
            bad |= numbers.isna()
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            cell = frame[column].iloc[row]
            what = "empty" if pd.isna(cell) else f"{shorten(cell, 40)}, not a number"
            return None, f"{name} line {row + 2}: {column} is {what}"
        frame[column] = numbers
    return frame, None


# pandas' read_csv takes these cells for missing values (pandas._libs.parsers.STR_NA_VALUES);
# the fast path reads the same ones as missing, so that both give the same numbers
NA_CELLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
            "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]
_READ = pacsv.ReadOptions(use_threads=False)  # small files, thousands of them: no thread pool
TEXT_DTYPE = str(pd.Series(["text"]).astype(str).dtype)  # a text column's dtype in read_table


# Cells that pandas and Arrow both read as these numbers (anything else: the file is read alone)
INTEGER = r"^-?[0-9]{1,18}$"
NUMBER = r"^-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$|^-?inf$"
NUMBER_LIKE = r"^\s*[-+]?(\.?[0-9]|[iI][nN][fF]|[nN][aA][nN])"  # what pandas may take for one


def _fast_many(paths: list[Path], required: tuple[str, ...], keys: tuple[str, ...]
               ) -> list[pa.Table | None]:
    """Each file as Arrow where that is sure to hold what read_table's frame holds, else None
    (read_table reads it, and says what is wrong): the files that share a header parsed as
    one text (Arrow's reader costs per file what a few thousand rows cost), typed per file."""
    out: list[pa.Table | None] = [None] * len(paths)
    shared: dict[bytes, list[tuple[int, bytes]]] = {}
    for i, path in enumerate(paths):
        try:
            with opened(path, MAX_TABLE_BYTES) as f:
                data = f.read()
        except (Unreadable, OSError):
            continue  # read_table says why
        header, _, body = data.partition(b"\n")
        # quotes, carriage returns and blank lines: rows are not lines; read alone
        if body and data.endswith(b"\n") and not any(c in data for c in (b'"', b"\r", b"\n\n")):
            shared.setdefault(header, []).append((i, body))
    for header, files in shared.items():
        tables = _split(header, [body for _, body in files], required, keys)
        for (i, _), table in zip(files, tables, strict=True):
            out[i] = table
    return out


def _split(header: bytes, bodies: list[bytes], required: tuple[str, ...],
           keys: tuple[str, ...]) -> list[pa.Table | None]:
    """Files of one header, parsed as one text and typed per file as pandas types a file: a
    column int64 where its every cell is an integer, float64 where some are not or missing,
    text for TEXT_COLUMNS (where some cell is no number: else pandas reads numbers first);
    None for a file with a cell outside these (read_table decides), or a key missing."""
    undecided: list[pa.Table | None] = [None] * len(bodies)
    try:
        names = header.decode().split(",")
        counts = np.array([body.count(b"\n") for body in bodies])
        table = pacsv.read_csv(pa.py_buffer(header + b"\n" + b"".join(bodies)),
                               read_options=_READ, convert_options=pacsv.ConvertOptions(
                                   null_values=NA_CELLS, strings_can_be_null=True,
                                   column_types={n: pa.string() for n in names}))
    except (ValueError, pa.ArrowException):
        return undecided
    if table.column_names != names or len(set(names)) != len(names) or \
            table.num_rows != counts.sum() or any(c not in names for c in required):
        return undecided
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])

    def per_file(mask) -> np.ndarray:  # how many rows of each file
        return np.add.reduceat(np.asarray(mask, dtype=np.int64), starts)

    ok = np.ones(len(bodies), bool)
    typed: dict[str, tuple[pa.Array, pa.Array | None, np.ndarray]] = {}
    for name in names:
        column = table[name].combine_chunks()
        missing = per_file(column.is_null())
        if name in TEXT_COLUMNS:
            like = pc.fill_null(pc.match_substring_regex(column, NUMBER_LIKE), True)
            ok &= (missing == 0) & (per_file(like) < counts)
            typed[name] = (column, None, np.zeros(len(bodies), bool))
            continue
        number = pc.fill_null(pc.match_substring_regex(column, NUMBER), False)
        integer = pc.fill_null(pc.match_substring_regex(column, INTEGER), False)
        ok &= per_file(number) + missing == counts
        if name in keys:
            ok &= missing == 0
        whole = (per_file(integer) == counts)  # pandas: int64 (with a missing cell: float64)
        floats = pc.cast(pc.if_else(number, column, pa.scalar(None, pa.string())), pa.float64())
        ints = pc.cast(pc.if_else(integer, column, pa.scalar(None, pa.string())), pa.int64()) \
            if whole.any() else None
        typed[name] = (floats, ints, whole)
    out = list(undecided)
    for n in np.flatnonzero(ok):
        a, b = int(starts[n]), int(counts[n])
        out[n] = pa.table([(ints if whole[n] else floats).slice(a, b)
                           for floats, ints, whole in typed.values()], names=names)
    return out


def _checked(path: Path, required: tuple[str, ...], keys: tuple[str, ...]
             ) -> tuple[pa.Table | None, str | None]:
    """One file read and checked the careful way: read_table, then table_problem."""
    frame, why = read_table(path, required, keys)
    why = why or table_problem(path.name, frame)
    return (None, why) if why else (pa.Table.from_pandas(frame, preserve_index=False), None)


def read_many(paths: list[Path], required: tuple[str, ...] = ("step",),
              keys: tuple[str, ...] = ("step",)) -> list[tuple[pa.Table | None, str | None]]:
    """Each file as read_table(path, required, keys) then table_problem take it: (its table as
    Arrow, None) or (None, why it cannot be used). The plausibility checks run once over every
    file that shares a header; only the files they flag are checked one by one."""
    fast = _fast_many(paths, required, keys)
    out: list[tuple[pa.Table | None, str | None]] = [(None, None)] * len(paths)
    headers: dict[pa.Schema, list[int]] = {}
    for i, table in enumerate(fast):
        if table is None:
            out[i] = _checked(paths[i], required, keys)
        else:
            headers.setdefault(table.schema, []).append(i)
    for members in headers.values():
        whole = pa.concat_tables([fast[i] for i in members])
        owner = np.repeat(np.arange(len(members)), [fast[i].num_rows for i in members])
        flagged = suspects(whole, owner)
        for n, i in enumerate(members):
            out[i] = _checked(paths[i], required, keys) if n in flagged else (fast[i], None)
    return out


def to_frame(table: pa.Table) -> pd.DataFrame:
    """An Arrow table from read_many as read_table's frame (text columns as text)."""
    frame = table.to_pandas()
    for column in frame.columns:
        if column in TEXT_COLUMNS:
            frame[column] = frame[column].astype(str)
    return frame


def dtype_name(kind: pa.DataType) -> str:
    """The pandas dtype read_table gives a column that Arrow holds as `kind`."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return TEXT_DTYPE
    return np.dtype(kind.to_pandas_dtype()).name
