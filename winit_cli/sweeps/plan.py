"""Planning a sweep: its folder, which members are done, which to (re)do, and how they group.

    <output_dir>/sweeps/<name>-<hash6>/sweep.yaml        the spec (base config + grid + seeds)
                                      /runs/<run-id>/    one ordinary run directory per member
                                      /comparison.csv    one row per member

The sweep directory is named by the spec's content, so rerunning the same command finds it and
skips members whose run finished (matched by their resolved config's hash); unfinished ones are
removed and redone. Members that share a shape train together as one stacked model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from winit_cli.config import Config
from winit_cli.errors import ConfigError, ResultsError
from winit_cli.records.reader import read_record
from winit_cli.sweeps.spec import SweepSpec, _dig

MAX_GROUP = 8  # members trained as one stacked model


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
            record = read_record(summary_path.parent)
        except ResultsError:
            record = None
        if record is not None and record.status.finished and record.config_hash in hashes:
            done[record.config_hash] = summary_path.parent
        else:
            stale.append(summary_path.parent)
    return SweepPlan(directory, members, done, stale)


def groups(configs: list[Config]) -> list[list[Config]]:
    """Members that may train as one stacked model (training.SHARED_KEYS agree), at most
    MAX_GROUP to a group."""
    from winit_cli.training.loop import SHARED_KEYS

    by_key: dict[str, list[Config]] = {}
    for c in configs:
        d = c.to_dict()
        key = json.dumps([_dig(d, k) for k in SHARED_KEYS], sort_keys=True, default=str)
        by_key.setdefault(key, []).append(c)
    return [g[i:i + MAX_GROUP] for g in by_key.values() for i in range(0, len(g), MAX_GROUP)]
