"""Run folders made by hand for the store's tests: the golden run's layers.csv and config.yaml
(tests/golden/), a summary.json written here, and a metrics.csv whose validation accuracy
crosses 0.9 at a step chosen per run, so that every expected value is known without winit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

GOLDEN = Path(__file__).parent / "golden"


def summary(run_id: str, scheme: str, seed: int, width: int, accuracy: float) -> dict:
    return {
        "schema_version": 2, "run_id": run_id, "name": run_id, "config_hash": f"{run_id:0>64}",
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:01:00+00:00",
        "status": "complete", "scheme": scheme, "activation": "tanh", "depth": 5,
        "width": width, "seed": seed, "dataset": "mnist", "model_kind": "mlp",
        "verdict": {"verdict": "healthy", "fraction_of_steps": 0.0, "log10_ratio_init": -0.1,
                    "log10_ratio_end": 0.05, "log10_first_to_last": -0.2,
                    "zero_grad_layers_init": 0},
        "final": {"train_loss": 0.5, "train_accuracy": 0.8, "val_loss": 0.4,
                  "val_accuracy": 0.85, "test_loss": 0.45, "test_accuracy": accuracy,
                  "steps": 40, "train_seconds": 1.5},
        "environment": {"python": "3", "torch": "2", "winit": "0", "platform": "linux",
                        "device": "cpu", "threads": 1, "flush_subnormals": True},
    }


def make_run(root: Path, i: int, groups: int = 2, crossed_at: int | None = None) -> Path:
    """Run `i`: scheme and seed from i, one of `groups` groups by width; its val accuracy
    reaches 0.9 at step `crossed_at` (never, where None)."""
    scheme = ("xavier_uniform", "he_normal", "orthogonal")[i % 3]
    seed, width = i // 3, 64 + i % groups
    folder = root / f"run-{i:03d}"
    folder.mkdir(parents=True)
    shutil.copyfile(GOLDEN / "layers.csv", folder / "layers.csv")
    (folder / "config.yaml").write_text(
        (GOLDEN / "config.yaml").read_text().replace("xavier_uniform", scheme)
        .replace("seed: 3", f"seed: {seed}").replace("width: 64", f"width: {width}"))
    rows = ["step,epoch,train_loss,train_accuracy,val_loss,val_accuracy"]
    for step in range(0, 40, 10):
        reached = crossed_at is not None and step >= crossed_at
        rows.append(f"{step},0,1.0,0.5,0.9,{0.95 if reached else 0.5}")
    (folder / "metrics.csv").write_text("\n".join(rows) + "\n")
    (folder / "summary.json").write_text(json.dumps(
        summary(folder.name, scheme, seed, width, 0.8 + i / 1000)))
    return folder
