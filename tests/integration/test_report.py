"""Tests for `winit report` on a small real set of runs, trained once per module on MNIST.

The runs: four ReLU nets of depth 8 (he_normal at two seeds, xavier_normal, normal std 0.01),
one tanh net, and a two-run sweep of depth 4 (he_normal, normal) laid out as sweeps are, plus
two broken run directories. Every check compares the report with the files the runs wrote.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from matplotlib.image import imread
from typer.testing import CliRunner

from winit_cli.app.report import build_report
from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.errors import ResultsError
from winit_cli.runner.group import load_splits, run_group

SWEEP = "depths-0a1b2c"


def _config(out: Path, scheme: str, activation: str = "relu", depth: int = 8, seed: int = 0):
    return load_config(None, [
        f"name={scheme}_{activation}_d{depth}_s{seed}", f"init.scheme={scheme}",
        f"model.activation={activation}", f"model.depth={depth}", "model.width=64",
        "data.subset=1000", "data.val_size=1000", "train.steps=40", "record.every=5",
        "train.optimizer=momentum", "train.lr=0.02", f"train.seed={seed}", f"output_dir={out}",
    ])


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, mnist_path: Path) -> Path:
    root = tmp_path_factory.mktemp("results")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # far faster than 2 contended threads for nets this small
    try:
        splits = load_splits(_config(root, "he_normal"), mnist_path)
        relu = run_group([_config(root, "he_normal"), _config(root, "he_normal", seed=1),
                          _config(root, "xavier_normal"), _config(root, "normal")],
                         splits)
        run_group([_config(root, "xavier_normal", "tanh")], splits)
        sweep = root / "sweeps" / SWEEP
        run_group([_config(sweep / "runs", s, depth=4) for s in ("he_normal", "normal")],
                  splits)
    finally:
        torch.set_num_threads(threads)
    (sweep / "sweep.yaml").write_text(yaml.safe_dump(
        {"name": "depths", "base": {}, "grid": {"init.scheme": ["he_normal", "normal"]},
         "seeds": [0]}))
    assert all(o.record.theory is not None and o.record.theory.applicable for o in relu)
    running = root / "broken_running"
    running.mkdir()
    shutil.copy(relu[0].run_dir / "config.yaml", running / "config.yaml")
    (running / "summary.json").write_text(json.dumps({"run_id": "broken_running",
                                                      "status": "running"}))
    unreadable = root / "broken_unreadable"
    shutil.copytree(relu[0].run_dir, unreadable)
    (unreadable / "summary.json").write_text('{"status": "complete", "verd')
    return root


@pytest.fixture(scope="module")
def report(results_dir: Path, tmp_path_factory):
    return build_report([results_dir], out=tmp_path_factory.mktemp("out") / "report")


def _run_files(results_dir: Path) -> dict[str, dict]:
    return {p.parent.relative_to(results_dir).as_posix(): json.loads(p.read_text())
            for p in results_dir.rglob("summary.json") if "broken" not in str(p)}


@pytest.mark.mnist
@pytest.mark.slow
def test_summary_csv_matches_the_run_files(report, results_dir):
    table = pd.read_csv(report.out / "summary.csv")
    runs = _run_files(results_dir)
    assert sorted(table.path) == sorted(runs) and len(table) == 7
    for column in ("run_id", "path", "sweep", "scheme", "activation", "depth", "width", "seed",
                   "status", "verdict", "verdict_layer", "verdict_step", "log10_ratio_init",
                   "log10_ratio_end", "log10_first_to_last_measured",
                   "log10_first_to_last_predicted", "train_accuracy", "val_accuracy",
                   "test_accuracy", "train_seconds"):
        assert column in table.columns
    for _, row in table.iterrows():
        s = runs[row.path]
        for key in ("run_id", "scheme", "activation", "depth", "width", "seed", "status"):
            assert row[key] == s[key], (row.path, key)
        v = s["verdict"]
        assert row.verdict == v["verdict"]
        for column, want in (("verdict_layer", v["layer"]), ("verdict_step", v["step"]),
                             ("log10_ratio_init", v["log10_ratio_init"]),
                             ("log10_ratio_end", v["log10_ratio_end"])):
            assert pd.isna(row[column]) if want is None else row[column] == want, column
        for key in ("train_accuracy", "val_accuracy", "test_accuracy", "train_seconds"):
            assert row[key] == s["final"][key]  # exact: floats round-trip through the CSV
        layers = pd.read_csv(results_dir / row.path / "layers.csv")
        g = layers[layers.step == 0].set_index("layer").act_grad_norm
        assert row.log10_first_to_last_measured == pytest.approx(
            math.log10(g.iloc[0] / g.iloc[-2]), abs=1e-12)
        theory = s.get("theory")
        assert (pd.isna(row.log10_first_to_last_predicted) if theory is None else
                row.log10_first_to_last_predicted == theory["predicted_log10_ratio"])
        assert row.sweep == SWEEP if row.path.startswith("sweeps/") else pd.isna(row.sweep)
    assert table.sweep.isna().sum() == 5  # the five loose runs
    # Sorted by activation, depth, width, scheme, seed.
    order = table.sort_values(["activation", "depth", "width", "scheme", "seed"], kind="stable")
    assert list(order.path) == list(table.path)


@pytest.mark.mnist
def test_normal_init_vanishes_where_the_text_says(report):
    table = pd.read_csv(report.out / "summary.csv")
    row = table[(table.scheme == "normal") & (table.depth == 8)].iloc[0]
    assert row.verdict == "vanishing" and row.log10_first_to_last_measured < -4
    text = (report.out / "report.md").read_text()
    assert (f"`normal`: vanishing in 1 of 1 run, from layer {int(row.verdict_layer)} at step "
            f"{int(row.verdict_step)}") in text
    # One ratio in every sentence: the dz ratio (first over last hidden layer), defined once;
    # theory's prediction (saved for these runs) is set beside the measurement.
    assert (f"The dz ratio was 10^{row.log10_first_to_last_measured:+.2f} at init (theory "
            f"10^{row.log10_first_to_last_predicted:+.2f}) and "
            f"10^{row.log10_first_to_last_end:+.2f} at the end") in text
    assert text.count("dz ratio = log10 ||dL/dz_1|| / ||dL/dz_{L-1}||") == 1
    assert f"10^{row.log10_ratio_init:+.2f}" not in text  # the verdict's worst-layer ratio
    # Theory's depth scale is an expectation, set beside what was measured.
    xi = row.theory_depth_scale
    assert (f"nets much deeper than about 6 xi = {6 * xi:.3g} layers (xi = {xi:.3g}) not to "
            f"train; depth 8 is {'beyond' if 6 * xi < 8 else 'within'} that") in text


@pytest.mark.mnist
def test_aggregate_is_mean_and_std_over_seeds(report):
    table = pd.read_csv(report.out / "summary.csv")
    agg = pd.read_csv(report.out / "aggregate.csv")
    assert len(agg) == 6  # seven runs, he_normal relu depth 8 twice
    he = table[(table.scheme == "he_normal") & (table.depth == 8)]
    row = agg[(agg.scheme == "he_normal") & (agg.depth == 8)].iloc[0]
    assert row.runs == 2 and row.seeds == "0 1" and row.healthy_runs == 2
    assert row.test_accuracy_mean == pytest.approx(he.test_accuracy.mean(), rel=1e-12)
    assert row.test_accuracy_std == pytest.approx(he.test_accuracy.std(ddof=1), rel=1e-12)
    assert agg[agg.runs == 1].test_accuracy_std.isna().all()


@pytest.mark.mnist
@pytest.mark.slow
def test_same_results_give_byte_identical_files(report, results_dir, tmp_path):
    again = build_report([results_dir], out=tmp_path / "elsewhere")
    for name in ("summary.csv", "aggregate.csv", "report.md"):
        first = (report.out / name).read_bytes()
        assert first == (again.out / name).read_bytes(), name
        assert str(results_dir).encode() not in first  # paths are relative to the results


@pytest.mark.mnist
def test_plots_exist_and_are_not_blank(report):
    names = {p.name for p in report.files if p.suffix == ".png"}
    assert {"gradient_flow_mnist_mlp_relu_d8_w64.png", "heatmaps_mnist_mlp_relu_d8_w64.png",
            "curves_mnist_mlp_relu_d8_w64.png", "gradient_flow_mnist_mlp_tanh_d8_w64.png",
            "accuracy_vs_depth.png", "dz_ratio_vs_depth.png",
            "quantities_mnist_mlp_relu_d8_w64_1.png",
            "quantities_mnist_mlp_tanh_d8_w64_1.png"} <= names
    for path in report.files:
        if path.suffix != ".png":
            continue
        assert path.stat().st_size > 15_000, path.name
        pixels = imread(path)[..., :3]
        assert pixels.std() > 0.05, f"{path.name} looks blank"
    page = (report.out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == len(names) and 'src="plots/' not in page


def test_quantity_panels_follow_the_activation():
    """A ReLU run gets a dead-units panel and no saturation panel; tanh the other way round;
    a quantity that is zero everywhere on a log axis is left out rather than drawn empty."""
    from winit_cli.views.quantities import _panels

    base = {"step": [0, 10], "layer": [1, 1], "act_grad_norm": [1e-3, 2e-3],
            "update_ratio": [float("nan"), float("nan")]}
    relu = pd.DataFrame({**base, "dead_fraction": [0.1, 0.2],
                         "saturated_fraction": [float("nan")] * 2})
    tanh = pd.DataFrame({**base, "dead_fraction": [float("nan")] * 2,
                         "saturated_fraction": [0.0, 0.3]})
    assert [c for c, _, _ in _panels(relu)] == ["act_grad_norm", "dead_fraction"]
    assert [c for c, _, _ in _panels(tanh)] == ["act_grad_norm", "saturated_fraction"]


@pytest.mark.mnist
def test_incomplete_runs_are_listed_not_tabulated(report):
    skipped = {s.path: s.reason for s in report.skipped}
    assert set(skipped) == {"broken_running", "broken_unreadable"}
    assert "running" in skipped["broken_running"]
    assert "unreadable" in skipped["broken_unreadable"]
    text = (report.out / "report.md").read_text()
    section = text.split("## Not included")[1]
    assert "`broken_running`" in section and "`broken_unreadable`" in section
    assert "broken" not in (report.out / "summary.csv").read_text()


@pytest.mark.mnist
def test_recommendation_names_the_best_healthy_scheme(report):
    table = pd.read_csv(report.out / "summary.csv")
    healthy = table[(table.verdict == "healthy") & (table.status == "complete")]
    text = (report.out / "report.md").read_text()
    recommendations = text.split("## Recommendations")[1].split("##")[0]
    means = healthy.groupby(["activation", "depth", "width", "scheme"]).test_accuracy.mean()
    for (activation, depth, width), group in means.groupby(level=[0, 1, 2]):
        (_, _, _, best), accuracy = group.idxmax(), group.max()
        line = f"**mnist, mlp {activation}, depth {depth}, width {width}:** use `{best}`:"
        assert line in recommendations
        assert f"{100 * accuracy:.1f}%" in recommendations.split(line)[1].split("\n")[0]
    assert recommendations.count("use `") == 3
    # theory's expectation and the measured outcome, side by side in every recommendation
    assert recommendations.count("Theory: chi* = ") == 3
    assert recommendations.count("; measured: ") == 3


@pytest.mark.mnist
@pytest.mark.slow
def test_filters_select_runs(results_dir, tmp_path):
    only = build_report([results_dir], out=tmp_path / "tanh", filters=["activation=tanh"])
    assert list(only.summary.activation) == ["tanh"]
    two = build_report([results_dir], out=tmp_path / "two",
                       filters=["scheme=normal", "scheme=xavier_normal", "depth=8"])
    assert sorted(two.summary.scheme) == ["normal", "xavier_normal", "xavier_normal"]
    with pytest.raises(ResultsError, match="unknown field"):
        build_report([results_dir], out=tmp_path / "x", filters=["colour=red"])


@pytest.mark.mnist
def test_a_sweep_reports_into_its_own_folder(results_dir):
    """A sweep's report lives in the sweep; a filtered one beside it, named by its filter."""
    sweep = results_dir / "sweeps" / SWEEP
    result = build_report([sweep], filters=["scheme=he_normal"])
    assert result.out == sweep / "report-scheme=he_normal"
    assert (result.out / "report.md").is_file()
    assert list(result.summary.path) == [f"runs/{p.name}" for p in (sweep / "runs").iterdir()
                                         if p.is_dir() and "he_normal" in p.name]
    shutil.rmtree(result.out)  # leave the results as the other tests expect them


