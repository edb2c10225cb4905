"""The run store: what reports read, cached in Parquet beside the run folders and queried with
DuckDB, so that a report over 10,000 runs reads only what changed since the last one.

    <root>/.winit/store/runs.parquet          one row per run folder (records/stored.py): its
                                              identity, the summary.json text and what its
                                              table row takes from it, the flattened config,
                                              why it is skipped (if it is), its tables' columns
                       /layers-<gen>.parquet  every stored run's layers.csv, with a path column
                       /metrics-<gen>.parquet every stored run's metrics.csv, likewise

The run folders stay the record (a user copies, deletes or rsyncs them); the store is derived
from them and kept in step on every `sync`: a folder is identified by its files' sizes and
mtimes and by a hash of its summary.json (records/identity.py), so a new folder is read in, a
changed one read again, a removed one dropped. A store that cannot be read (damaged, another
version) is rebuilt from the folders; one that cannot be written (a read-only copy of results)
is not written, and the report is the same. Folders are read by records/reader.load_run, the
one reader of run files; the store only keeps what it returned.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from winit_cli import interrupts
from winit_cli._version import __version__
from winit_cli.bounded import kind_of
from winit_cli.errors import ResultsError
from winit_cli.records.files import atomic_write, open_regular
from winit_cli.records.held import TABLES
from winit_cli.records.identity import Identities, now_on_disk
from winit_cli.records.reader import Run, Skipped, load_runs, read_tables
from winit_cli.records.schema import parse_record
from winit_cli.records.stored import Stored, StoredRun, stored

STORE = Path(".winit") / "store"  # under the folder searched; hidden: never taken for a run
FORMAT = f"4/{__version__}"  # a store written by another winit is rebuilt, not trusted
MAX_SEGMENTS = 8  # a sync that would add one more compacts the store into one segment


BATCH = 1000  # folders read at once in a sync: one pass of checks each; a stop signal between


class RunStore:
    """The store of the run folders under `root` (their paths are relative to it)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.dir = self.root / STORE
        self.rows: dict[str, Stored] = {}
        self.generation = ""
        self.selected: list[str] = []  # the folders of the last sync, in its order
        self.writable = False  # whether the last sync could write the store
        self._db = duckdb.connect()

    # --- keeping in step with the folders ---------------------------------------------------

    def sync(self, dirs: list[Path], within: list[Path] | None = None) -> RunStore:
        """Bring the store in step with `dirs`, the run folders found by searching `within`
        (folders under root; all of root where None): read in what is new or changed, drop
        what is gone from there, keep what lies elsewhere (a report of two runs does not empty
        the store of the whole folder). Written back (atomically, under a lock) where it can
        be. `runs` and `records` then give `dirs`, in their order."""
        with self._locked() as (writable, since):
            self.writable = writable
            old = self._load()
            identity = Identities({rel: (row.identity, row.stat) for rel, row in old.items()},
                                  since)
            now = {rel: (d, *identity(rel, d)) for rel, d in self._relative(dirs)}
            fresh: dict[str, Stored] = {}
            # new runs' tables as Arrow, read and checked a batch of folders at a time
            frames: dict[str, list[pa.Table]] = {t: [] for t in TABLES}
            todo = []
            restamped = False  # a kept folder's stat changed (a copy), or can now be trusted
            for rel, (d, ident, stat) in now.items():
                kept = old.get(rel)
                if kept is not None and kept.identity == ident:
                    restamped |= kept.stat != stat
                    kept.stat = stat
                    fresh[rel] = kept
                else:
                    todo.append((rel, d, ident, stat))
            for start in range(0, len(todo), BATCH):
                interrupts.check()  # a stop signal ends a sync between batches (thousands)
                self._read([*todo[start:start + BATCH]], fresh, frames)
            fresh = {rel: fresh[rel] for rel in now}  # in the order searched
            scopes = None if within is None else \
                [Path(w).resolve().relative_to(self.root.resolve()).as_posix() for w in within]
            for rel, row in old.items():
                if rel not in fresh and scopes is not None and not any(
                        s == "." or rel == s or rel.startswith(s + "/") for s in scopes):
                    fresh[rel] = row  # not searched this time: neither read nor dropped
            self.selected = list(now)
            changed = fresh.keys() != old.keys() or any(fresh[k] is not old[k] for k in fresh)
            self.rows = fresh
            if changed or not self.generation:
                self._write(old, frames, writable)
            elif restamped and writable:  # the same runs, the same segments: only their stats
                with suppress(OSError):
                    atomic_write(self.dir / "runs.parquet", _parquet(self._runs_table()))
        return self

    def _relative(self, dirs: list[Path]) -> Iterator[tuple[str, Path]]:
        """(path relative to root, folder) of each folder under root; by text where it can be
        (pathlib's relative_to was a noticeable part of checking 10,000 folders)."""
        root = os.fspath(self.root)
        prefix = root if root.endswith("/") else root + "/"
        for d in dirs:
            text = os.fspath(d)
            yield (text[len(prefix):] if text.startswith(prefix)
                   else d.relative_to(self.root).as_posix()), d

    def _read(self, todo: list[tuple[str, Path, str, str]], fresh: dict[str, Stored],
              frames: dict[str, list[pa.Table]]) -> None:
        """Folders (path, folder, identity, stat) read in: their rows into `fresh`, their
        tables (with path and row number) onto `frames`."""
        runs = load_runs([d for _, d, _, _ in todo], self.root, tables=False)
        found = [r for r in runs if isinstance(r, Run)]
        tables = dict(zip(map(id, found), read_tables(found), strict=True))
        for (rel, d, ident, stat), run in zip(todo, runs, strict=True):
            why, held = tables.get(id(run), (None, {}))
            fresh[rel] = stored(run, d, ident, stat, why, held)
            for t, table in held.items():
                if table is not None:
                    frames[t].append(table.append_column("path", pa.array(
                        [rel] * table.num_rows, pa.string())).append_column(
                        "_row", pa.array(np.arange(table.num_rows, dtype=np.int64))))

    def _load(self) -> dict[str, Stored]:
        """The stored rows, or none (then everything is read again) where the store is missing,
        damaged or from another winit."""
        try:
            if kind_of(os.lstat(self.dir / "runs.parquet").st_mode):
                return {}  # a link or FIFO planted there: rebuilt, never read through
            table = pq.read_table(self.dir / "runs.parquet")
            meta = table.schema.metadata or {}
            if meta.get(b"format", b"").decode() != FORMAT:
                return {}
            generation = meta[b"generation"].decode()
            rows = {r["path"]: Stored(**r) for r in table.to_pylist()}
            if any(not self._file(t, s).is_file() for t in TABLES
                   for s in {r.segment for r in rows.values()}):
                return {}
        except (OSError, KeyError, TypeError, ValueError, pa.ArrowException):
            return {}
        self.generation = generation
        return rows

    def _file(self, table: str, segment: str) -> Path:
        return self.dir / f"{table}-{segment}.parquet"

    def _write(self, old: dict[str, Stored], frames: dict[str, list[pa.Table]],
               writable: bool) -> None:
        """The runs read in by this sync as a new segment (every kept run in it too where the
        store is compacted: too many segments, or none yet), then runs.parquet naming each
        run's segment, then segments no run names go: a crash leaves the last store whole."""
        keep = [p for p, row in self.rows.items() if old.get(p) is row]
        generation = hashlib.sha256(json.dumps(
            [self.generation, sorted(r.identity for r in self.rows.values())]).encode()
            ).hexdigest()[:12]
        kept_segments = {self.rows[p].segment for p in keep}
        compact = not writable or not self.generation or len(kept_segments) >= MAX_SEGMENTS
        tables = {}
        for t in TABLES:
            parts = [self._arrow(t, keep)] if compact and keep and self.generation else []
            parts += frames[t]
            tables[t] = _with_segment(pa.concat_tables(parts, promote_options="permissive")
                                      if parts else _EMPTY, generation)
        for rel, row in self.rows.items():
            if compact or old.get(rel) is not row:
                row.segment = generation
        self.generation = generation
        runs = self._runs_table()
        if not writable:
            self._memory = tables  # a read-only results folder: the store lives in this process
            return
        try:
            if compact or len(keep) < len(self.rows):  # runs read in: a segment of theirs
                for t, table in tables.items():
                    atomic_write(self._file(t, generation), _parquet(table))
            atomic_write(self.dir / "runs.parquet", _parquet(runs))
        except OSError:
            self._memory, self.writable = self._whole(tables, keep, compact), False
            return
        named = {self._file(t, s).name for t in TABLES
                 for s in {r.segment for r in self.rows.values()}}
        for t in TABLES:  # segments no run names, and any a crash left before they were named
            for stale in self.dir.glob(f"{t}-*.parquet"):
                if stale.name not in named:
                    with suppress(OSError):
                        stale.unlink()

    def _runs_table(self) -> pa.Table:
        """runs.parquet: every stored row, with the store's format and generation."""
        return pa.Table.from_pylist([vars(r) for r in self.rows.values()],
                                    schema=_RUNS_SCHEMA).replace_schema_metadata(
            {"format": FORMAT, "generation": self.generation})

    def _whole(self, tables: dict[str, pa.Table], keep: list[str], compact: bool
               ) -> dict[str, pa.Table]:
        """Every stored run's tables in memory (the store could not be written after all)."""
        if compact or not keep:
            return tables
        whole = {t: _with_segment(pa.concat_tables(
            [self._arrow(t, keep), table.drop_columns(["_segment"])],
            promote_options="permissive"), self.generation) for t, table in tables.items()}
        for row in self.rows.values():
            row.segment = self.generation
        return whole

    @contextmanager
    def _locked(self) -> Iterator[tuple[bool, int | None]]:
        """An exclusive lock on the store (two reports at once take turns); yields whether the
        store can be written here, and the file system's clock once locked (records/identity:
        None where the store is not written). A `.winit` that is not winit's own folder (a
        link, a file) is left alone."""
        self._memory: dict[str, pa.Table] | None = None
        try:
            for folder in (self.root / STORE.parts[0], self.dir):
                if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
                    raise OSError("not winit's folder")
                folder.mkdir(exist_ok=True)
            # read-only, never through a link, never a FIFO: the lock file is never written
            lock = open_regular(self.dir / ".lock", os.O_RDONLY | os.O_CREAT)
        except OSError:
            yield False, None
            return
        try:
            with interrupts.interruptible():  # a holder that hangs must not make SIGTERM wait
                fcntl.flock(lock, fcntl.LOCK_EX)
            yield True, now_on_disk(lock)
        finally:
            os.close(lock)

    # --- reading ----------------------------------------------------------------------------

    def _source(self, table: str) -> list[str] | pa.Table:
        if self._memory is not None:
            return self._memory[table]
        return sorted(str(self._file(table, s)) for s in {r.segment for r in self.rows.values()}
                      if s)  # (not yet set: a run being read in)

    def _arrow(self, table: str, paths: list[str]) -> pa.Table:
        return self._query(table, paths, "* EXCLUDE (_segment)").to_arrow_table()

    def _query(self, table: str, paths: list[str], select: str,
               rest: str = "") -> duckdb.DuckDBPyRelation:
        """SELECT `select` from a stored table, the rows of `paths` only, from the segment
        that holds each (an older one may hold a changed run's earlier rows), then `rest`."""
        source = self._source(table)
        self._db.register("wanted", pa.table({
            "path": pa.array(paths, pa.string()),
            "_segment": pa.array([self.rows[p].segment for p in paths], pa.string())}))
        if isinstance(source, pa.Table):
            self._db.register("source", source)
            source = "source"
        else:
            files = ", ".join("'" + f.replace("'", "''") + "'" for f in source)
            source = f"read_parquet([{files}], union_by_name = true)"
        return self._db.sql(f"SELECT {select} FROM {source} SEMI JOIN wanted "
                            f"USING (path, _segment) {rest}")

    def runs(self, tables: bool = True) -> list[Run | Skipped]:
        """Every stored folder, as load_run(tables=...) gives it; tables are read from the
        store when asked for (`load`)."""
        out: list[Run | Skipped] = []
        for rel in self.selected:
            row = self.rows[rel]
            why = row.reason or (row.table_reason if tables else None)
            if why is not None:
                out.append(Skipped(rel, why, json.loads(row.fields)))
                continue
            run = StoredRun(self.root, row, self)
            run.__dict__["steps_to_target"] = None  # set below, for all runs in one query
            out.append(run)
        self._steps_to_target([r for r in out if isinstance(r, Run)])
        return out

    def _steps_to_target(self, runs: list[Run]) -> None:
        """Run.steps_to_target for every run at once (the summary row needs it; reading each
        run's metrics for it would read every run's table)."""
        from winit_cli.records.reader import TARGET_ACCURACY

        source = self._source("metrics")
        names = source.column_names if isinstance(source, pa.Table) else \
            {n for f in source for n in pq.read_schema(f).names}
        if not runs or "val_accuracy" not in names:
            return
        found = dict(self._query(
            "metrics", [r.path for r in runs],
            f"path, arg_min(step, _row) FILTER (WHERE val_accuracy >= {TARGET_ACCURACY})",
            "GROUP BY path").fetchall())
        for run in runs:
            hit = found.get(run.path)
            run.__dict__["steps_to_target"] = None if hit is None else int(hit)

    def load(self, runs: list[Run]) -> None:
        """Read these runs' layers and metrics from the store, in one query per table (a group
        at a time: what is held is bounded by the largest group, not the number of runs)."""
        paths = [r.path for r in runs]
        columns = {r.path: json.loads(self.rows[r.path].columns) for r in runs}
        for t in TABLES:
            # ordered in the query, so each run's rows are one slice (a groupby, sort and
            # cast per run was most of the time a group's figures took to read)
            frame = self._query(t, paths, "*", "ORDER BY path, _row").df()
            bounds = _slices(frame["path"].to_numpy()) if len(frame) else {}
            have = {c: str(d) for c, d in frame.dtypes.items()}  # every slice's dtypes
            for run in runs:
                wanted = columns[run.path].get(t)
                where = bounds.get(run.path)
                if wanted is None or where is None:
                    run.__dict__[t] = None
                    continue
                part = frame.iloc[where[0]:where[1]][list(wanted)].reset_index(drop=True)
                if any(have.get(c) != d for c, d in wanted.items()):
                    part = part.astype(wanted)  # only where DuckDB widened a dtype
                run.__dict__[t] = part

    def records(self) -> list[tuple[str, object]]:
        """(path, RunRecord) for every stored folder whose summary.json reads as one, skipped
        by the report or not (the runs index lists every finished run)."""
        out = []
        for rel in self.selected:
            row = self.rows[rel]
            try:
                out.append((rel, parse_record(json.loads(row.summary or "null"), rel)))
            except (ResultsError, ValueError):
                continue
        return out


_EMPTY = pa.table({"path": pa.array([], pa.string()), "_row": pa.array([], pa.int64())})


def _with_segment(table: pa.Table, segment: str) -> pa.Table:
    """`table` with its _segment column naming `segment` (the rows a query takes are those
    of each run's own segment)."""
    if "_segment" in table.column_names:
        table = table.drop_columns(["_segment"])
    return table.append_column("_segment", pa.array([segment] * table.num_rows, pa.string()))


_RUNS_SCHEMA = pa.schema([(name, pa.string()) for name in Stored.__dataclass_fields__])


def _parquet(table: pa.Table) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _slices(paths: np.ndarray) -> dict[str, tuple[int, int]]:
    """{path: (start, stop)} of a column sorted by path."""
    starts = [0, *(np.flatnonzero(paths[1:] != paths[:-1]) + 1).tolist()]
    stops = [*starts[1:], len(paths)]
    return {paths[a]: (a, b) for a, b in zip(starts, stops, strict=True)}
