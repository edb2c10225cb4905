"""Sweep specs: a base config crossed with a grid of values and seeds.

A spec comes from a sweep YAML (name, base, grid, seeds) or from `winit compare schemes`
options; `members()` expands it into validated configs, one per grid point and seed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from winit_cli.config import Config, apply_override, dig, validate
from winit_cli.errors import ConfigError, shorten
from winit_cli.yamlfile import Refused, describe_error, load_yaml, read_yaml

# The built-in comparison: the schemes users come for, on a network deep enough to tell them apart.
DEFAULT_SCHEMES = ("normal", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal",
                   "mean1_normal", "normal_l2", "torch_default")
DEFAULT_BASE: dict[str, Any] = {
    "name": "compare",
    "model": {"depth": 20, "width": 256, "activation": "relu"},
    "train": {"epochs": 1, "optimizer": "momentum", "lr": 0.01},
    "record": {"every": 10, "eval_every": 50},
}

MAX_MEMBERS = 10_000  # runs in one sweep: a typo in a grid should not plan a billion
# A sweep's name is its folder's (with a 7-character digest) and starts each member's run name:
# well within the 255 bytes a file name may have.
MAX_NAME_CHARS = 100


@dataclass
class SweepSpec:
    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"sweep name {shorten(self.name)}: expected a name")
        if len(self.name) > MAX_NAME_CHARS:
            raise ConfigError(f"sweep name {shorten(self.name)}: {len(self.name):,} characters; "
                              f"at most {MAX_NAME_CHARS} (it names the sweep's folder)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "base": self.base, "grid": self.grid, "seeds": self.seeds}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str)
                              .encode()).hexdigest()

    def members(self) -> list[Config]:
        """Every grid point x seed, validated; the order is the grid's, seeds innermost."""
        keys = list(self.grid)
        count = math.prod(len(v) for v in self.grid.values()) * len(self.seeds)
        if count > MAX_MEMBERS:
            raise ConfigError(f"sweep {self.name}: {count:,} runs; at most {MAX_MEMBERS:,} in "
                              "one sweep")
        configs = []
        for values in itertools.product(*(self.grid[k] for k in keys)):
            point = json.loads(json.dumps(self.base, default=str))  # a deep copy
            # A scheme first: the parameters set by the base or by other axes then apply to
            # it, those it does not take being dropped (they belong to another scheme).
            for key, value in sorted(zip(keys, values, strict=True),
                                     key=lambda kv: kv[0] != "init.scheme"):
                if key == "init.scheme":
                    init = point.setdefault("init", {})
                    accepted = _scheme_params(value)
                    init["params"] = {k: v for k, v in (init.get("params") or {}).items()
                                      if k in accepted}
                apply_override(point, f"{key}={_yaml_scalar(value)}")
            label = "_".join(_label(v) for v in values) or "base"
            text = json.dumps(point)  # the grid point, once; each seed copies it
            for seed in self.seeds:
                raw = json.loads(text)
                # a seed is an int already: set, not written out and read back as YAML (which
                # was most of planning a 10,000-member sweep)
                train = raw.setdefault("train", {})
                if not isinstance(train, dict):
                    raise ConfigError(f"sweep {self.name}: train is not a section")
                train["seed"] = seed
                raw["name"] = f"{self.name}_{label}_s{seed}"
                configs.append(validate(raw, f"sweep {self.name} ({label}, seed {seed})"))
        return configs


def _scheme_params(name: Any) -> set[str]:
    from winit_cli.inits import get_scheme  # the registry imports torch: only when needed

    return set(get_scheme(str(name)).defaults)


def parse_value(text: str) -> Any:
    """A grid value from the command line, read as YAML: '20' is an int, 'relu' a string."""
    try:
        return load_yaml(text)
    except Refused as e:
        raise ConfigError(f"--grid value {shorten(text)}: {describe_error(e)}") from None
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
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = list(range(seeds)) if 0 < seeds <= MAX_MEMBERS else []
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{path}: seeds must be a count or a list of integers "
                          f"(got {shorten(seeds)})")
    return SweepSpec(str(raw.get("name", Path(path).stem)), base, grid, seeds)


def _read_base(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file (read with every bound of yamlfile), or a one-line
    ConfigError."""
    base = read_yaml(Path(path), "sweep or config file") or {}
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


def grid_value(config: Config, key: str) -> Any:
    value = dig(config.to_dict(), key)
    return describe_value(value) if isinstance(value, dict) else value
