"""`winit compare`: plan a sweep, choose its executor, run what is not done, and hand back the
comparison (one row per member, read from the run directories)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from winit_cli.app import preflight
from winit_cli.config import Config, apply_override
from winit_cli.errors import ConfigError, shorten
from winit_cli.inits import get_scheme
from winit_cli.sweeps.comparison import run_sweep
from winit_cli.sweeps.executors import ExecutorOptions, ProgressFn, make_executor
from winit_cli.sweeps.plan import SweepPlan, groups, plan
from winit_cli.sweeps.spec import SweepSpec, load_spec, parse_value, spec_from_options


@dataclass
class Comparison:
    spec: SweepSpec
    plan: SweepPlan
    frame: pd.DataFrame | None  # comparison.csv; None for a dry run

    @property
    def path(self) -> Path:
        return self.plan.directory / "comparison.csv"


def sweep_spec(sweep_file: Path | None, base: Path | None, axes: dict[str, list[Any]],
               grid_items: list[str], overrides: list[str], seeds: int,
               name: str | None) -> SweepSpec:
    """The sweep a `compare` command describes: a sweep file (with --set applied to its base),
    or a base config crossed with the axes given as options (`--grid KEY=V1,V2` for others)."""
    if sweep_file is not None:
        spec = load_spec(sweep_file)
        for item in overrides:
            apply_override(spec.base, item)
        return spec
    axes = dict(axes)
    for item in grid_items:
        key, sep, values = item.partition("=")
        parsed = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not parsed:
            raise ConfigError(f"--grid {item!r}: expected KEY=V1,V2, e.g. --grid train.lr=0.1,0.01")
        axes[key.strip()] = parsed
    return spec_from_options(base, overrides, axes, list(range(seeds)), name)


def split_option(text: str | None, kind: type = str, option: str = "") -> list:
    """'5,10,20' -> [5, 10, 20]; a value of the wrong kind is a user error."""
    values = [v.strip() for v in text.split(",") if v.strip()] if text else []
    try:
        return [kind(v) for v in values]
    except ValueError:
        raise ConfigError(
            f"{option}: expected comma-separated {kind.__name__}s (got {shorten(text)})") from None


def scheme_option(text: str | None) -> list[str]:
    """--schemes as a list; an unknown name is a user error that names --schemes (with the
    known names and a did-you-mean)."""
    names = split_option(text)
    for name in names:
        get_scheme(name, where="--schemes")
    return names


def only_set_beside_sweep(**given) -> None:
    """A sweep file holds the grid: options that would change it are a user error."""
    clash = [f"--{k}" for k, v in given.items() if v]
    if clash:
        raise ConfigError(f"--sweep holds the grid; drop {', '.join(clash)} "
                          "(use --set for base values)")


def plan_sweep(spec: SweepSpec) -> SweepPlan:
    return plan(spec)


def compare(spec: SweepSpec, sweep_plan: SweepPlan, *, executor: str = "local",
            options: ExecutorOptions | None = None, on_progress: ProgressFn | None = None,
            on_member: Callable[[Any], None] | None = None,
            on_wait: Callable[[list[Config]], None] | None = None) -> Comparison:
    """Train the members not yet done with the named executor; the comparison of all.
    `on_wait` hears of members another live process is training, which this one waits for."""
    options = options or ExecutorOptions()
    if executor == "local":  # a remote executor's memory is not this machine's
        preflight.check_groups(groups(sweep_plan.todo), options.jobs)
    runner = make_executor(executor, options)
    frame = run_sweep(sweep_plan, spec, runner, on_progress=on_progress, on_member=on_member,
                      on_wait=on_wait)
    return Comparison(spec, sweep_plan, frame)
