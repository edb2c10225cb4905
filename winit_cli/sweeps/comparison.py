"""Running a planned sweep and writing its comparison.csv, one row per member, rebuilt from
the run directories on disk (records/rows.run_row, the same rows `winit report` uses).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from winit_cli.errors import ResultsError
from winit_cli.records.files import atomic_write, write_csv
from winit_cli.records.reader import Run, load_run
from winit_cli.records.rows import column_name, rows_frame, run_row
from winit_cli.sweeps.executors import Executor, MemberFailure, ProgressFn
from winit_cli.sweeps.plan import SweepPlan, groups
from winit_cli.sweeps.spec import SweepSpec, grid_value


def run_sweep(sweep_plan: SweepPlan, spec: SweepSpec, executor: Executor,
              on_progress: ProgressFn | None = None,
              on_member: Callable[[Any], None] | None = None) -> pd.DataFrame:
    sweep_plan.directory.mkdir(parents=True, exist_ok=True)
    atomic_write(sweep_plan.directory / "sweep.yaml",
                 yaml.safe_dump(spec.to_dict(), sort_keys=False))
    for stale in sweep_plan.stale:
        shutil.rmtree(stale, ignore_errors=True)
    failures: list[MemberFailure] = []
    for outcome in executor.run(groups(sweep_plan.todo), on_progress):
        if isinstance(outcome, MemberFailure):
            failures.append(outcome)
        if on_member:
            on_member(outcome)
        write_comparison(sweep_plan, spec, failures)
    return write_comparison(sweep_plan, spec, failures)


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
        raise ResultsError(f"{sweep_plan.directory}: cannot write comparison.csv ({e})") from e
    return frame
