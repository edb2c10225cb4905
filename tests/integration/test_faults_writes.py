"""OS errors while writing a run: disk full, read-only filesystem, output_dir a file, names too
long. Injected into the writer (os.replace, the last step of every atomic write) and produced
for real on a tiny tmpfs mounted in a private mount namespace (`unshare -rm`). One line on
stderr, a non-zero exit, a finished run's measurements never lost, no empty run folder."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from cli_text import QUICKSTART, plain, printed_lines
from typer.testing import CliRunner

from winit_cli.cli import app

pytestmark = pytest.mark.mnist

REPO = Path(__file__).resolve().parents[2]
QUICK = str(QUICKSTART)
TINY = ["--set", "model.depth=3", "--set", "model.width=16", "--set", "train.steps=6",
        "--set", "data.subset=500", "--set", "data.val_size=500", "--set", "record.every=2"]


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def error_line(result) -> str:
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = printed_lines(result.stderr)
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.stderr
    return errors[0]


def fail_replace(monkeypatch, when) -> list[Path]:
    """os.replace raises ENOSPC for destinations `when` accepts: the atomic write fails as it
    would on a full disk, after the temp file was written. Returns the paths refused."""
    real = os.replace
    refused: list[Path] = []

    def replace(src, dst, *args, **kwargs):
        if when(Path(dst)):
            refused.append(Path(dst))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return refused


@pytest.fixture
def env(winit_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    return tmp_path


def test_disk_full_at_the_end_loses_no_measurement(env, monkeypatch):
    """The tables cannot be written when training is done: the run's files (the optional
    spectrum and histograms included) go to the rescue folder, the run's own summary says so
    (status failed, not "running"), the terminal still shows the per-layer table, and the exit
    is one error line."""
    out = env / "results"
    fail_replace(monkeypatch, lambda p: out in p.parents and p.suffix == ".csv")
    result = invoke("run", QUICK, *TINY, "--set", f"output_dir={out}",
                    "--set", "record.histograms=true", "--set", "record.jacobian=true")
    line = error_line(result)
    assert "No space left on device" in line and "its files are in" in line
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    rescue = env / "tmp" / f"winit-rescued-{os.geteuid()}" / run_dir.name
    assert str(rescue) in line.replace(" ", "") or str(rescue) in line
    layers = pd.read_csv(rescue / "layers.csv")
    assert sorted(set(layers.step)) == [0, 2, 4, 6] and len(layers) == 4 * 3
    rescued = json.loads((rescue / "summary.json").read_text())
    assert rescued["status"] == "complete" and rescued["verdict"] is not None
    # the optional tables too: the step-0 spectrum and the histograms of every recorded step
    assert len(pd.read_csv(rescue / "spectrum.csv")) > 0
    assert sorted(set(pd.read_csv(rescue / "histograms.csv").step)) == [0, 2, 4, 6]
    left = json.loads((run_dir / "summary.json").read_text())
    assert left["status"] == "failed" and str(rescue) in left["error"]
    assert left["verdict"] is None
    assert "dz: ||dL/dz_l||" in result.output  # the per-layer table shown, from memory
    assert not (out / "runs.csv").exists()  # a run whose files are elsewhere is not indexed


def test_disk_full_at_the_start_leaves_no_folder(env, monkeypatch):
    out = env / "results"
    fail_replace(monkeypatch, lambda p: p.name == "config.yaml")
    line = error_line(invoke("run", QUICK, *TINY, "--set", f"output_dir={out}"))
    assert "cannot write the run's files (No space left on device)" in line
    assert [p for p in out.iterdir()] == []


def test_failed_checkpoints_do_not_stop_training(env, monkeypatch):
    """Checkpoints that cannot be written are reported once and training goes on; the final
    write (the disk has room again) saves everything."""
    out = env / "results"
    refused = fail_replace(monkeypatch, lambda p: p.name == "layers.csv" and len(refused) < 3)
    result = invoke("run", QUICK, *TINY, "--set", "record.checkpoint_seconds=0",
                    "--set", f"output_dir={out}")
    assert result.exit_code == 0, result.output
    assert len(refused) == 3
    assert "checkpoint not written (No space left on device)" in plain(result.stderr)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "complete"
    assert sorted(set(pd.read_csv(run_dir / "layers.csv").step)) == [0, 2, 4, 6]


def test_output_dir_is_a_file(env):
    blocker = env / "results"
    blocker.write_text("not a folder")
    line = error_line(invoke("run", QUICK, *TINY, "--set", f"output_dir={blocker}"))
    assert str(blocker) in line and "Not a directory" in line
    assert blocker.read_text() == "not a folder"


def test_output_dir_name_too_long(env):
    out = env / ("x" * 300)
    line = error_line(invoke("run", QUICK, *TINY, "--set", f"output_dir={out}"))
    assert "File name too long" in line


def test_long_run_name_is_cut_in_the_folder_name_only(env):
    """A 300-character name was 'File name too long' with a traceback: the folder takes the
    first 64 characters, the record keeps the whole name."""
    out = env / "results"
    name = "n" * 300
    result = invoke("run", QUICK, *TINY, "--set", f"name={name}", "--set", f"output_dir={out}")
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    assert f"_{'n' * 64}_" in run_dir.name and len(run_dir.name) < 100
    assert json.loads((run_dir / "summary.json").read_text())["name"] == name


# --- a real tiny filesystem --------------------------------------------------------------------

SCRIPT = """
set -u
mount -t tmpfs -o size=16k tmpfs "$T/full"
mount -t tmpfs -o ro,size=16k tmpfs "$T/ro"
"$PY" -m winit_cli run "$CONFIG" $ARGS --set output_dir="$T/full/results" \
    >"$T/full.out" 2>"$T/full.err"
