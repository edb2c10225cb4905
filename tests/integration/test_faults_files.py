"""Files outside results/ are never touched, nothing hangs on a FIFO, nothing winit did not write
is deleted or truncated (records/files.py and records/folders.py: the one way winit writes under
a results folder). Planted symbolic links, FIFOs and read-only files at every path winit writes,
for a run, a sweep, a report, an index rebuild and an export; a report folder holding a user's
own files; a planted rescue folder; formulas in CSV cells; an interrupted export; a damaged line
in the middle of runs.csv; the staging folder of a report killed with SIGKILL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from cli_text import QUICKSTART, plain, printed_lines
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.records.files import csv_text, neutralised
from winit_cli.records.folders import MANIFEST, clean_stale
from winit_cli.records.index import DAMAGED, INDEX_COLUMNS, append_index, rebuild_index
from winit_cli.records.reader import read_record

pytestmark = pytest.mark.mnist

REPO = Path(__file__).resolve().parents[2]
QUICK = str(QUICKSTART)
TINY = ["--set", "model.depth=3", "--set", "model.width=16", "--set", "train.steps=6",
        "--set", "data.subset=500", "--set", "data.val_size=500", "--set", "record.every=2"]
PRECIOUS = "PRECIOUS\n"
HANG_GUARD_S = 300  # far beyond any of these commands: only a hang reaches it


@contextmanager
def no_hang() -> Iterator[None]:
    """A blocked open() (a FIFO with no writer) raises instead of hanging the suite."""
    def hung(*_):
        raise TimeoutError("winit blocked (a FIFO opened without O_NONBLOCK?)")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_GUARD_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def invoke(*args: str):
    with no_hang():
        return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "250"})


def text_of(result) -> str:
    return plain(result.output + (result.stderr or ""))


def tiny_run(out: Path, *extra: str):
    return invoke("run", QUICK, *TINY, "--set", f"output_dir={out}", *extra)


@pytest.fixture(scope="module")
def finished_run(mnist_path, tmp_path_factory) -> Path:
    """One finished tiny run (copied by each test that needs one)."""
    out = tmp_path_factory.mktemp("finished")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINIT_DATA_DIR", str(mnist_path))
        mp.setenv("XDG_CACHE_HOME", str(out / "xdg-cache"))
        result = tiny_run(out / "results")
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in (out / "results").iterdir() if p.is_dir()]
    return run_dir


def copy_run(run_dir: Path, results: Path, name: str | None = None) -> Path:
    target = results / (name or run_dir.name)
    shutil.copytree(run_dir, target)
    if name:
        summary = json.loads((target / "summary.json").read_text())
        summary["run_id"] = name
        (target / "summary.json").write_text(json.dumps(summary))
    return target


# --- 1. a symlinked lock ------------------------------------------------------------------------


def test_a_symlinked_index_lock_empties_no_file_outside(winit_data_dir, finished_run, tmp_path):
    """`ln -s $PWD/v r/.runs.csv.lock; winit run ... output_dir=r` left v at 0 bytes (the lock
    was opened with "w"); now the lock is opened read-only and never through a link: the run
    ends, its index is not updated and says why, v is untouched. `winit index rebuild` the same."""
    v = tmp_path / "v"
    v.write_text(PRECIOUS)
    r = tmp_path / "r"
    r.mkdir()
    (r / ".runs.csv.lock").symlink_to(v)
    result = tiny_run(r)
    assert result.exit_code == 0, result.output
    # the lock is named (runs.csv is no link); spaces dropped: Rich may wrap a long path anywhere
    said = "".join(text_of(result).split())
    assert "runs.csv:notupdated(" in said and ".runs.csv.lock:asymboliclink" in said
    assert v.read_text() == PRECIOUS
    # a name of its own: the fixture's run may have been made in the same second, same config
    copy_run(finished_run, r, "copied_run")
    rebuilt = invoke("index", "rebuild", r)
    assert rebuilt.exit_code == 2
    assert ".runs.csv.lock:asymboliclink" in "".join(text_of(rebuilt).split())
    assert v.read_text() == PRECIOUS and (r / ".runs.csv.lock").is_symlink()


# --- 2. a report folder is winit's only if its manifest says so ---------------------------------


def test_report_keeps_a_users_own_files(finished_run, tmp_path):
    """A user's R/report/plots/fig.pdf was deleted by the next `winit report R`, and a
    hand-written report.md replaced: the check read only top-level names. Now the folder is
    replaced only when its manifest lists every file in it, as winit wrote it (SHA-256);
    otherwise one line, exit 2."""
    results = tmp_path / "R"
    copy_run(finished_run, results)
    first = invoke("report", results)
    assert first.exit_code == 0, first.output
    report = results / "report"
    manifest = json.loads((report / MANIFEST).read_text())
    on_disk = sorted(p.relative_to(report).as_posix() for p in report.rglob("*")
                     if p.is_file() and p.name != MANIFEST)
    assert sorted(manifest["files"]) == on_disk and "summary.csv" in on_disk
    assert manifest["files"]["report.md"] == hashlib.sha256(
        (report / "report.md").read_bytes()).hexdigest()
    assert invoke("report", results).exit_code == 0  # its own report: replaced
    (report / "report.md").write_text("rewritten by hand\n")  # listed, but not what winit wrote
    refused = invoke("report", results)
    assert refused.exit_code == 2 and "(report.md)" in text_of(refused)
    assert (report / "report.md").read_text() == "rewritten by hand\n"
    (report / "report.md").unlink()  # gone: nothing of the user's left to lose
    assert invoke("report", results).exit_code == 0

    (report / "plots" / "fig.pdf").write_bytes(b"%PDF mine")
    refused = invoke("report", results)
    assert refused.exit_code == 2
    (line,) = printed_lines(refused.stderr)
    assert "holds files winit did not write (plots/fig.pdf)" in line
    assert (report / "plots" / "fig.pdf").read_bytes() == b"%PDF mine"

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes\n")  # report names, but no manifest: not winit's
    refused = invoke("report", results, "--out", mine)
    assert refused.exit_code == 2 and "report.md" in text_of(refused)
    assert (mine / "report.md").read_text() == "my notes\n"


def test_an_older_winits_report_folder_says_what_to_do(finished_run, tmp_path):
    """A report folder written before manifests (report.md, summary.csv, plots/, no manifest)
    was refused as holding 'files winit did not write', which the user knows winit wrote: the
    one line now says why and names the two ways on, the exact rm -r and --out."""
    results = tmp_path / "R"
    copy_run(finished_run, results)
    old = results / "report"
    (old / "plots").mkdir(parents=True)
    for name in ("report.md", "summary.csv", "plots/dz_by_layer.png"):
        (old / name).write_text("an older winit's\n")
    refused = invoke("report", results)
    assert refused.exit_code == 2
    (line,) = printed_lines(refused.stderr)
    assert f"no {MANIFEST}" in line and f"rm -r {old}" in line and "--out another folder" in line
    assert (old / "report.md").read_text() == "an older winit's\n"
    assert invoke("report", results, "--out", tmp_path / "new").exit_code == 0


# --- 3. the rescue folder -----------------------------------------------------------------------


def test_rescue_folder_planted_as_a_link_is_not_followed(winit_data_dir, tmp_path, monkeypatch):
    """$TMPDIR/winit-rescued was a predictable shared path: a link planted there sent a rescued
    run wherever it pointed. Now the folder is the user's own winit-rescued-<uid> (mode 0700);
    a link (or anything not this user's private folder) there is passed over for a fresh
    mkdtemp folder, and nothing is written where the link points."""
    tmp = tmp_path / "tmp"
    elsewhere = tmp_path / "elsewhere"
    tmp.mkdir()
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read $TMPDIR
    for name in ("winit-rescued", f"winit-rescued-{os.geteuid()}"):
        (tmp / name).symlink_to(elsewhere, target_is_directory=True)
    real = os.replace
    out = tmp_path / "results"

    def disk_full_in_out(src, dst, *args, **kwargs):
        if out in Path(dst).parents and Path(dst).suffix == ".csv":
            raise OSError(28, os.strerror(28), str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", disk_full_in_out)
    result = tiny_run(out)
    assert result.exit_code == 2
    assert list(elsewhere.iterdir()) == []
    (rescued,) = [p for p in tmp.iterdir() if p.is_dir() and not p.is_symlink()]
    assert rescued.name.startswith(f"winit-rescued-{os.geteuid()}-")
    assert stat.S_IMODE(rescued.stat().st_mode) == 0o700
    (run,) = rescued.iterdir()
    assert str(run) in " ".join(text_of(result).split()).replace(" ", "") or \
        str(run) in text_of(result)
    assert json.loads((run / "summary.json").read_text())["status"] == "complete"


# --- 4. a FIFO named runs.csv -------------------------------------------------------------------


def test_a_fifo_named_runs_csv_neither_hangs_nor_holds_the_lock(winit_data_dir, tmp_path):
    """A FIFO named runs.csv hung the run forever after training, holding the index lock so
    every later run in that folder blocked too. Now the index is opened without blocking and
    refused as not a regular file: the run ends (exit 0), says so, and a second run does too."""
    out = tmp_path / "results"
    out.mkdir()
    os.mkfifo(out / "runs.csv")
    for _ in range(2):
        result = tiny_run(out)
        assert result.exit_code == 0, result.output
        assert "runs.csv: not updated (a FIFO" in " ".join(text_of(result).split())
    assert stat.S_ISFIFO(os.lstat(out / "runs.csv").st_mode)
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2


# --- 8. formulas in CSV cells -------------------------------------------------------------------


def test_csv_cells_that_could_be_formulas_are_neutralised(finished_run, tmp_path):
    """A run_id or name starting with =, +, -, @ (or a tab, a CR) was written raw into the
    report's CSVs and into runs.csv: a spreadsheet would run it. Every CSV winit writes goes
    through one function that prefixes such a cell with an apostrophe; numbers stay numbers."""
    hostile = ["=HYPERLINK(\"http://x\")", "+1+cmd", "-2-cmd", "@SUM(A1)", "\tx"]
    frame = pd.DataFrame({"text": [*hostile, "-1.5", "+3e-4", "plain"],
                          "number": [-1.5, 2.0, -3e-300, 4.0, 5.0, 6.0, 7.0, 8.0]})
    cells = list(csv.reader(io.StringIO(csv_text(frame))))[1:]
    assert [row[0] for row in cells] == [*("'" + h for h in hostile), "-1.5", "+3e-4", "plain"]
    assert [float(row[1]) for row in cells] == frame.number.tolist()  # round-trip, unprefixed
    assert neutralised(-1.5) == -1.5 and neutralised("\rx") == "'\rx"

    results = tmp_path / "results"
    copy_run(finished_run, results, "=cmd|' -C calc'!A0")
    summary = json.loads((results / "=cmd|' -C calc'!A0" / "summary.json").read_text())
    summary["name"] = "@SUM(1+1)"
    (results / "=cmd|' -C calc'!A0" / "summary.json").write_text(json.dumps(summary))
    assert invoke("index", "rebuild", results).exit_code == 0
    assert invoke("report", results).exit_code == 0
    for path in (results / "runs.csv", results / "report" / "summary.csv"):
        for row in csv.DictReader(path.open()):
            assert all(not v.startswith(("=", "+", "@")) for v in row.values()), (path, row)
            assert row["run_id"] == "'=cmd|' -C calc'!A0"
            assert row.get("name", "'@SUM(1+1)") == "'@SUM(1+1)"  # summary.csv has no name


# --- 9. an interrupted export -------------------------------------------------------------------


def test_an_interrupted_export_keeps_the_previous_event_files(finished_run, tmp_path,
                                                              monkeypatch):
    """Export deleted the old event files before the new ones were whole, so an interrupted
    export lost them (yet said "what was measured so far is saved"). Now the new folder is
    written aside and swapped in: an interruption half way leaves the old files byte for byte,
    and no staging folder behind."""
    pytest.importorskip("tensorboard")
    results = tmp_path / "results"
    run = copy_run(finished_run, results)
    assert invoke("export", "tensorboard", results).exit_code == 0
    target = results / "tensorboard" / run.name
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    assert any(n.startswith("events.out.tfevents.") for n in before)

    import winit_cli.app.export as export_module
    real = export_module.write_tables

    def interrupted(log_dir, layers, metrics, *outcome):
        real(log_dir, layers.head(1), None)  # a first, partial event file, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "write_tables", interrupted)
    assert invoke("export", "tensorboard", results).exit_code == 130
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in target.parent.iterdir()) == [run.name]


# --- 12. a damaged line in the middle of runs.csv -----------------------------------------------


def test_a_damaged_line_in_the_middle_of_the_index_is_moved_aside(finished_run, tmp_path):
    """A line with an unterminated quote in the middle of runs.csv passed the check (header and
    last byte only); new runs were appended after it and pandas then failed. Now each line is
    checked: the index is rebuilt from the folders and the damaged line kept in
    runs.csv.damaged beside it."""
    results = tmp_path / "results"
    first = copy_run(finished_run, results, "20260101-000000_a")
    second = copy_run(finished_run, results, "20260102-000000_b")
    rebuild_index(results)
    lines = (results / "runs.csv").read_text().splitlines(keepends=True)
    damaged = '20250101-000000_x,"unterminated,2025-01-01,complete\n'
    (results / "runs.csv").write_text("".join([*lines[:2], damaged, *lines[2:]]))

    note = append_index(results, read_record(second), second)
    assert note and "rebuilt" in note and DAMAGED in note
    index = pd.read_csv(results / "runs.csv")
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert sorted(index.run_id) == [first.name, second.name]
    assert (results / DAMAGED).read_text() == damaged
    assert append_index(results, read_record(first), first) is None  # whole again: appended


# --- the staging folder of a report killed with SIGKILL -----------------------------------------

KILLED_MID_SWAP = """
import os, sys
from pathlib import Path
from winit_cli.records import folders
target = Path(sys.argv[1])
real = Path.rename
def rename(self, dest):
    real(self, dest)
    if Path(dest).name == folders.PREVIOUS:
        os.kill(os.getpid(), 9)  # after the old report moved aside, before the new moved in
Path.rename = rename
with folders.staged(target, "winit report", "report") as staging:
    (staging / "summary.csv").write_text("new\\n")
"""


def test_a_killed_reports_staging_folder_is_cleaned(finished_run, tmp_path):
    """A report killed with SIGKILL left a hidden .report.XXXX folder that was never cleaned;
    killed in the middle of its swap, it left no report at all. A staging folder holds a lock
    its process keeps; the next report deletes every staging folder of its target whose lock
    it can take (its process is dead), after putting back a report caught half way. A hidden
    folder of that name that is not winit's (no lock file) is left alone."""
    results = tmp_path / "R"
    copy_run(finished_run, results)
    assert invoke("report", results).exit_code == 0
    report = results / "report"
    before = {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()}
    killed = subprocess.run([sys.executable, "-c", KILLED_MID_SWAP, str(report)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert not report.exists()
    (stale,) = [p for p in results.iterdir() if p.name.startswith(".report.")]
    users = results / ".report.mine"
    users.mkdir()
    (users / "keep.txt").write_text("mine\n")

    assert clean_stale(report) == [stale]
    assert {p.relative_to(report): p.read_bytes() for p in report.rglob("*") if p.is_file()} \
        == before
    assert invoke("report", results).exit_code == 0
    # what is left hidden: the user's folder, and the run store (.winit), nothing staged
    assert sorted(p.name for p in results.iterdir() if p.name.startswith(".")) == \
        [users.name, ".winit"]
    assert (users / "keep.txt").read_text() == "mine\n"


# --- every file winit writes, against a planted link, a FIFO and a read-only file ---------------

SWEEP = ["compare", "schemes", "--schemes", "he_normal", "--name", "s", *TINY,
         "--set", "output_dir=out"]


@pytest.fixture(scope="module")
def sweep_layout(mnist_path, tmp_path_factory) -> dict[str, str]:
    """Where a tiny sweep writes, relative to the folder it is started in (a sweep's folder is
    named by its content, which holds output_dir: every test starts it from its own folder with
    output_dir=out, so the names are the same): its folder and its member's claim file."""
    here = tmp_path_factory.mktemp("sweep")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WINIT_DATA_DIR", str(mnist_path))
        mp.setenv("XDG_CACHE_HOME", str(here / "xdg-cache"))
        mp.chdir(here)
        result = invoke(*SWEEP)
    assert result.exit_code == 0, result.output
    (sweep_dir,) = (here / "out" / "sweeps").iterdir()
    (claim,) = (sweep_dir / ".claims").iterdir()
    return {"sweep": sweep_dir.relative_to(here).as_posix(), "claim": claim.name}


# (command, the path winit writes, relative to the folder the command is given); {sweep},
# {claim} and {run} are filled in per test. A folder winit writes whole (a report, a run's
# event files) is planted as itself and as a file in it.
WRITES = [
    ("run", "R/runs.csv"), ("run", "R/.runs.csv.lock"),
    ("sweep", "{sweep}/sweep.yaml"), ("sweep", "{sweep}/comparison.csv"),
    ("sweep", "{sweep}/runs/runs.csv"), ("sweep", "{sweep}/runs/.runs.csv.lock"),
    ("sweep", "{sweep}/.claims/{claim}"),
    ("report", "R/report"), ("report", "R/report/summary.csv"),
    ("report", "R/report/plots/accuracy_vs_depth.png"),
    ("index", "R/runs.csv"), ("index", "R/.runs.csv.lock"),
    ("export", "R/tensorboard/{run}"), ("export", "R/tensorboard/{run}/events.out.tfevents.0"),
]
LOCKS = (".runs.csv.lock", ".lock")  # opened read-only: a read-only one serves as well


def plant(path: Path, kind: str, outside: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        path.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("MINE\n")
        path.chmod(0o444)


def snapshot(path: Path) -> tuple:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return ("link", os.readlink(path))
    if stat.S_ISFIFO(st.st_mode):
        return ("fifo",)
    return ("file", path.read_bytes(), stat.S_IMODE(st.st_mode))


def tree(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("kind", ["symlink", "fifo", "readonly"])
@pytest.mark.parametrize(("command", "where"), WRITES, ids=[f"{c}:{w}" for c, w in WRITES])
def test_every_write_path_refuses_what_is_not_its_own(command, where, kind, winit_data_dir,
                                                      finished_run, sweep_layout, tmp_path,
                                                      monkeypatch):
    """Whatever stands at a path winit writes: the command ends (no FIFO hangs it), with exit 0
    and a note (the index never fails a run) or one error line and exit 2, never a traceback;
    the planted thing is as it was, and nothing outside the results folder is touched."""
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "v").write_text(PRECIOUS)
    if command in ("report", "index", "export"):
        copy_run(finished_run, tmp_path / "R")
    target = tmp_path / where.format(run=finished_run.name, **sweep_layout)
    is_folder = target.name in ("report", finished_run.name)
    plant(target, kind, outside if is_folder else outside / "v")
    before = snapshot(target)

    args = {"run": ["run", QUICK, *TINY, "--set", "output_dir=R"], "sweep": SWEEP,
            "report": ["report", "R"], "index": ["index", "rebuild", "R"],
            "export": ["export", "tensorboard", "R"]}[command]
    if command == "export":
        pytest.importorskip("tensorboard")
    result = invoke(*args)
    out = " ".join(text_of(result).split())
    assert result.exit_code in (0, 2), out
    assert result.exception is None or isinstance(result.exception, SystemExit), out
    assert "Traceback" not in out
    if result.exit_code == 2:
        assert len([ln for ln in result.stderr.splitlines() if ln.strip()]) == 1, out
    elif not (kind == "readonly" and target.name.endswith(LOCKS)):
        assert {"symlink": "a symbolic link", "fifo": "a FIFO",
                "readonly": "a read-only file"}[kind] in out, out
    assert snapshot(target) == before
    assert tree(outside) == {Path("v"): PRECIOUS.encode()}


# --- links to run folders kept elsewhere ---------------------------------------------------------


def test_runs_linked_into_results_are_read_and_never_written(finished_run, tmp_path):
    """A user links run folders kept elsewhere into results/ (legitimate): `report`, `index
    rebuild` and `export tensorboard` read through the links (all three said 'no run folders
    found': the walk did not follow them) and write only in results/ itself; the linked folders
    stay byte for byte as they were, and a link back up the tree is no endless walk."""
    elsewhere, results = tmp_path / "elsewhere", tmp_path / "results"
    kept = copy_run(finished_run, elsewhere)
    results.mkdir()
    (results / kept.name).symlink_to(kept)
    (results / "loop").symlink_to(tmp_path)  # reaches elsewhere/ and results/ again
    before = {p: p.read_bytes() for p in kept.rglob("*")}
    report = invoke("report", results)
    assert report.exit_code == 0, text_of(report)
    summary = pd.read_csv(results / "report" / "summary.csv")
    assert list(summary.run_id) == [kept.name]  # once, though reachable three ways
    assert invoke("index", "rebuild", results).exit_code == 0
    assert list(pd.read_csv(results / "runs.csv").run_id) == [kept.name]
    export = invoke("export", "tensorboard", results)
    assert export.exit_code == 0, text_of(export)
    assert list((results / "tensorboard").iterdir())
    assert {p: p.read_bytes() for p in kept.rglob("*")} == before
    assert sorted(p.name for p in elsewhere.iterdir()) == [kept.name]
