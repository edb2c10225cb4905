"""`winit run` end to end: real MNIST, a short training run, the files it leaves, its errors."""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_text import QUICKSTART, plain
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.config import load_config

REPO = Path(__file__).resolve().parents[2]
# threads pinned: runs match bit for bit only at the same thread count (train.threads: auto
# follows the load).
SMALL = ["--set", "train.steps=30", "--set", "data.subset=2000", "--set", "train.threads=1"]
LAYER_COLUMNS = ["step", "layer", "weight_grad_norm", "bias_grad_norm", "act_grad_norm",
                 "weight_norm", "update_ratio", "act_mean", "act_std", "dead_fraction",
                 "saturated_fraction"]



def squash(text: str) -> str:
    """Output without whitespace: Rich may fold a long path over several lines."""
    return re.sub(r"\s+", "", plain(text))


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", **(env or {})})


def run_dirs(out: Path) -> list[Path]:
    """The folders winit made under `out`, but its hidden run store (.winit)."""
    return sorted(p for p in out.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def two_runs(mnist_path: Path, tmp_path_factory: pytest.TempPathFactory):
    """The same short quickstart run twice (same seed) into one output folder."""
    out = tmp_path_factory.mktemp("results")
    env = {"WINIT_DATA_DIR": str(mnist_path),
           "XDG_CACHE_HOME": str(tmp_path_factory.mktemp("cache"))}
    results = []
    for _ in range(2):
        before = set(run_dirs(out))
        result = invoke("run", str(QUICKSTART), *SMALL, "--set", f"output_dir={out}", env=env)
        assert result.exit_code == 0, result.output + repr(result.exception)
        (new,) = set(run_dirs(out)) - before
        results.append((result, new))
    return out, results


@pytest.mark.mnist
def test_run_succeeds_and_reports(two_runs):
    _, [(result, run_dir), _] = two_runs
    summary = json.loads((run_dir / "summary.json").read_text())
    output = plain(result.output)
    assert "verdict:" in output
    assert summary["verdict"]["verdict"] in output
    assert str(run_dir) in squash(result.output)
    # where the data came from, and the command that draws this run's figures
    assert f"mnist from {summary['data_source']}" in " ".join(output.split())
    assert f"winitreport{run_dir}" in squash(result.output)
    for name in ("config.yaml", "metrics.csv", "layers.csv", "summary.json"):
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes leave no temp files behind


@pytest.mark.mnist
def test_runs_index_has_one_line_per_run(two_runs):
    out, results = two_runs
    index = pd.read_csv(out / "runs.csv")
    assert len(index) == 2
    assert sorted(index.path) == sorted(str(d) for _, d in results)
    assert set(index.status) == {"complete"}
    assert sorted(index.run_id) == sorted(d.name for _, d in results)
    assert (out / "runs.csv").read_text().count("\n") == 3  # header + two lines


@pytest.mark.mnist
def test_layers_csv(two_runs):
    _, [(_, run_dir), _] = two_runs
    layers = pd.read_csv(run_dir / "layers.csv")
    assert set(LAYER_COLUMNS) <= set(layers.columns)
    depth = 10
    # quickstart records every 10 steps, plus the last step
    assert sorted(set(layers.step)) == [0, 10, 20, 30]
    assert not layers.duplicated(["step", "layer"]).any()
    for _, group in layers.groupby("step"):
        assert sorted(group.layer) == list(range(1, depth + 1))
    assert len(layers) == 4 * depth
    step0 = layers[layers.step == 0].set_index("layer")
    assert (step0.act_grad_norm > 0).all() and (step0.weight_grad_norm > 0).all()
    assert step0.dead_fraction.loc[: depth - 1].notna().all()  # ReLU hidden layers
    assert step0.saturated_fraction.isna().all()  # not a tanh/sigmoid net
    assert pd.isna(step0.dead_fraction.loc[depth])  # output layer: not applicable
    # the last step has no update; every earlier recorded step has one
    last = layers[layers.step == 30]
    assert last.update_ratio.isna().all()
    assert layers[layers.step < 30].update_ratio.gt(0).all()
    assert list(step0.fan_in) == [784] + [256] * 9
    assert list(step0.fan_out) == [256] * 9 + [10]


@pytest.mark.mnist
def test_metrics_csv(two_runs):
    _, [(_, run_dir), _] = two_runs
    metrics = pd.read_csv(run_dir / "metrics.csv")
    assert {"step", "epoch", "train_loss", "train_accuracy", "val_loss",
            "val_accuracy"} <= set(metrics.columns)
    assert metrics.step.iloc[0] == 0 and metrics.step.iloc[-1] == 30
    assert metrics.step.is_monotonic_increasing
    assert metrics.val_accuracy.iloc[-1] == pytest.approx(
        json.loads((run_dir / "summary.json").read_text())["final"]["val_accuracy"])


@pytest.mark.mnist
def test_summary_json(two_runs):
    _, [(_, run_dir), _] = two_runs
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["verdict"]["verdict"] in ("healthy", "vanishing", "exploding", "diverged")
    assert summary["verdict_text"]
    final = summary["final"]
    for key in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert 0.0 <= final[key] <= 1.0, key
    # 30 steps of He-initialized ReLU on 2000 examples learn something
    assert final["test_accuracy"] > 0.5
    assert final["steps"] == 30
    import torch

    import winit_cli

    env = summary["environment"]
    assert env["torch"] == torch.__version__
    assert env["winit"] == winit_cli.__version__
    assert env["python"].count(".") == 2
    assert summary["seed"] == 0
    assert env["device"] == "cpu"
    assert env["flush_subnormals"] is True
    assert summary["schema_version"] == 2 and summary["dataset"] == "mnist"
    # the saved config is the resolved one, overrides included, and identifies the run
    config = load_config(run_dir / "config.yaml")
    assert config.train.steps == 30 and config.data.subset == 2000
    assert summary["config_hash"] == config.content_hash()


@pytest.mark.mnist
def test_same_seed_gives_byte_identical_tables(two_runs):
    _, [(_, first), (_, second)] = two_runs
    assert first != second
    for name in ("layers.csv", "metrics.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.mnist
@pytest.mark.slow
def test_python_m_subprocess(mnist_path: Path, tmp_path: Path):
    env = {**os.environ, "WINIT_DATA_DIR": str(mnist_path),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "winit_cli", "run", str(QUICKSTART), *SMALL,
         "--set", f"output_dir={out}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (run_dir,) = run_dirs(out)
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"


def _wait_for_recorded_step(run_root: Path, proc: subprocess.Popen) -> None:
    """Until some run's layers.csv holds a step after 0 (checkpoints every step here): then
    there is something measured to keep, however slow the machine is."""
    import time

    while proc.poll() is None:
        for layers in run_root.glob("*/layers.csv"):
            try:
                if pd.read_csv(layers).step.max() > 0:
                    return
            except (pd.errors.EmptyDataError, AttributeError, KeyError):
                pass
        time.sleep(0.05)
    raise AssertionError(f"winit exited before recording a step: {proc.communicate()}")


@pytest.mark.mnist
@pytest.mark.slow
def test_ctrl_c_keeps_what_was_measured(mnist_path: Path, tmp_path: Path):
    """SIGINT mid-run: exit 130, the run marked interrupted, its records on disk and indexed.
    The signal is sent once a step after 0 is on disk, not after a fixed delay."""
    import signal

    env = {**os.environ, "WINIT_DATA_DIR": str(mnist_path),
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "winit_cli", "run", str(QUICKSTART), "--set", "train.epochs=50",
         "--set", "record.every=5", "--set", "record.checkpoint_seconds=0",
         "--set", f"output_dir={out}"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for_recorded_step(out, proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (run_dir,) = run_dirs(out)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["final"]["steps"] > 0
    layers = pd.read_csv(run_dir / "layers.csv")
    assert 0 in set(layers.step) and layers.step.max() > 0
    index = pd.read_csv(out / "runs.csv")
    assert list(index.status) == ["interrupted"]


# --- errors: one line on stderr, exit code 2 ----------------------------------------------------


def assert_user_error(result, *fragments: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in plain(result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:"), lines[0]
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def cli_env(winit_data_dir: Path) -> dict:
    return {"WINIT_DATA_DIR": str(winit_data_dir)}


@pytest.mark.mnist
def test_unknown_key_in_file(tmp_path: Path, cli_env):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depht: 3\n")
    result = invoke("run", str(bad), "--set", f"output_dir={tmp_path / 'out'}", env=cli_env)
    assert_user_error(result, str(bad), "model.depht", "did you mean 'depth'")
    assert not (tmp_path / "out").exists()


@pytest.mark.mnist
def test_unknown_key_in_set(tmp_path: Path, cli_env):
    result = invoke("run", str(QUICKSTART), "--set", "model.depht=3", env=cli_env)
    assert_user_error(result, "model.depht", "did you mean 'depth'")


@pytest.mark.mnist
def test_unknown_scheme(tmp_path: Path, cli_env):
    result = invoke("run", str(QUICKSTART), "--set", "init.scheme=glorious", env=cli_env)
    assert_user_error(result, "unknown scheme 'glorious'", "he_normal", "xavier_uniform")


@pytest.mark.mnist
def test_bad_yaml(tmp_path: Path, cli_env):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model: [depth: 3\n")
    result = invoke("run", str(bad), env=cli_env)
    assert_user_error(result, str(bad), "invalid YAML")


@pytest.mark.mnist
def test_corrupted_data_file(mnist_path: Path, tmp_path: Path, cli_env):
    data = tmp_path / "mnist"
    data.mkdir()
    for f in mnist_path.glob("*.gz"):
        shutil.copyfile(f, data / f.name)
    victim = data / "train-images-idx3-ubyte.gz"
    blob = victim.read_bytes()
    victim.write_bytes(blob[: len(blob) // 2])
    with pytest.raises((EOFError, OSError)):  # the test's premise: this really is truncated
        gzip.decompress(victim.read_bytes())
    out = tmp_path / "out"
    result = invoke("run", str(QUICKSTART), *SMALL, "--set", f"output_dir={out}",
                    "--data-dir", str(data), env=cli_env)
    line = assert_user_error(result)
    assert str(victim) in squash(line)
    assert "corrupted" in line or "truncated" in line
    assert not out.exists() or not run_dirs(out)  # nothing that looks like a run


# --- after a run: --report, --quiet, --json, where the data came from ----------------------------


@pytest.mark.mnist
@pytest.mark.slow
def test_run_report_writes_the_figures_beside_the_run(tmp_path: Path, cli_env):
    """`winit run --report` ends with the report of that run, beside it (never inside)."""
    out = tmp_path / "out"
    result = invoke("run", str(QUICKSTART), *SMALL, "--set", f"output_dir={out}", "--report",
                    env=cli_env)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (run_dir,) = [d for d in run_dirs(out) if not d.name.startswith("report-")]
    report = out / f"report-{run_dir.name}"
    assert f"report:{report}" in squash(result.output)
    assert (report / "report.md").is_file() and list((report / "plots").glob("*.png"))
    assert not (run_dir / "report").exists()


@pytest.mark.mnist
def test_quiet_prints_the_run_dir_and_json_only_json(tmp_path: Path, mnist_path: Path):
    """--quiet: the run directory alone on stdout. --json: one JSON document on stdout, the
    progress and a warning on stderr: $WINIT_DATA_DIR named an empty folder, so the data came
    from the cache, and the run says so (and records it) rather than falling back silently."""
    out, empty, cache = tmp_path / "out", tmp_path / "empty", tmp_path / "xdg"
    empty.mkdir()
    (cache / "winit").mkdir(parents=True)
    (cache / "winit" / "mnist").symlink_to(mnist_path)
    env = {"WINIT_DATA_DIR": str(empty), "XDG_CACHE_HOME": str(cache)}
    quiet = invoke("run", str(QUICKSTART), *SMALL, "--set", f"output_dir={out}", "-q", env=env)
    assert quiet.exit_code == 0, quiet.output
    (run_dir,) = run_dirs(out)
    assert quiet.stdout == f"{run_dir}\n"
    result = invoke("run", str(QUICKSTART), *SMALL, "--set", f"output_dir={out}", "--json",
                    env=env)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (new,) = set(run_dirs(out)) - {run_dir}
    assert data["run_dir"] == str(new)
    assert data["record"] == json.loads((new / "summary.json").read_text())
    assert data["record"]["data_source"] == str(cache / "winit" / "mnist")
    assert f"$WINIT_DATA_DIR is {empty}, which does not hold" in " ".join(result.stderr.split())


def test_dry_run_shows_the_config_and_a_measured_cost(tmp_path: Path):
    """--dry-run trains nothing; its step count is the schedule's (3 epochs of 55,000 images in
    batches of 128) and its time per step was measured (positive)."""
    out = tmp_path / "out"
    args = ("run", str(QUICKSTART), "--set", "model.width=32", "--set", f"output_dir={out}",
            "--dry-run")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    steps = 3 * math.ceil((60_000 - 5_000) / 128)
    text = " ".join(plain(result.output).split())
    assert "name: quickstart" in text and "epochs: 3" in text
    assert f"{steps:,} optimizer steps" in text and "minutes" in text
    data = json.loads(invoke(*args, "--json").stdout)
    assert data["steps"] == steps and data["estimated_seconds"] > 0
    assert data["config"]["model"]["width"] == 32
    assert not out.exists()


def test_a_runaway_loss_prints_as_a_number_people_read():
    from winit_cli.views.progress import fmt_loss

    assert fmt_loss(1.1e22) == "1.1e+22" and fmt_loss(0.123456) == "0.1235"
    assert "non-finite" in fmt_loss(float("nan"))


# --- help and import cost -----------------------------------------------------------------------


def test_version_completion_and_help_without_type_noise():
    """--version; shell completion; help without Python types (<bool>, <list[Path]>)."""
    import winit_cli

    assert invoke("--version").output.strip() == f"winit {winit_cli.__version__}"
    assert "--install-completion" in plain(invoke("--help").output)
    for args in (["--help"], ["run", "--help"], ["report", "--help"], ["schemes", "--help"],
                 ["phase", "--help"], ["index", "rebuild", "--help"],
                 ["compare", "schemes", "--help"]):
        text = plain(invoke(*args).output)
        assert not re.search(r"<(bool|str|int|float|list|Path|path)", text), (args, text)
    alone = plain(invoke("compare").output)  # a group alone shows its help
    assert "Usage:" in alone and "schemes" in alone


def test_help():
    result = invoke("--help")
    assert result.exit_code == 0
    assert "run" in plain(result.output)
    result = invoke("run", "--help")
    assert result.exit_code == 0
    text = plain(result.output)
    assert "Usage:" in text and "--set" in text and "--data-dir" in text
    assert "Experiment YAML" in text


def test_console_script_help(tmp_path: Path):
    """The `winit` console script beside this interpreter runs this checkout's CLI, whichever
    directory it is started from (PYTHONPATH puts this checkout first, should the environment
    have been installed from another)."""
    script = Path(sys.executable).parent / "winit"
    assert script.is_file()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "run" in proc.stdout
    interpreter = script.read_text().splitlines()[0].removeprefix("#!").strip()
    where = subprocess.run([interpreter, "-c", "import winit_cli; print(winit_cli.__file__)"],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).parent == REPO / "winit_cli"


def test_cli_import_does_not_import_torch():
    code = "import sys, winit_cli.cli; assert 'torch' not in sys.modules, 'torch imported'"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
