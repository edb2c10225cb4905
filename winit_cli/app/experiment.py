"""One experiment end to end: data, training, files. `winit run` and sweeps both come here.

Several configs that agree on `train.SHARED_KEYS` train together as one stacked model; each
still gets its own ordinary run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from winit_cli.config import Config, dump_yaml
from winit_cli.datasets.loader import ProgressFn as DownloadProgress
from winit_cli.datasets.loader import Splits, load_mnist, make_splits
from winit_cli.measure.diagnose import Verdict, diagnose
from winit_cli.measure.predict import predict_run
from winit_cli.measure.probes import COLUMNS
from winit_cli.records import files as results
from winit_cli.training.loop import MemberLog, ProgressFn, flushes_subnormals, resolve_device, train

# The validation split is fixed, not drawn from the run's seed, so that every run of every sweep
# is validated on the same examples.
SPLIT_SEED = 0


@dataclass
class RunOutcome:
    run_dir: Path
    summary: dict
    layers: pd.DataFrame


def load_splits(config: Config, data_dir: Path | None = None,
                on_download: DownloadProgress | None = None) -> Splits:
    raw = load_mnist(data_dir, config.data.dir, on_progress=on_download)
    return make_splits(raw, config.data.val_size, config.data.subset, seed=SPLIT_SEED)


def layers_frame(log: MemberLog) -> pd.DataFrame:
    if not log.layer_values:
        return pd.DataFrame(columns=["step", "epoch", "layer", "fan_in", "fan_out", *COLUMNS])
    values = np.stack([v.numpy() for v in log.layer_values])  # [records, L, Q]
    n, depth, _ = values.shape
    sizes = [784, *log.config.model.hidden_widths(), 10]
    steps = np.array(log.layer_steps)
    frame = pd.DataFrame({
        "step": np.repeat(steps[:, 0], depth),
        "epoch": np.repeat(steps[:, 1], depth),
        "layer": np.tile(np.arange(1, depth + 1), n),
        "fan_in": np.tile(sizes[:-1], n),
        "fan_out": np.tile(sizes[1:], n),
    })
    for j, name in enumerate(COLUMNS):
        frame[name] = values[:, :, j].reshape(-1)
    return frame


def verdict_of(log: MemberLog, layers: pd.DataFrame) -> Verdict:
    d = log.config.diagnose
    return diagnose(layers, vanish_decades=d.vanish_decades, explode_decades=d.explode_decades,
                    diverged_step=log.diverged_step, diverged_layer=log.diverged_layer)


def input_second_moment(splits: Splits, chunk: int = 8192) -> float:
    """mean_i E[x_i^2] over the training inputs: where the mean-field length map starts."""
    x = splits.x_train
    total = sum(float(x[i:i + chunk].double().pow(2).sum()) for i in range(0, len(x), chunk))
    return total / x.numel()


class RunFiles:
    """The run directory of one member, from creation to the final summary."""

    def __init__(self, config: Config, env: dict, input_moment: float):
        self.config = config
        self.input_moment = input_moment
        self.started = results.utcnow()
        self.dir = results.new_run_dir(config, self.started)
        self.env = env
        results.atomic_write(self.dir / "config.yaml", dump_yaml(config))
        self.write_summary({"status": "running"})

    def base_summary(self) -> dict:
        c = self.config
        return {
            "run_id": self.dir.name, "name": c.name, "config_hash": c.content_hash(),
            "started_at": self.started.isoformat(timespec="seconds"),
            "scheme": c.init.scheme, "activation": c.model.activation, "depth": c.model.depth,
            "width": c.model.width if c.model.widths is None else c.model.widths,
            "seed": c.train.seed, **self.env,
        }

    def write_summary(self, extra: dict) -> None:
        results.write_json(self.dir / "summary.json", {**self.base_summary(), **extra})

    def write_tables(self, log: MemberLog, layers: pd.DataFrame | None = None) -> pd.DataFrame:
        layers = layers_frame(log) if layers is None else layers
        results.write_csv(self.dir / "layers.csv", layers)
        results.write_csv(self.dir / "metrics.csv", pd.DataFrame(log.metrics))
        return layers

    def finish(self, log: MemberLog, error: str | None = None) -> RunOutcome:
        layers, theory = predict_run(self.config, layers_frame(log), self.input_moment)
        self.write_tables(log, layers)
        verdict = verdict_of(log, layers)
        summary = {**self.base_summary(), "status": log.status, "verdict": verdict.to_dict(),
                   "verdict_text": verdict.describe(), "theory": theory,
                   # an interrupted run has no final evaluation, only how far it got
                   "final": _finite(log.final or {"steps": log.layer_steps[-1][0]
                                                  if log.layer_steps else 0}),
                   "finished_at": results.utcnow().isoformat(timespec="seconds")}
        if error:
            summary["error"] = error
        results.write_json(self.dir / "summary.json", summary)
        results.append_index(self.config.output_dir, {
            **summary, "verdict": verdict.verdict, "path": str(self.dir),
            "test_accuracy": log.final.get("test_accuracy"),
        })
        return RunOutcome(self.dir, summary, layers)


def run_group(configs: list[Config], splits: Splits, *, device: str,
              on_progress: ProgressFn | None = None,
              on_start: Callable[[list[Path]], None] | None = None) -> list[RunOutcome]:
    """Train configs that share a shape as one stacked model; write one run directory each."""
    env = results.environment(str(resolve_device(device)), flushes_subnormals(configs[0]))
    moment = input_second_moment(splits)
    files = [RunFiles(c, env, moment) for c in configs]
    if on_start:
        on_start([f.dir for f in files])
    logs = [MemberLog(c) for c in configs]

    def checkpoint(current: list[MemberLog]) -> None:
        for f, log in zip(files, current, strict=True):
            f.write_tables(log)

    try:
        logs = train(configs, splits, on_progress=on_progress, on_checkpoint=checkpoint,
                     logs=logs)
    except KeyboardInterrupt:
        _finish_unfinished(files, logs, "interrupted", "interrupted by the user")
        raise
    except Exception as e:
        _finish_unfinished(files, logs, "failed", f"{type(e).__name__}: {e}")
        raise
    return [f.finish(log) for f, log in zip(files, logs, strict=True)]


def _finish_unfinished(files: list[RunFiles], logs: list[MemberLog], status: str,
                       error: str) -> None:
    """Write what was measured; a member that had already diverged keeps that status."""
    for f, log in zip(files, logs, strict=True):
        if log.status in ("running", "interrupted"):
            log.status = status
        f.finish(log, error=None if log.status == "diverged" else error)


def _finite(d: dict) -> dict:
    """JSON has no NaN: a float that could not be measured is null (counts stay integers)."""
    return {k: results.finite(v) if isinstance(v, float) else v for k, v in d.items()}
