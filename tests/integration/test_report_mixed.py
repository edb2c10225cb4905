"""A sweep, a `winit.watch` CNN run (examples/cnn_mnist.py) and a resmlp run under one folder:
`winit report` exits 0 and names each (a watched run's class, layer list and optimizer settings
once made a 281-character figure name the filesystem refused, and put the optimizer's settings
into every group's title)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from winit_cli.cli import app

pytestmark = [pytest.mark.mnist, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
TINY = ["data.subset=500", "data.val_size=200", "model.width=32", "train.steps=12",
        "record.every=4"]


@pytest.fixture(scope="module")
def results(tmp_path_factory, mnist_path: Path) -> Path:
    root = tmp_path_factory.mktemp("results")
    env = {"WINIT_DATA_DIR": str(mnist_path), "XDG_CACHE_HOME": str(root / "no-cache")}
    runner = CliRunner()
    sweep = runner.invoke(app, ["compare", "schemes", "--schemes", "he_normal,xavier_normal",
                                "--depths", "4,6", "-q", "--set", f"output_dir={root}",
                                *(a for s in TINY for a in ("--set", s))], env=env)
    assert sweep.exit_code == 0, sweep.output
    resmlp = runner.invoke(app, ["run", str(REPO / "configs" / "quickstart.yaml"), "-q",
                                 "--set", "model.kind=resmlp", "--set", "model.depth=6",
                                 "--set", f"output_dir={root}",
                                 *(a for s in TINY for a in ("--set", s))], env=env)
    assert resmlp.exit_code == 0, resmlp.output
    cnn = subprocess.run(
        [sys.executable, str(REPO / "examples" / "cnn_mnist.py"), "--steps", "6", "--every",
         "3", "--out", str(root), "--data-dir", str(mnist_path), "--test-examples", "200",
         "--device", "cpu"], capture_output=True, text=True, timeout=600)
    assert cnn.returncode == 0, cnn.stderr
    return root


def test_report_names_the_sweep_the_watch_run_and_the_resmlp_run(results: Path):
    result = CliRunner().invoke(app, ["report", str(results), "-q"])
    assert result.exit_code == 0, result.output
    report = results / "report"
    text = (report / "report.md").read_text()
    headings = [line[4:] for line in text.splitlines() if line.startswith("### ")
                and not line.startswith("### Runs")]
    # the groups, as the run folders' own records say: built here from summary.json
    records = [json.loads(p.read_text()) for p in results.rglob("summary.json")
               if "report" not in p.parts]
    kinds = sorted({(r["model_kind"], r["depth"]) for r in records})
    assert kinds == [("SmallCNN", 4), ("mlp", 4), ("mlp", 6), ("resmlp", 6)]
    assert len(headings) == len(kinds)
    for kind, depth in kinds:
        assert sum(f", {kind} " in h and f"depth {depth}," in h for h in headings) == 1, headings
    cnn = next(h for h in headings if "SmallCNN" in h)
    # what groups a watched run: class, Linear/Conv count, width; not the optimizer's settings
    assert cnn == "mnist, SmallCNN relu, depth 4, width 16-32-64", cnn
    assert "use user's init" in text  # the init the user did not name is not "unknown"
    summary = pd.read_csv(report / "summary.csv")
    assert len(summary) == len(records) == 6
    for path in (report / "plots").iterdir():
        assert len(path.name) <= 100, path.name
    assert not any("SGD" in h or "lr " in h for h in headings)
