"""Every terminal table fits 80 columns with every number whole, and widens on wide terminals.

Real runs on MNIST: a sweep of three schemes (one diverges, one vanishes) at two depths and two
seeds, plus two loose runs with another budget; then `winit run`, `winit compare`, `winit report`
and `winit schemes` are drawn at 80 and at 200 columns. A cut cell shows as `…`: there must be
none, and the numbers the files hold must appear whole in the output.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from winit_cli.cli import app, common
from winit_cli.records.reader import load_run
from winit_cli.runner.group import RunOutcome
from winit_cli.views.terminal import run_report
from winit_cli.views.words import pct, sci, signed

WIDTHS = (80, 200)
SMALL = ["--set", "model.width=64", "--set", "data.subset=1000", "--set", "data.val_size=1000",
         "--set", "train.steps=30", "--set", "record.every=5", "--set", "record.eval_every=10"]
SWEEP = ["compare", "schemes", "--schemes", "he_normal,normal,mean1_normal", "--depths", "3,8",
         "--seeds", "2", "--name", "tables", *SMALL]


def invoke(width: int, *args: str, env: dict | None = None, monkeypatch=None):
    """The CLI at a terminal `width` columns wide."""
    monkeypatch.setattr(common, "console", Console(width=width, force_terminal=False))
    return CliRunner().invoke(app, list(args), env={"COLUMNS": str(width), **(env or {})})


def assert_fits(text: str, width: int) -> None:
    assert "…" not in text, f"a cell was cut at {width} columns:\n{text}"
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, f"lines wider than {width}: {long}"


@pytest.fixture(scope="module")
def results(tmp_path_factory, mnist_path: Path) -> Path:
    """The sweep (12 runs) and two loose runs of 40 steps (epochs set differently, overridden)."""
    out = tmp_path_factory.mktemp("tables")
    env = {"WINIT_DATA_DIR": str(mnist_path)}
    with pytest.MonkeyPatch.context() as mp:
        result = invoke(80, *SWEEP, "--set", f"output_dir={out}", env=env, monkeypatch=mp)
        assert result.exit_code == 0, result.output + repr(result.exception)
        (out / "sweep80.txt").write_text(result.stdout)
        for scheme, epochs in (("he_normal", 1), ("normal", 2)):
            result = invoke(80, "run", str(Path(__file__).parents[2] / "configs/quickstart.yaml"),
                            *SMALL, "--set", "train.steps=40", "--set", f"train.epochs={epochs}",
                            "--set", "model.depth=3", "--set", f"init.scheme={scheme}",
                            "--set", f"output_dir={out / 'loose'}", "--quiet", env=env,
                            monkeypatch=mp)
            assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def _sweep_dir(results: Path) -> Path:
    (sweep,) = (results / "sweeps").iterdir()
    return sweep


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_run_table_fits_with_every_norm_whole(results, width):
    """The per-layer table of `winit run` (today's 115 columns were cut to `2.47e-…` at 80)."""
    runs = _sweep_dir(results) / "runs"
    run = load_run(next(p for p in sorted(runs.iterdir()) if "mean1" in p.name), runs)
    console = Console(width=width, record=True, force_terminal=False)
    run_report(console, RunOutcome(run.dir, run.record, run.layers))
    text = console.export_text()
    assert_fits(text, width)
    digits = 3 if width >= 120 else 2
    for _, row in run.layers[run.layers.step == 0].iterrows():
        assert sci(row.act_grad_norm, digits) in text and sci(row.weight_grad_norm, digits) in text
    assert ("|W|" in text) == (width >= 120)  # more columns only where there is room
    assert f"winitreport{run.dir}" in "".join(text.split())  # the next command, whole


@pytest.mark.mnist
@pytest.mark.parametrize("width", WIDTHS)
def test_compare_ranking_fits_and_ranks_within_groups(results, width, monkeypatch, mnist_path):
    """`winit compare`'s ranking at both widths; the rerun finds the sweep complete and says
    so instead of drawing empty progress bars."""
    text = (results / "sweep80.txt").read_text() if width == 80 else None
    if text is None:
        result = invoke(width, *SWEEP, "--set", f"output_dir={results}",
                        env={"WINIT_DATA_DIR": str(mnist_path)}, monkeypatch=monkeypatch)
        assert result.exit_code == 0, result.output
        text = result.stdout
        assert "all 12 runs are already done" in text and "0/0" not in text
    assert_fits(text, width)
    frame = pd.read_csv(_sweep_dir(results) / "comparison.csv")
    for depth in (3, 8):
        assert re.search(rf"mnist, mlp relu, depth {depth}, width 64: ranked", text)
        done = frame[(frame.model_depth == depth) & frame.test_accuracy.notna()]
        for _, accuracy in done.groupby("scheme").test_accuracy.mean().items():
            assert pct(accuracy) in text
    assert "model_depth" not in text  # the depth is in the title, once


@pytest.mark.mnist
@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits_and_never_ranks_across_budgets(results, width, monkeypatch, tmp_path):
    """`winit report`: one table per group; the 40-step runs are a group of their own (their
    epochs, overridden by steps, appear nowhere), and labels carry no float-formatted keys."""
    result = invoke(width, "report", str(results), "--out", str(tmp_path / "r"),
                    monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert_fits(text, width)
    summary = pd.read_csv(tmp_path / "r" / "summary.csv")
    for _, row in summary.iterrows():
        assert pct(row.test_accuracy) in text
        assert signed(row.log10_first_to_last_measured, 2 if width >= 120 else 1) in text
    flat = " ".join(text.split())
    titles = re.findall(r"mnist, mlp relu, depth \d+, width 64, \d+ steps", flat)
    assert sorted(set(titles)) == ["mnist, mlp relu, depth 3, width 64, 30 steps",
                                   "mnist, mlp relu, depth 3, width 64, 40 steps",
                                   "mnist, mlp relu, depth 8, width 64, 30 steps"]
    assert not re.search(r"epoch|train_|=\d+\.0\b", flat.replace(str(tmp_path), ""))
    assert flat.count("recommendation:") == 3
    document = (tmp_path / "r" / "report.md").read_text()
    assert "train_steps=" not in document and "epoch" not in document


@pytest.mark.parametrize("width", WIDTHS)
def test_schemes_table_fits_with_xi(width, monkeypatch):
    """`winit schemes` shows sigma_w^2, chi* and the depth scale xi for every scheme."""
    result = invoke(width, "schemes", "--activation", "relu", monkeypatch=monkeypatch)
    assert result.exit_code == 0, result.output
    assert_fits(result.stdout, width)
    xavier = next(line for line in result.stdout.splitlines() if line.startswith("xavier_normal"))
    assert f"{1 / math.log(2):.4g}" in xavier  # chi* = 1/2: xi = 1/ln 2


@pytest.mark.mnist
@pytest.mark.slow
def test_json_is_the_only_thing_on_stdout(results, monkeypatch, tmp_path):
    """--json on compare and report: stdout parses as one JSON document."""
    sweep = invoke(80, *SWEEP, "--set", f"output_dir={results}", "--json",
                   monkeypatch=monkeypatch)
    assert sweep.exit_code == 0, sweep.output
    data = json.loads(sweep.stdout)
    assert len(data["runs"]) == 12 and Path(data["comparison_csv"]).is_file()
    report = invoke(80, "report", str(_sweep_dir(results)), "--out", str(tmp_path / "j"),
                    "--json", monkeypatch=monkeypatch)
    assert report.exit_code == 0, report.output
    data = json.loads(report.stdout)
    summary = pd.read_csv(tmp_path / "j" / "summary.csv")
    assert [r["test_accuracy"] for r in data["runs"]] == [
        None if pd.isna(x) else x for x in summary.test_accuracy]
    assert len(data["groups"]) == 2 and all(g["recommendation"] for g in data["groups"])
    quiet = invoke(80, "report", str(_sweep_dir(results)), "--out", str(tmp_path / "q"), "-q",
                   monkeypatch=monkeypatch)
    assert quiet.stdout.strip() == str(tmp_path / "q")