echo "rc_full=$?"
for f in "$T"/full/results/*/summary.json; do echo "summary=$(tr -d '\\n' < "$f")"; done
ls "$T/full/results" | sed 's/^/listing=/'
"$PY" -m winit_cli run "$CONFIG" $ARGS --set output_dir="$T/ro/results" >"$T/ro.out" 2>"$T/ro.err"
echo "rc_ro=$?"
ls -A "$T/ro" | sed 's/^/ro_listing=/'
"""


@pytest.mark.slow
def test_tiny_real_filesystem_full_and_read_only(winit_data_dir, tmp_path):
    """winit on a 16 kB tmpfs (config and first summary fit, the tables do not) and on a
    read-only one, in a private mount namespace so no root is needed. Full: exit 2, the
    finished run rescued whole, its folder's summary saying where. Read-only: exit 2, one line,
    nothing created."""
    for d in ("full", "ro", "tmp"):
        (tmp_path / d).mkdir()
    args = " ".join(["--set model.depth=3", "--set model.width=16", "--set train.steps=60",
                     "--set record.every=1", "--set data.subset=500",
                     "--set data.val_size=500"])
    env = {**os.environ, "T": str(tmp_path), "PY": sys.executable, "CONFIG": QUICK,
           "ARGS": args, "TMPDIR": str(tmp_path / "tmp"), "COLUMNS": "250",
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", SCRIPT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    facts: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition("=")
        facts.setdefault(key, []).append(value)
    full_err = plain((tmp_path / "full.err").read_text())
    assert facts["rc_full"] == ["2"], full_err
    assert "No space left on device" in full_err and "Traceback" not in full_err
    (run_id,) = facts["listing"]
    rescue = tmp_path / "tmp" / f"winit-rescued-{os.geteuid()}" / run_id
    layers = pd.read_csv(rescue / "layers.csv")
    assert sorted(set(layers.step)) == list(range(61)) and len(layers) == 61 * 3
    assert json.loads((rescue / "summary.json").read_text())["status"] == "complete"
    (summary,) = facts["summary"]
    left = json.loads(summary)
    assert left["status"] == "failed" and str(rescue) in left["error"]
    ro_err = plain((tmp_path / "ro.err").read_text())
    assert facts["rc_ro"] == ["2"], ro_err
    errors = [ln for ln in ro_err.splitlines() if ln.strip()]
    assert len(errors) == 1 and "Read-only file system" in errors[0], ro_err
    assert "ro_listing" not in facts  # nothing created
