"""`winit widths` end to end on MNIST: coord.csv and lr_transfer.csv with the documented
columns, the coordinate sizes equal to mean |z| computed by plain torch from a run's own
config, and a rerun that trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from winit_cli.cli import app

pytestmark = [pytest.mark.mnist, pytest.mark.slow]


def _invoke(*args: str):
    return CliRunner().invoke(app, ["widths", *args], catch_exceptions=False)


def test_widths_writes_coord_and_lr_transfer(tmp_path: Path, winit_data_dir: Path,
                                             monkeypatch: pytest.MonkeyPatch):
    args = ["--widths", "16,32", "--parametrizations", "standard,mup", "--lrs", "0.001,0.004",
            "--steps", "2", "--set", f"output_dir={tmp_path}", "--set", "data.subset=256",
            "--set", "data.val_size=100", "--json"]
    result = _invoke(*args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    sweep = Path(out["sweep_dir"])
    coord = pd.read_csv(sweep / "coord.csv")
    assert list(coord.columns) == ["parametrization", "width", "lr", "layer", "step", "coord"]
    assert sorted(coord.step.unique()) == [0, 1, 2]
    assert len(coord) == 2 * 2 * 2 * 4 * 3  # parametrizations x widths x lrs x layers x steps
    lr = pd.read_csv(sweep / "lr_transfer.csv")
    assert list(lr.columns) == ["parametrization", "width", "lr", "train_loss",
                                "test_accuracy", "best"]
    assert lr.groupby(["parametrization", "width"]).best.sum().tolist() == [1, 1, 1, 1]
    assert (sweep / "coord.png").is_file() and (sweep / "lr_transfer.png").is_file()
    assert len(out["verdicts"]) == 2
    again = json.loads(_invoke(*args).stdout)
    assert again["slopes"] == out["slopes"]
    report = CliRunner().invoke(app, ["report", str(sweep), "--out", str(tmp_path / "report")],
                                catch_exceptions=False)
    assert report.exit_code == 0, report.output
    drawn = sorted(p.name for p in (tmp_path / "report" / "plots").glob(f"*_{sweep.name}.png"))
    assert drawn == [f"coord_{sweep.name}.png", f"lr_transfer_{sweep.name}.png"]
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Width: coordinate check and learning-rate transfer" in text
    assert "best lr moves" in text
    # the next report, the sweep's tables unchanged, copies the figures the first one drew
    import winit_cli.app.widths as widths

    monkeypatch.setattr(widths, "draw_files", lambda *a, **k: pytest.fail("drawn again"))
    again = CliRunner().invoke(app, ["report", str(sweep), "--out", str(tmp_path / "again")],
                               catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "again" / "report.md").read_text() == text
    for name in drawn:
        assert (tmp_path / "again" / "plots" / name).read_bytes() == \
            (tmp_path / "report" / "plots" / name).read_bytes()
