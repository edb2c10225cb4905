"""Planning a sweep: its folder, which members are done, which to (re)do, and how they group.

    <output_dir>/sweeps/<name>-<hash6>/sweep.yaml        the spec (base config + grid + seeds)
                                      /runs/<run-id>/    one ordinary run directory per member
                                      /comparison.csv    one row per member

The sweep directory is named by the spec's content, so rerunning the same command finds it and
skips members whose run finished (matched by their resolved config's hash); unfinished ones are
removed and redone, by whichever process claims the member (sweeps/claims.py): planning itself
removes nothing, since another process may be writing those folders. Members that share a shape
train together as one stacked model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from winit_cli.config import Config, dig, load_config
from winit_cli.errors import ConfigError, ResultsError, WinitError
from winit_cli.records.reader import read_record
from winit_cli.records.schema import RunRecord
from winit_cli.sweeps.spec import SweepSpec

MAX_GROUP = 8  # members trained as one stacked model


@dataclass
class SweepPlan:
    directory: Path
    members: list[Config]
    done: dict[str, Path]  # config hash -> completed run dir
    stale: list[Path]  # unfinished run dirs, redone by whoever claims their member
    unfinished: dict[str, str]  # config hash -> status of its unfinished run (interrupted...)

    @cached_property
    def hashes(self) -> list[str]:
        """Each member's config hash, worked out once (10,000 members take seconds to hash)."""
        return [c.content_hash() for c in self.members]

    @property
    def todo(self) -> list[Config]:
        return [c for c, h in zip(self.members, self.hashes, strict=True) if h not in self.done]


@dataclass
class MemberFolder:
    path: Path
    record: RunRecord | None  # None: summary.json unreadable (attributed by config.yaml)

    @property
    def finished(self) -> bool:
        return self.record is not None and self.record.status.finished


def member_folders(runs_dir: Path) -> dict[str, list[MemberFolder]]:
    """The run folders under a sweep's runs/, by config hash. A folder whose summary.json is
    damaged belongs to the member its config.yaml describes; one with neither readable belongs
    to none (and is left alone)."""
    found: dict[str, list[MemberFolder]] = {}
    if not runs_dir.is_dir():
        return found
    for path in sorted(p for p in runs_dir.iterdir() if p.is_dir() and p.name[0] != "."):
        try:
            record = read_record(path)
            config_hash = record.config_hash
        except ResultsError:
            record = None
            try:
                config_hash = load_config(path / "config.yaml").content_hash()
            except WinitError:
                continue
        found.setdefault(config_hash, []).append(MemberFolder(path, record))
    return found


def plan(spec: SweepSpec, output_dir: Path | None = None) -> SweepPlan:
    members = spec.members()
    hashes = [c.content_hash() for c in members]
    if len(set(hashes)) != len(hashes):
        raise ConfigError(f"sweep {spec.name}: the grid produces identical runs; remove repeats")
    root = Path(output_dir or members[0].output_dir) / "sweeps"
    directory = root / f"{spec.name}-{spec.digest()[:6]}"
    members = [c.model_copy(update={"output_dir": directory / "runs"}) for c in members]
    done, stale, unfinished = {}, [], {}
    for config_hash, folders in member_folders(directory / "runs").items():
        for folder in folders:
            if folder.finished and config_hash in hashes:
                done[config_hash] = folder.path
            else:
                stale.append(folder.path)
                unfinished[config_hash] = folder.record.status.value if folder.record \
                    else "damaged"
    sweep_plan = SweepPlan(directory, members, done, stale, unfinished)
    sweep_plan.__dict__["hashes"] = hashes  # output_dir is no part of a hash
    return sweep_plan


def groups(configs: list[Config]) -> list[list[Config]]:
    """Members that may train as one stacked model (training.SHARED_KEYS agree), at most
    MAX_GROUP to a group."""
    from winit_cli.training.loop import SHARED_KEYS

    by_key: dict[str, list[Config]] = {}
    for c in configs:
        d = c.to_dict()
        key = json.dumps([dig(d, k) for k in SHARED_KEYS], sort_keys=True, default=str)
        by_key.setdefault(key, []).append(c)
    return [g[i:i + MAX_GROUP] for g in by_key.values() for i in range(0, len(g), MAX_GROUP)]
