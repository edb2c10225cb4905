"""Running a planned sweep and writing its comparison.csv, one row per member, rebuilt from
the run directories on disk (records/rows.run_row, the same rows `winit report` uses).
"""

from __future__ import annotations

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
from winit_cli.records.rows import column_name, rows_frame, run_row
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
    failures: list[MemberFailure] = []
    todo = sweep_plan.todo
    try:
        while todo:
            busy: list[Config] = []
            claimed = _claimed(groups(todo), claims, directory / "runs", busy)
            with closing(executor.run(claimed, on_progress)) as outcomes:
                for outcome in outcomes:
                    if isinstance(outcome, MemberFailure):
                        failures.append(outcome)
                    if on_member:
                        on_member(outcome)
                    claims.release(_hash_of(outcome))
                    write_comparison(sweep_plan, spec, failures)
            if busy and on_wait:
                on_wait(busy)
            claims.wait([c.content_hash() for c in busy])
            todo = busy  # finished elsewhere by now, or to be taken over
    except BaseException:
        with suppress(Exception):  # what was saved is tabulated; the interruption goes on
            write_comparison(sweep_plan, spec, failures)
        raise
    finally:
        claims.release_all()
    return write_comparison(sweep_plan, spec, failures)


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


def _runs_by_hash(directory: Path) -> dict[str, Run]:
    """The sweep's runs by config hash; a member retried after its group failed has two
    directories: the finished one counts."""
    by_hash: dict[str, Run] = {}
    runs_dir = directory / "runs"
    for run_dir in sorted(runs_dir.glob("*/")) if runs_dir.is_dir() else []:
        run = load_run(run_dir, directory, tables=False)
        if not isinstance(run, Run):
            continue
        h = run.record.config_hash
        if h not in by_hash or run.record.status.finished:
            by_hash[h] = run
    return by_hash


def write_comparison(sweep_plan: SweepPlan, spec: SweepSpec,
                     failures: list[MemberFailure] = ()) -> pd.DataFrame:
    """comparison.csv: one row per member, in the grid's order."""
    by_hash = _runs_by_hash(sweep_plan.directory)
    failed = {f.config.content_hash(): f.error for f in failures}
    rows = []
    for config in sweep_plan.members:
        h = config.content_hash()
        values = {k: grid_value(config, k) for k in spec.grid}
        if h in by_hash:
            rows.append(run_row(by_hash[h], values))
        else:
            rows.append({**{column_name(k): v for k, v in values.items()},
                         "seed": config.train.seed, "scheme": config.init.scheme,
                         "status": "failed" if h in failed else "pending",
                         "error": failed.get(h), "config_hash": h})
    frame = rows_frame(rows, list(spec.grid), sort=False)
    try:
        write_csv(sweep_plan.directory / "comparison.csv", frame)
    except OSError as e:
        raise ResultsError(f"{sweep_plan.directory}: cannot write comparison.csv "
                           f"({e.strerror or e})") from e
    return frame
