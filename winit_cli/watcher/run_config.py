"""What a watched run's folder says about it: config.yaml's content. The folder itself is a CLI
run's (records/writer.py `RunWriter`, named by `config.content_hash` of this config), with its
four files, so that `winit report`, `winit export` and anything else that reads run folders read
it like any other.

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

from pathlib import Path
from typing import Any

import torch

from winit_cli.records.rows import WATCH_SOURCE
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
        "name": name, "source": WATCH_SOURCE,
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