@pytest.mark.mnist
@pytest.mark.slow
def test_a_run_directory_is_reported_beside_it_not_inside(results_dir):
    """`winit report <run>` writes report-<run-id> beside the run: never inside the run's
    record, and never over the report of the folder holding it."""
    runs = results_dir / "sweeps" / SWEEP / "runs"
    folder = build_report([runs])
    before = (folder.out / "summary.csv").read_bytes()
    run = next(p for p in sorted(runs.iterdir()) if p.is_dir() and p.name != "report"
               and not p.name.startswith("."))  # .winit: the run store
    result = build_report([run])
    assert result.out == runs / f"report-{run.name}" and not (run / "report").exists()
    assert len(result.summary) == 1 and len(folder.summary) == 2
    assert (folder.out / "summary.csv").read_bytes() == before  # not overwritten
    shutil.rmtree(result.out)  # leave the results as the other tests expect them
    shutil.rmtree(folder.out)


@pytest.mark.mnist
def test_interrupted_runs_are_tabulated_but_not_ranked(results_dir, tmp_path):
    copy = shutil.copytree(results_dir / "sweeps" / SWEEP, tmp_path / SWEEP)
    (he,) = [p for p in (copy / "runs").glob("*he_normal*")]
    summary = json.loads((he / "summary.json").read_text())
    (he / "summary.json").write_text(json.dumps({**summary, "status": "interrupted"}))
    result = build_report([copy], out=tmp_path / "out")
    assert list(result.summary.status) == ["interrupted", "complete"]
    assert list(result.aggregate.scheme) == ["normal"]
    assert any(s.path == f"runs/{he.name}" and "interrupted" in s.reason for s in result.skipped)
    assert "no configuration kept healthy gradients" in result.recommendations[0]


