"""Running a planned sweep and writing its comparison.csv, one row per member, from the run
directories on disk (records/rows.run_row, the same rows `winit report` uses): read once through
the run store, then each member's folder as it finishes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import closing, suppress
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from winit_cli.config import Config
from winit_cli.errors import ResultsError
from winit_cli.records.files import atomic_write, write_csv
from winit_cli.records.index import remove_runs
from winit_cli.records.reader import Run, load_run
from winit_cli.records.rows import column_name, row_fields, rows_frame, run_row
from winit_cli.records.store import RunStore
from winit_cli.status import Status
from winit_cli.sweeps.claims import Claims
from winit_cli.sweeps.executors import Executor, MemberFailure
from winit_cli.sweeps.plan import SweepPlan, groups, member_folders
from winit_cli.sweeps.spec import SweepSpec, grid_value
from winit_cli.training import ProgressFn


def run_sweep(sweep_plan: SweepPlan, spec: SweepSpec, executor: Executor,
              on_progress: ProgressFn | None = None,
              on_member: Callable[[Any], None] | None = None,
              on_wait: Callable[[list[Config]], None] | None = None) -> pd.DataFrame:
    """Train the members not done, each exactly once however many processes run this sweep:
    a member is trained by whoever claims it (sweeps/claims.py); members another live process
    holds are waited for, then taken over if that process stopped before finishing them.
    comparison.csv is written after every member and at the end, interrupted or not."""
    directory = sweep_plan.directory
    try:
        directory.mkdir(parents=True, exist_ok=True)
        atomic_write(directory / "sweep.yaml", yaml.safe_dump(spec.to_dict(), sort_keys=False))
    except OSError as e:
        raise ResultsError(f"{directory}: cannot write sweep.yaml ({e.strerror or e})") from None
    claims = Claims(directory)
    table = ComparisonTable(sweep_plan, spec)
    todo = sweep_plan.todo
    try:
        while todo:
            busy: list[Config] = []
            claimed = _claimed(groups(todo), claims, directory / "runs", busy)
            with closing(executor.run(claimed, on_progress)) as outcomes:
                for outcome in outcomes:
                    table.add(outcome)
                    if on_member:
                        on_member(outcome)
                    claims.release(_hash_of(outcome))
                    table.write(when_due=True)
            if busy and on_wait:
                on_wait(busy)
            claims.wait([c.content_hash() for c in busy])
            todo = busy  # finished elsewhere by now, or to be taken over
            table.refresh()
    except BaseException:
        with suppress(Exception):  # what was saved is tabulated; the interruption goes on
            table.refresh()  # the member cut short wrote its folder as it stopped
            table.write()
        raise
    finally:
        claims.release_all()
    table.refresh()
    return table.write()


def _hash_of(outcome: Any) -> str:
    if isinstance(outcome, MemberFailure):
        return outcome.config.content_hash()
    return outcome.record.config_hash


def _claimed(todo: list[list[Config]], claims: Claims, runs_dir: Path,
             busy: list[Config]) -> ClaimedGroups:
    return ClaimedGroups(todo, claims, runs_dir, busy)


class ClaimedGroups:
    """The groups to train, each cut down to the members this process claims, as the executor
    asks for them (so two processes share out a sweep's groups). A member held elsewhere goes
    to `busy`; one finished elsewhere since planning is dropped; an unfinished folder of a
    claimed member is removed (with its index line) before it is redone. `ahead()` previews the
    planned groups not drawn yet, claiming nothing."""

    def __init__(self, todo: list[list[Config]], claims: Claims, runs_dir: Path,
                 busy: list[Config]):
        self.planned, self.drawn = list(todo), 0
        self._each = self._claim_each(claims, runs_dir, busy)

    def __iter__(self) -> ClaimedGroups:
        return self

    def __next__(self) -> list[Config]:
        return next(self._each)

    def ahead(self) -> list[list[Config]]:
        """The planned groups not drawn yet, as planned (claims may cut them down later)."""
        return self.planned[self.drawn:]

    def _claim_each(self, claims: Claims, runs_dir: Path,
                    busy: list[Config]) -> Iterator[list[Config]]:
        for group in self.planned:
            self.drawn += 1
            folders = member_folders(runs_dir)
            mine = []
            for config in group:
                config_hash = config.content_hash()
                if not claims.take(config_hash):
                    busy.append(config)
                    continue
                own = folders.get(config_hash, [])
                if any(f.finished for f in own):
                    claims.release(config_hash)
                    continue
                if own:
                    remove_runs([f.path for f in own])
                mine.append(config)
            if mine:
                yield mine


def _keep(by_hash: dict[str, dict], run: Run, values: dict[str, dict[str, Any]]) -> None:
    """A member retried after its group failed has two directories: the finished one counts.
    Only its row is kept (a few hundred bytes), not the run (about 17 KiB: its config and
    record), so the driver's memory stays flat over a sweep of 10,000 members. Read from the
    fields the run store kept, so a refresh parses no summary.json; a run of no member (by
    its config's hash, `values`' keys) is left out."""
    fields = row_fields(run)
    h = fields["config_hash"]
    if h in values and (h not in by_hash or Status(fields["status"]).finished):
        by_hash[h] = run_row(run, values[h])


class ComparisonTable:
    """comparison.csv as members finish: the sweep's runs read once through the run store
    (`refresh`), then each finished member's folder alone (`add`). Rewriting the file after
    every member would cost the whole table each time (hours, over 10,000 members): `write`
    with `when_due` writes only once the time since the last write is ten times what that
    write took, and a write without it (at the end, on an interruption) always writes."""

    def __init__(self, sweep_plan: SweepPlan, spec: SweepSpec):
        self.plan, self.spec = sweep_plan, spec
        self.failed: dict[str, str] = {}
        self.by_hash: dict[str, dict] = {}  # config hash -> the member's row
        # each member's grid values (config key -> value), by its config's hash
        self.values = {h: {k: grid_value(config, k) for k in spec.grid}
                       for config, h in zip(sweep_plan.members, sweep_plan.hashes, strict=True)}
        self._written_at, self._cost = 0.0, 0.0
        self.refresh()

    def refresh(self) -> None:
        """Every run folder of the sweep, as it is now (members finished by other processes)."""
        runs_dir = self.plan.directory / "runs"
        dirs = sorted(p for p in runs_dir.iterdir() if p.is_dir() and not p.name.startswith(
            ".")) if runs_dir.is_dir() else []
        self.by_hash = {}
        for run in RunStore(self.plan.directory).sync(dirs, within=[runs_dir]).runs(tables=False):
            if isinstance(run, Run):
                _keep(self.by_hash, run, self.values)

    def add(self, outcome: Any) -> None:
        if isinstance(outcome, MemberFailure):
            self.failed[outcome.config.content_hash()] = outcome.error
            return
        run = load_run(Path(outcome.run_dir), self.plan.directory, tables=False)
        if isinstance(run, Run):
            _keep(self.by_hash, run, self.values)

    def write(self, when_due: bool = False) -> pd.DataFrame | None:
        """comparison.csv: one row per member, in the grid's order."""
        start = time.monotonic()
        if when_due and start - self._written_at < 10 * self._cost:
            return None
        rows = []
        for config, h in zip(self.plan.members, self.plan.hashes, strict=True):
            if h in self.by_hash:
                rows.append(self.by_hash[h])
            else:
                rows.append({**{column_name(k): v for k, v in self.values[h].items()},
                             "seed": config.train.seed, "scheme": config.init.scheme,
                             "status": "failed" if h in self.failed else "pending",
                             "error": self.failed.get(h), "config_hash": h})
        frame = rows_frame(rows, list(self.spec.grid), sort=False)
        try:
            write_csv(self.plan.directory / "comparison.csv", frame)
        except OSError as e:
            raise ResultsError(f"{self.plan.directory}: cannot write comparison.csv "
                               f"({e.strerror or e})") from e
        self._written_at = time.monotonic()
        self._cost = self._written_at - start
        return frame
