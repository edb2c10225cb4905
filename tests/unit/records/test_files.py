"""records/files.py and records/folders.py on their own (no run, no dataset): what a write under
a results folder refuses, what it leaves, and what a folder's manifest allows. The fault suite
(tests/integration/test_faults_files.py) tries the same through every command."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from winit_cli.errors import ResultsError
from winit_cli.records.files import atomic_write, open_regular
from winit_cli.records.folders import MANIFEST, check_replaceable, private_folder, staged
from winit_cli.records.index import INDEX_COLUMNS, damaged_lines


@pytest.fixture
def planted(tmp_path: Path) -> dict[str, Path]:
    outside = tmp_path / "outside"
    outside.write_text("PRECIOUS\n")
    (tmp_path / "link").symlink_to(outside)
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "readonly").write_text("MINE\n")
    (tmp_path / "readonly").chmod(0o444)
    return {"link": tmp_path / "link", "fifo": tmp_path / "fifo",
            "readonly": tmp_path / "readonly", "outside": outside}


@pytest.mark.parametrize(("name", "why"), [("link", "a symbolic link"), ("fifo", "a FIFO"),
                                           ("readonly", "a read-only file")])
def test_atomic_write_refuses_what_is_not_a_writable_regular_file(planted, name, why):
    with pytest.raises(OSError, match=why):
        atomic_write(planted[name], "new\n")
    assert planted["outside"].read_text() == "PRECIOUS\n"
    assert planted["link"].is_symlink() and stat.S_ISFIFO(os.lstat(planted["fifo"]).st_mode)
    assert planted["readonly"].read_text() == "MINE\n"
    assert sorted(p.name for p in planted["outside"].parent.iterdir()) == \
        ["fifo", "link", "outside", "readonly"]  # no temp file left


@pytest.mark.parametrize("flags", [os.O_RDONLY, os.O_WRONLY, os.O_RDONLY | os.O_CREAT])
def test_open_regular_neither_follows_a_link_nor_waits_on_a_fifo(planted, flags):
    for name, why in (("link", "a symbolic link"), ("fifo", "a FIFO")):
        with pytest.raises(OSError, match=why):  # a FIFO with no writer: at once, not a hang
            open_regular(planted[name], flags)
    assert planted["outside"].read_text() == "PRECIOUS\n"


def test_open_regular_never_truncates(tmp_path):
    path = tmp_path / "f"
    path.write_text("kept\n")
    os.close(open_regular(path, os.O_WRONLY | os.O_TRUNC))
    assert path.read_text() == "kept\n"


def test_damaged_lines_are_found_line_by_line():
    good = ",".join(["x"] * len(INDEX_COLUMNS))
    text = "\n".join(["header", good, '"open,quote', "too,few", good, ""])
    assert damaged_lines(text) == ['"open,quote', "too,few"]


def test_only_a_folder_its_manifest_covers_is_replaced(tmp_path):
    out = tmp_path / "report"
    with staged(out, "test", "report") as staging:
        (staging / "plots").mkdir()
        (staging / "plots" / "a.png").write_bytes(b"png")
    assert (out / MANIFEST).is_file() and (out / "plots" / "a.png").read_bytes() == b"png"
    check_replaceable(out, "--out")  # winit's own: may be replaced
    (out / "plots" / "mine.pdf").write_bytes(b"pdf")
    with pytest.raises(ResultsError, match=r"holds files winit did not write \(plots/mine.pdf\)"):
        check_replaceable(out, "--out")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ResultsError, match="a symbolic link, not a folder winit wrote"):
        check_replaceable(tmp_path / "linked", "--out")


def test_private_folder_passes_over_a_planted_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / f"rescued-{os.geteuid()}").symlink_to(elsewhere)
    folder = private_folder(tmp_path, "rescued")
    assert folder.parent == tmp_path and not folder.is_symlink()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and folder.stat().st_uid == os.geteuid()
    assert private_folder(tmp_path, "fresh") == tmp_path / f"fresh-{os.geteuid()}"


def test_text_that_a_spreadsheet_would_run_is_neutralised():
    """A cell starting with =, +, -, @ is a formula to a spreadsheet: written with a leading
    quote; a number (-1.5) and plain text are written as they are."""
    import pandas as pd

    from winit_cli.records.files import csv_text

    frame = pd.DataFrame({"name": ["=1+2", "@sum", "-1.5", "relu"], "x": [1.0, 2.0, 3.0, 4.0]})
    lines = csv_text(frame).splitlines()
    assert lines == ["name,x", "'=1+2,1.0", "'@sum,2.0", "-1.5,3.0", "relu,4.0"]


def test_a_written_file_is_readable_by_all_and_writable_by_its_owner(tmp_path):
    """0o644 less the umask, as an ordinary file: never executable."""
    umask = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


def test_atomic_write_makes_missing_folders_unless_told_not_to(tmp_path):
    """By default every missing folder above the file is made; with parents=False a write into
    a folder that is gone fails and makes nothing (a run's folder removed under it stays
    removed)."""
    atomic_write(tmp_path / "a" / "b" / "c.txt", "x")
    assert (tmp_path / "a" / "b" / "c.txt").read_text() == "x"
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "gone" / "c.txt", "x", parents=False)
    assert not (tmp_path / "gone").exists()
