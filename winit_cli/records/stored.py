"""One run folder as the run store (records/store.py) keeps it, a row of runs.parquet, and the
run it serves back from that row.

Besides what load_run read (summary.json's text, the flattened config, why it is skipped), a row
keeps what the run's table row takes from its record (records/rows.record_fields), so that a
report over 10,000 unchanged runs builds its tables without parsing every summary.json into a
RunRecord again (that was most of a warm report's reading); `record` is parsed when first asked
for (a figure of the run's group, `winit index`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from winit_cli.errors import ResultsError
from winit_cli.records.files import read_json
from winit_cli.records.reader import Run, Skipped, summary_fields
from winit_cli.records.rows import record_fields
from winit_cli.records.schema import RunRecord, parse_record
from winit_cli.records.tables import dtype_name


@dataclass
class Stored:
    """One run folder as the store holds it."""

    path: str
    identity: str  # records/identity.py
    summary: str | None  # summary.json's text, where it could be read
    config: str  # the flattened config, JSON
    sweep: str | None
    grid: str  # the sweep's grid keys, JSON
    reason: str | None  # why it is no run at all (summary.json unreadable, still running)
    table_reason: str | None  # why its tables cannot be used (a report skips it)
    fields: str  # Skipped.fields, JSON
    columns: str  # {table: {column: dtype}}, JSON
    segment: str = ""  # which segment's table files hold its rows (set when it is written)
    stat: str = ""  # summary.json's stat as its hash was taken ("": hashed again next sync)
    row: str = ""  # records/rows.record_fields, JSON ("": parse the summary for them)


def stored(run: Run | Skipped, run_dir: Path, ident: str, stat: str, why: str | None,
           held: dict[str, pa.Table | None]) -> Stored:
    """A folder's row: `run` as load_run(tables=False) gave it, and read_tables' word."""
    try:  # read as load_run reads it: bounded, regular files only
        summary = json.dumps(read_json(run_dir / "summary.json"))
    except ResultsError:
        summary = None
    if isinstance(run, Skipped):
        return Stored(run.path, ident, summary, "{}", None, "[]", run.reason, None,
                      json.dumps(run.fields, default=str), "{}", stat=stat)
    columns = {t: {f.name: dtype_name(f.type) for f in table.schema}
               for t, table in held.items() if table is not None}
    config = json.dumps(run.config, default=str)
    return Stored(run.path, ident, summary, config, run.sweep, json.dumps(run.sweep_grid), None,
                  why, json.dumps(summary_fields(json.loads(summary or "null")), default=str),
                  json.dumps(columns), stat=stat,
                  row=_kept_fields(dataclasses.replace(run, config=json.loads(config))))


def _kept_fields(run: Run) -> str:
    """record_fields(run) as JSON, where JSON gives them back exactly (the same values of the
    same types; else "", and they are taken from the parsed record each time)."""
    fields = record_fields(run)
    text = json.dumps(fields)
    back = json.loads(text)
    same = back == fields and all(type(back[k]) is type(v) for k, v in fields.items())
    return text if same else ""


class StoredRun(Run):
    """A run served from its stored row: `fields` for its table row, `record` parsed from the
    stored summary.json text when first asked for."""

    def __init__(self, root: Path, row: Stored, store: Any):
        super().__init__(root / row.path, row.path, None, json.loads(row.config), row.sweep,
                         () if row.grid == "[]" else tuple(json.loads(row.grid)), store,
                         json.loads(row.row) if row.row else None)
        del self.__dict__["record"]  # set to None above: `record` below parses it on first use
        self._summary = row.summary

    @cached_property
    def record(self) -> RunRecord:
        return parse_record(json.loads(self._summary), "summary.json")
