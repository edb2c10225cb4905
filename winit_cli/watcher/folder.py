"""The run folder a watched run writes: the four files of a CLI run, so that `winit report`,
`winit export` and anything else that reads run folders read it like any other.

    <out>/<time>_<name>_<hash6>/config.yaml    what is known of the run (below)
                                metrics.csv    step, epoch, train_loss (mean since the last row)
                                layers.csv     a CLI run's columns, plus the module's `name`
                                summary.json   the run record (records/schema.py)
    <out>/runs.csv                             one line per finished run, appended

config.yaml is not a `winit run` config (there is nothing to rerun): it says what was watched.

    name, source: winit.watch
    model:    kind (the class name), class (with its module), layers (recorded, `name: Type`),
              not_recorded (modules whose own parameters are not recorded)
    init:     scheme (as the caller says; "unknown" if not given), params
    train:    optimizer (class name), lr and the first parameter group's other settings, seed,
              device
    data:     dataset (as the caller says)
    record:   every, tensorboard
    diagnose: vanish_decades, explode_decades
    output_dir
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml

from winit_cli.records.files import atomic_write, write_csv, write_json
from winit_cli.records.index import append_index
from winit_cli.records.schema import RunRecord
from winit_cli.records.writer import make_run_dir, utcnow
from winit_cli.watcher.layers import Layer


def optimizer_settings(optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """The first parameter group's plain settings (lr, momentum, betas, ...), for config.yaml."""
    if optimizer is None:
        return {"optimizer": None}
    group = optimizer.param_groups[0]
    plain = {}
    for key, value in group.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = value.item()
        if isinstance(value, tuple | list) and all(isinstance(v, int | float) for v in value):
            value = list(value)
        if key != "params" and isinstance(value, bool | int | float | str | list | None):
            plain[key] = value
    lr = plain.pop("lr", None)
    return {"optimizer": type(optimizer).__name__, "lr": lr, "optimizer_params": plain}


def run_config(*, name: str, model: torch.nn.Module, layers: list[Layer], unrecorded: list[str],
               optimizer: torch.optim.Optimizer | None, scheme: str, params: dict,
               seed: int, device: str, dataset: str, every: int, tensorboard: bool,
               thresholds: tuple[float, float], out: Path) -> dict[str, Any]:
    cls = type(model)
    return {
        "name": name, "source": "winit.watch",
        "model": {"kind": cls.__name__, "class": f"{cls.__module__}.{cls.__qualname__}",
                  "layers": [f"{layer.name}: {layer.type_name}" for layer in layers],
                  "not_recorded": list(unrecorded)},
        "init": {"scheme": scheme, "params": dict(params)},
        "train": {**optimizer_settings(optimizer), "seed": seed, "device": device},
        "data": {"dataset": dataset},
        "record": {"every": every, "tensorboard": tensorboard},
        "diagnose": {"vanish_decades": thresholds[0], "explode_decades": thresholds[1]},
        "output_dir": str(out),
    }


def config_hash(config: dict[str, Any]) -> str:
    """As `Config.content_hash`: what the run is, not where it was written or what it is called."""
    what = {k: v for k, v in config.items() if k not in ("name", "output_dir")}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


class RunFolder:
    """One run folder, from creation (config.yaml, then a summary saying `running`) to the final
    tables, record and index line. Every file is written atomically."""

    def __init__(self, root: Path, config: dict[str, Any]):
        self.root = Path(root)
        self.started = utcnow()
        self.config_hash = config_hash(config)
        self.dir = make_run_dir(self.root, config["name"], self.config_hash, self.started)
        atomic_write(self.dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))

    def write_summary(self, record: RunRecord) -> None:
        write_json(self.dir / "summary.json", record.to_json())

    def write_tables(self, layers: pd.DataFrame, metrics: pd.DataFrame) -> None:
        write_csv(self.dir / "layers.csv", layers)
        write_csv(self.dir / "metrics.csv", metrics)

    def finish(self, record: RunRecord, layers: pd.DataFrame, metrics: pd.DataFrame
               ) -> RunRecord:
        """Tables first, then the record that points at them, then the index line."""
        self.write_tables(layers, metrics)
        record = record.model_copy(update={"finished_at": utcnow().isoformat(timespec="seconds")})
        self.write_summary(record)
        append_index(self.root, record, self.dir)
        return record
