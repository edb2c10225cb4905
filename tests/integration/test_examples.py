"""The examples run as a user would run them: examples/cnn_mnist.py, a few steps on real MNIST,
prints the verdict and leaves a finished run folder that `winit report` reads."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from winit_cli.app.report import build_report

pytestmark = [pytest.mark.mnist, pytest.mark.slow]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_cnn_mnist_example_runs(tmp_path, mnist_path):
    """A tiny run of the CNN example: verdict and folder printed, the folder complete, with the
    recorded steps the schedule promises and the test accuracy in its record."""
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "cnn_mnist.py"), "--steps", "7", "--every", "3",
         "--out", str(out), "--data-dir", str(mnist_path), "--test-examples", "500",
         "--device", "cpu", "--tensorboard"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    folder = Path(re.search(r"run folder: (.+)", proc.stdout).group(1).strip())
    summary = json.loads((folder / "summary.json").read_text())
    assert f"verdict: {summary['verdict_text']}" in proc.stdout
    assert summary["status"] == "complete" and summary["model_kind"] == "SmallCNN"
    assert summary["final"]["steps"] == 7 and 0 <= summary["final"]["test_accuracy"] <= 1
    assert list(folder.glob("events.out.tfevents.*"))
    report = build_report([out])
    assert report.summary.verdict.tolist() == [summary["verdict"]["verdict"]]
    assert sorted(set(pd.read_csv(folder / "layers.csv").step)) == [0, 3, 6]
