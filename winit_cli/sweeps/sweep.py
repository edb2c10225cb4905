"""Sweeps: a base config crossed with a grid of values, run as ordinary run directories.

    results/sweeps/<name>-<hash6>/sweep.yaml        the spec (base config + grid + seeds)
                                 /runs/<run-id>/    one ordinary run directory per member
                                 /comparison.csv    one row per member

The sweep directory is named by the spec's content, so rerunning the same command finds it and
skips members whose run completed (matched by their resolved config's hash); incomplete ones are
removed and redone. Members that share a shape train together as one stacked model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import yaml

from winit_cli.config import Config, apply_override, load_yaml, validate
from winit_cli.errors import ConfigError
from winit_cli.records import files as results

# The built-in comparison: the schemes users come for, on a network deep enough to tell them apart.
DEFAULT_SCHEMES = ("normal", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
                   "mean1_normal", "normal_l2", "torch_default")
DEFAULT_BASE: dict[str, Any] = {
    "name": "compare",
    "model": {"depth": 20, "width": 256, "activation": "relu"},
    "train": {"epochs": 1, "optimizer": "momentum", "lr": 0.01},
    "record": {"every": 10, "eval_every": 50},
}
DONE = ("complete", "diverged")
MAX_GROUP = 8  # members trained as one stacked model


@dataclass
class SweepSpec:
    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "grid": self.grid, "seeds": self.seeds}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str)
                              .encode()).hexdigest()

    def members(self) -> list[Config]:
        """Every grid point x seed, validated; the order is the grid's, seeds innermost."""
        keys = list(self.grid)
        configs = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            for seed in self.seeds:
                raw = json.loads(json.dumps(self.base, default=str))  # a deep copy
                # A scheme first: the parameters set by the base or by other axes then apply to
                # it, those it does not take being dropped (they belong to another scheme).
                point = sorted(zip(keys, values, strict=True),
                               key=lambda kv: kv[0] != "init.scheme")
                for key, value in point:
                    if key == "init.scheme":
                        init = raw.setdefault("init", {})
                        accepted = _scheme_params(value)
                        init["params"] = {k: v for k, v in (init.get("params") or {}).items()
                                          if k in accepted}
                    apply_override(raw, f"{key}={_yaml_scalar(value)}")
                apply_override(raw, f"train.seed={seed}")
                label = "_".join(_label(v) for v in values) or "base"
                raw["name"] = f"{self.name}_{label}_s{seed}"
                configs.append(validate(raw, f"sweep {self.name} ({label}, seed {seed})"))
        return configs


def _scheme_params(name: Any) -> set[str]:
    from winit_cli.inits import get_scheme

    return set(get_scheme(str(name)).defaults)


def parse_value(text: str) -> Any:
    """A grid value from the command line, read as YAML: '20' is an int, 'relu' a string."""
    try:
        return load_yaml(text)
    except yaml.YAMLError:
        return text


