"""A run folder's identity (records/identity.py) with summary.json hashed only where its stat
changed or could not be trusted: every change that a rewrite of summary.json makes is still
caught (ctime moves even where size and mtime are put back), an unchanged folder is not hashed
again, and a stat as new as the sync that took it ("racy", as git calls it) is not trusted. The
expected counts come from the files' own stats, taken here with os.stat."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from runs_folder import make_run

from winit_cli.records import identity as identity_module
from winit_cli.records import store as store_module
from winit_cli.records.reader import Run
from winit_cli.records.store import RunStore

LATER = 2 ** 62  # a clock reading later than any file's times: every stat is trusted
EPOCH = 0  # one earlier than every file's: none is


def _dirs(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@pytest.fixture
def hashed(monkeypatch):
    """The summary.json files hashed by each sync, as paths."""
    seen: list[str] = []
    real = identity_module.summary_hash

    def counting(path):
        seen.append(path)
        return real(path)

    monkeypatch.setattr(identity_module, "summary_hash", counting)
    return seen


def _clock(monkeypatch, reading):
    monkeypatch.setattr(store_module, "now_on_disk", lambda fd: reading)


def _sync(root):
    return {r.path: r for r in RunStore(root).sync(_dirs(root)).runs()}


def _rewrite_keeping_size_and_mtime(path, old, new):
    st = os.stat(path)
    text = path.read_text()
    assert len(old) == len(new) and old in text
    path.write_text(text.replace(old, new))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == \
        (st.st_size, st.st_mtime_ns, st.st_ino)


def test_unchanged_folders_are_not_hashed_again(tmp_path, monkeypatch, hashed):
    for i in range(4):
        make_run(tmp_path, i)
    _clock(monkeypatch, LATER)
    _sync(tmp_path)
    assert len(hashed) == 4  # a new store: every summary.json
    hashed.clear()
    runs = _sync(tmp_path)
    assert hashed == [] and sorted(runs) == [f"run-{i:03d}" for i in range(4)]


def test_a_summary_rewritten_with_size_and_mtime_put_back_is_caught_by_its_ctime(
        tmp_path, monkeypatch, hashed):
    """cp -p, touch -r or rsync --inplace -t over a summary.json: same inode, size and mtime;
    only the ctime (which no user can set) tells, and it does even where stats are trusted."""
    folder = make_run(tmp_path, 0)
    make_run(tmp_path, 1)
    _clock(monkeypatch, LATER)
    assert _sync(tmp_path)["run-000"].record.seed == 0
    ctime = os.stat(folder / "summary.json").st_ctime_ns
    _rewrite_keeping_size_and_mtime(folder / "summary.json", '"seed": 0', '"seed": 7')
    if os.stat(folder / "summary.json").st_ctime_ns == ctime:
        pytest.skip("this file system kept the ctime of a rewritten file (coarse clock)")
    hashed.clear()
    assert _sync(tmp_path)["run-000"].record.seed == 7
    assert hashed == [f"{folder}/summary.json"]  # run-001's stat unchanged: not hashed


def test_a_copied_results_folder_is_hashed_once_not_read_again(tmp_path, monkeypatch, hashed):
    """A copy keeps mtimes (cp -a) but not inodes: every summary.json is hashed, found the
    same, and not read again; its new stats are kept, so the next sync hashes none."""
    source = tmp_path / "source"
    for i in range(3):
        make_run(source, i)
    _clock(monkeypatch, LATER)
    _sync(source)
    copy = tmp_path / "copy"
    shutil.copytree(source, copy, copy_function=shutil.copy2)
    loaded = []
    real = store_module.load_runs
    monkeypatch.setattr(store_module, "load_runs",
                        lambda dirs, *a, **k: loaded.extend(dirs) or real(dirs, *a, **k))
    hashed.clear()
    runs = _sync(copy)
    assert len(hashed) == 3 and loaded == [] and all(isinstance(r, Run) for r in runs.values())
    hashed.clear()
    _sync(copy)
    assert hashed == []


def test_a_stat_as_new_as_the_sync_is_not_trusted(tmp_path, monkeypatch, hashed):
    """Racy: a summary.json whose mtime or ctime is not older than the sync's clock (read from
    the file system before any folder is stat'ed) may change again within the same tick with
    every stat kept; it is hashed by every sync until one finds it older."""
    folder = make_run(tmp_path, 0)
    own = os.stat(folder / "summary.json")
    _clock(monkeypatch, max(own.st_mtime_ns, own.st_ctime_ns))  # the same tick
    _sync(tmp_path)
    hashed.clear()
    _sync(tmp_path)
    assert hashed == [f"{folder}/summary.json"]
    _clock(monkeypatch, max(own.st_mtime_ns, own.st_ctime_ns) + 1)  # a later one: trusted
    _sync(tmp_path)
    hashed.clear()
    _sync(tmp_path)
    assert hashed == []


def _frozen_stat(monkeypatch, path, frozen):
    """os.stat as identity.py sees it, giving `path` the stat `frozen` (size, mtime and ctime
    all put back: what no user can do without setting the clock back)."""
    real = os.stat

    class Os:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def stat(p, *a, **k):
            return frozen if os.fspath(p) == os.fspath(path) else real(p, *a, **k)

    monkeypatch.setattr(identity_module, "os", Os())


@pytest.mark.parametrize("clock", ["trusted", "racy"])
def test_what_a_trusted_stat_cannot_catch(tmp_path, monkeypatch, clock):
    """The documented limit: a summary.json changed with its size, mtime and ctime all kept is
    not read again where its stat was trusted; where the stat was as new as the sync, the hash
    still catches it."""
    folder = make_run(tmp_path, 0)
    path = folder / "summary.json"
    frozen = os.stat(path)
    _clock(monkeypatch, LATER if clock == "trusted" else EPOCH)
    _sync(tmp_path)
    data = json.loads(path.read_text())
    data["final"]["test_accuracy"] = 0.5
    path.write_text(json.dumps(data))
    _frozen_stat(monkeypatch, path, frozen)
    accuracy = _sync(tmp_path)["run-000"].record.final.test_accuracy
    assert accuracy == (0.8 if clock == "trusted" else 0.5)


def test_without_a_clock_every_summary_is_hashed(tmp_path, monkeypatch, hashed):
    """Where the store's lock cannot be stamped (another user's store), no stat is trusted:
    each summary.json is hashed by every sync, as before stats were kept."""
    for i in range(2):
        make_run(tmp_path, i)
    _clock(monkeypatch, None)
    _sync(tmp_path)
    hashed.clear()
    _sync(tmp_path)
    assert len(hashed) == 2


def test_the_clock_is_the_file_systems(tmp_path):
    """now_on_disk stamps the file and returns its mtime: the same clock as the run files'."""
    fd = os.open(tmp_path / ".lock", os.O_RDONLY | os.O_CREAT)
    try:
        before = os.stat(tmp_path / ".lock").st_mtime_ns
        reading = identity_module.now_on_disk(fd)
        assert reading == os.stat(tmp_path / ".lock").st_mtime_ns and reading >= before
        (tmp_path / "after").write_text("x")
        assert os.stat(tmp_path / "after").st_mtime_ns >= reading
    finally:
        os.close(fd)