@pytest.mark.mnist
def test_cli_report_writes_the_report(results_dir, tmp_path):
    result = CliRunner().invoke(app, ["report", str(results_dir / "sweeps"),
                                      "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert "use he_normal" in result.output.replace("\n", " ")
    assert (tmp_path / "cli" / "report.html").is_file()
    table = pd.read_csv(tmp_path / "cli" / "summary.csv")
    assert set(table.sweep) == {SWEEP} and len(table) == 2


@pytest.mark.mnist
def test_cli_lists_incomplete_runs(results_dir, tmp_path):
    result = CliRunner().invoke(app, ["report", str(results_dir), "--out", str(tmp_path),
                                      "--filter", "activation=tanh"])
    assert result.exit_code == 0, result.output
    assert "not included: broken_running" in result.output
    assert "not included: broken_unreadable" in result.output


@pytest.mark.parametrize("args", [["report", "/no/such/dir"],
                                  ["report", ".", "--filter", "depth"]])
def test_cli_user_errors_exit_2_with_one_line(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr


def test_no_runs_is_a_user_error(tmp_path):
    with pytest.raises(ResultsError, match="no run directories"):
        build_report([tmp_path])
    assert not np.any([p.name == "report" for p in tmp_path.iterdir()])


@pytest.mark.mnist
@pytest.mark.slow
def test_figures_in_other_formats(results_dir, tmp_path):
    """--format pdf/svg writes each figure in those formats beside its PNG, at --dpi; an
    unknown format is a one-line user error."""
    out = tmp_path / "fmt"
    result = CliRunner().invoke(app, ["report", str(results_dir / "sweeps"), "--out", str(out),
                                      "--format", "pdf", "--format", "svg", "--dpi", "60"])
    assert result.exit_code == 0, result.output
    pngs = sorted((out / "plots").glob("*.png"))
    assert pngs
    for png in pngs:
        assert png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
        assert b"<svg" in png.with_suffix(".svg").read_bytes()[:500]
    width = imread(pngs[0]).shape[1]
    default = CliRunner().invoke(app, ["report", str(results_dir / "sweeps"),
                                       "--out", str(tmp_path / "default")])
    assert default.exit_code == 0
    assert imread(tmp_path / "default" / "plots" / pngs[0].name).shape[1] > width  # dpi 100
    bad = CliRunner().invoke(app, ["report", str(results_dir / "sweeps"), "--out",
                                   str(tmp_path / "bad"), "--format", "gif"])
    assert bad.exit_code == 2 and "--format gif" in bad.stderr