def _yaml_scalar(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def describe_value(value: Any) -> str:
    """A grid value as a short string: an init mapping reads `normal(std=0.05)`."""
    if isinstance(value, dict) and "scheme" in value:
        params = ",".join(f"{k}={v}" for k, v in sorted((value.get("params") or {}).items()))
        return f"{value['scheme']}({params})" if params else str(value["scheme"])
    return str(value)


def _label(value: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-." else "-" for ch in describe_value(value))


def load_spec(path: Path) -> SweepSpec:
    """A sweep YAML: name, base (a config file path or an inline config), grid, seeds."""
    raw = _read_base(path)
    unknown = set(raw) - {"name", "base", "grid", "seeds"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {sorted(unknown)}; a sweep has name, base, "
                          "grid, seeds")
    base = raw.get("base", {})
    if isinstance(base, str):
        base_path = (Path(path).parent / base) if not Path(base).is_absolute() else Path(base)
        base = _read_base(base_path)
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: grid must map config keys to non-empty lists of values")
    seeds = raw.get("seeds", [0])
    seeds = list(range(seeds)) if isinstance(seeds, int) else seeds
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{path}: seeds must be a count or a list of integers (got {seeds!r})")
    return SweepSpec(str(raw.get("name", Path(path).stem)), base, grid, seeds)


def _read_base(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file, or a one-line ConfigError."""
    try:
        base = load_yaml(Path(path).read_text()) or {}
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({getattr(e, 'problem', e)})") from None
    if not isinstance(base, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return base


def spec_from_options(base: Path | None, overrides: list[str], grid: dict[str, list[Any]],
                      seeds: list[int], name: str | None) -> SweepSpec:
    raw = _read_base(base) if base else json.loads(json.dumps(DEFAULT_BASE))
    for item in overrides:
        apply_override(raw, item)
    grid = {k: v for k, v in grid.items() if v}
    if "init.scheme" not in grid and "init" not in grid:
        grid = {"init.scheme": list(DEFAULT_SCHEMES), **grid}
    return SweepSpec(name or raw.get("name", "compare"), raw, grid, seeds)


# --- running ------------------------------------------------------------------------------------


@dataclass
class SweepPlan:
    directory: Path
    members: list[Config]
    done: dict[str, Path]  # config hash -> completed run dir
    stale: list[Path]  # incomplete run dirs to redo

    @property
    def todo(self) -> list[Config]:
        return [c for c in self.members if c.content_hash() not in self.done]


def plan(spec: SweepSpec, output_dir: Path | None = None) -> SweepPlan:
    members = spec.members()
    hashes = [c.content_hash() for c in members]
    if len(set(hashes)) != len(hashes):
        raise ConfigError(f"sweep {spec.name}: the grid produces identical runs; remove repeats")
    root = Path(output_dir or members[0].output_dir) / "sweeps"
    directory = root / f"{spec.name}-{spec.digest()[:6]}"
    members = [c.model_copy(update={"output_dir": directory / "runs"}) for c in members]
    done, stale = {}, []
    for summary_path in sorted((directory / "runs").glob("*/summary.json")):
        try:
            summary = results.read_json(summary_path)
        except results.ResultsError:
            summary = {}
        if summary.get("status") in DONE and summary.get("config_hash") in hashes:
            done[summary["config_hash"]] = summary_path.parent
        else:
            stale.append(summary_path.parent)
    return SweepPlan(directory, members, done, stale)


def groups(configs: list[Config]) -> list[list[Config]]:
    """Members that may train as one stacked model (train.SHARED_KEYS agree), MAX_GROUP at most."""
    from winit_cli.training.loop import SHARED_KEYS

    by_key: dict[str, list[Config]] = {}
    for c in configs:
        d = c.to_dict()
        key = json.dumps([_dig(d, k) for k in SHARED_KEYS], sort_keys=True, default=str)
        by_key.setdefault(key, []).append(c)
    return [g[i:i + MAX_GROUP] for g in by_key.values() for i in range(0, len(g), MAX_GROUP)]


def _dig(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            raise ConfigError(f"{dotted}: no such config key")
        d = d[part]
    return d


@dataclass
class MemberFailure:
    config: Config
    error: str


Event = Callable[[str, dict], None]


def cached_splits(data_dir: Path | None = None, on_download=None) -> Callable[[Config], Any]:
    """splits_for(config): the data splits a config needs, loaded once per distinct need."""
    from winit_cli.app.experiment import load_splits

    cache: dict = {}

    def splits_for(config: Config):
        key = (config.data.val_size, config.data.subset, config.data.dir)
        if key not in cache:
            cache[key] = load_splits(config, data_dir, on_download=on_download)
        return cache[key]

    return splits_for


class Executor(Protocol):
    """Runs groups of members; yields a RunOutcome per member, or a MemberFailure."""

    def run(self, batches: list[list[Config]], on_progress=None) -> Iterator[Any]: ...


class InProcessExecutor:
    """Trains each group as one stacked model in this process. If a group fails, its members
    are retried one by one, so one failing member never takes the others down."""

    def __init__(self, splits_for: Callable[[Config], Any]):
        self.splits_for = splits_for

    def run(self, batches: list[list[Config]], on_progress=None) -> Iterator[Any]:
        from winit_cli.app.experiment import run_group

        for group in batches:
            try:
                yield from run_group(group, self.splits_for(group[0]),
                                     device=group[0].train.device, on_progress=on_progress)
            except KeyboardInterrupt:
                raise
            except Exception as e:
                if len(group) == 1:
                    yield MemberFailure(group[0], f"{type(e).__name__}: {e}")
                    continue
                yield from self.run([[c] for c in group], on_progress)


class ProcessExecutor:
    """Runs groups in `jobs` local worker processes, each training its groups batched (as
    InProcessExecutor does) on cores // jobs threads. A worker that dies (a crash, the OOM
    killer) fails only the members of its group."""

    def __init__(self, jobs: int, data_dir: Path | None = None):
        self.jobs, self.data_dir = jobs, data_dir

    def run(self, batches: list[list[Config]], on_progress=None) -> Iterator[Any]:
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        context = multiprocessing.get_context("spawn")  # no forked torch thread pools
        with ProcessPoolExecutor(self.jobs, mp_context=context) as pool:
            futures = {pool.submit(_work, group, self.data_dir, threads): group
                       for group in batches}
            try:
                for future in as_completed(futures):
                    try:
                        yield from future.result()
                    except Exception as e:  # the worker itself died
                        for config in futures[future]:
                            yield MemberFailure(config, f"worker failed: {type(e).__name__}: {e}")
            except KeyboardInterrupt:
                pool.shutdown(cancel_futures=True)
                raise


_WORKER_SPLITS: dict = {}


def _work(group: list[Config], data_dir: Path | None, threads: int) -> list[Any]:
    import torch

    torch.set_num_threads(threads)
    if "splits_for" not in _WORKER_SPLITS:
        _WORKER_SPLITS["splits_for"] = cached_splits(data_dir)
    return list(InProcessExecutor(_WORKER_SPLITS["splits_for"]).run([group]))


def run_sweep(sweep_plan: SweepPlan, spec: SweepSpec, executor: Executor, on_progress=None,
              on_member: Callable[[Any], None] | None = None) -> pd.DataFrame:
    sweep_plan.directory.mkdir(parents=True, exist_ok=True)
    results.atomic_write(sweep_plan.directory / "sweep.yaml",
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


def write_comparison(sweep_plan: SweepPlan, spec: SweepSpec,
                     failures: list[MemberFailure] = ()) -> pd.DataFrame:
    """comparison.csv, rebuilt from the run directories on disk (one row per member)."""
    by_hash = {}
    for summary_path in sorted((sweep_plan.directory / "runs").glob("*/summary.json")):
        try:
            summary = results.read_json(summary_path)
        except results.ResultsError:
            continue
        h = summary.get("config_hash")
        # A member retried after its group failed has two directories: the finished one counts.
        if h not in by_hash or summary.get("status") in DONE:
            by_hash[h] = (summary_path.parent, summary)
    failed = {f.config.content_hash(): f.error for f in failures}
    rows = []
    for config in sweep_plan.members:
        h = config.content_hash()
        row = {column_name(k): grid_value(config, k) for k in spec.grid}
        row["seed"] = config.train.seed
        if h in by_hash:
            run_dir, summary = by_hash[h]
            row.update(comparison_row(run_dir, summary, sweep_plan.directory))
        else:
            row.update({"status": "failed" if h in failed else "pending",
                        "error": failed.get(h)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    results.write_csv(sweep_plan.directory / "comparison.csv", frame)
    return frame


TARGET_ACCURACY = 0.9


def comparison_row(run_dir: Path, summary: dict, root: Path) -> dict:
    verdict = summary.get("verdict") or {}
    final = summary.get("final") or {}
    row = {
        "run_id": summary.get("run_id"), "path": str(run_dir.relative_to(root)),
        "status": summary.get("status"), "verdict": verdict.get("verdict"),
        "verdict_layer": verdict.get("layer"), "verdict_step": verdict.get("step"),
        "log10_ratio_init": verdict.get("log10_ratio_init"),
        "log10_ratio_end": verdict.get("log10_ratio_end"),
        "train_accuracy": final.get("train_accuracy"), "val_accuracy": final.get("val_accuracy"),
        "test_accuracy": final.get("test_accuracy"),
        "steps_to_target": steps_to(run_dir / "metrics.csv", TARGET_ACCURACY),
        "diverged_step": verdict.get("step") if verdict.get("verdict") == "diverged" else None,
        "train_seconds": final.get("train_seconds"), "error": summary.get("error"),
    }
    theory = summary.get("theory") or {}
    for key in ("predicted_log10_ratio", "measured_log10_ratio", "chi", "depth_scale"):
        if key in theory:
            row[key] = theory[key]
    return row


def steps_to(metrics_csv: Path, target: float) -> int | None:
    """The first evaluated step at which validation accuracy reached `target`."""
    try:
        metrics = pd.read_csv(metrics_csv)
    except (OSError, pd.errors.EmptyDataError):
        return None
    if "val_accuracy" not in metrics:
        return None
    hit = metrics[metrics.val_accuracy >= target]
    return int(hit.step.iloc[0]) if len(hit) else None


def column_name(key: str) -> str:
    return key.replace(".", "_")


def grid_value(config: Config, key: str) -> Any:
    value = _dig(config.to_dict(), key)
    return describe_value(value) if isinstance(value, dict) else value


def ranked(frame: pd.DataFrame, grid_columns: list[str]) -> pd.DataFrame:
    """Mean and spread over seeds per grid point, best test accuracy first."""
    if "test_accuracy" not in frame:
        return frame
    keys = grid_columns or ["status"]
    done = frame[frame.status.isin(DONE)]
    if not len(done):
        return pd.DataFrame()
    table = done.groupby(keys, dropna=False, sort=False).agg(
        runs=("seed", "count"),
        verdict=("verdict", lambda v: "/".join(sorted(set(v)))),
        log10_ratio_init=("log10_ratio_init", "mean"),
        test_accuracy=("test_accuracy", "mean"),
        test_accuracy_std=("test_accuracy", "std"),
        steps_to_target=("steps_to_target", "mean"),  # over the seeds that reached it
        reached_target=("steps_to_target", lambda s: int(s.notna().sum())),
        diverged=("diverged_step", lambda s: int(s.notna().sum())),
    ).reset_index()
    return table.sort_values("test_accuracy", ascending=False, kind="stable")
