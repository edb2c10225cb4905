"""The run store (records/store.py): what it serves equals what the run folders hold, read here
with pandas itself; it follows folders that are added, changed and removed; a damaged store is
rebuilt; a results folder it cannot write to is reported all the same."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest
from runs_folder import make_run

from winit_cli.records.held import ByGroup
from winit_cli.records.reader import Run, Skipped
from winit_cli.records.store import STORE, RunStore


def _dirs(root):
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _runs(root) -> dict[str, Run | Skipped]:
    return {r.path: r for r in RunStore(root).sync(_dirs(root)).runs()}


def test_tables_are_the_files_as_pandas_reads_them(tmp_path):
    for i in range(4):
        make_run(tmp_path, i, crossed_at=(None, 10, 20, 0)[i])
    runs = _runs(tmp_path)
    for path, run in runs.items():
        for table in ("layers", "metrics"):
            expected = pd.read_csv(tmp_path / path / f"{table}.csv")
            pd.testing.assert_frame_equal(getattr(run, table), expected, check_exact=True)
    # the first step whose val_accuracy >= 0.9, as the metrics files were written
    assert [runs[f"run-{i:03d}"].steps_to_target for i in range(4)] == [None, 10, 20, 0]


def test_folders_added_changed_and_removed_are_followed(tmp_path):
    for i in range(5):
        make_run(tmp_path, i)
    assert len(_runs(tmp_path)) == 5
    shutil.rmtree(tmp_path / "run-001")
    make_run(tmp_path, 7, crossed_at=10)
    summary = json.loads((tmp_path / "run-002" / "summary.json").read_text())
    summary["final"]["test_accuracy"] = 0.123
    (tmp_path / "run-002" / "summary.json").write_text(json.dumps(summary))
    with open(tmp_path / "run-003" / "layers.csv", "a") as f:
        f.write("0,0,1,784")  # cut short mid-line
    runs = _runs(tmp_path)
    assert sorted(runs) == ["run-000", "run-002", "run-003", "run-004", "run-007"]
    assert runs["run-002"].record.final.test_accuracy == 0.123
    assert isinstance(runs["run-003"], Skipped) and "truncated" in runs["run-003"].reason
    assert runs["run-007"].steps_to_target == 10
    assert len(runs["run-007"].layers) == len(pd.read_csv(tmp_path / "run-007" / "layers.csv"))


def test_a_summary_changed_in_place_with_its_mtime_kept_is_read_again(tmp_path):
    """rsync -t or cp -p can keep size and mtime: the content hash still tells."""
    folder = make_run(tmp_path, 0)
    assert _runs(tmp_path)["run-000"].record.seed == 0
    path = folder / "summary.json"
    st = os.stat(path)
    path.write_text(path.read_text().replace('"seed": 0', '"seed": 9'))  # same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _runs(tmp_path)["run-000"].record.seed == 9


@pytest.mark.parametrize("damage", ["garbage", "empty", "tables gone"])
def test_a_damaged_store_is_rebuilt_from_the_folders(tmp_path, damage):
    for i in range(3):
        make_run(tmp_path, i, crossed_at=20)
    _runs(tmp_path)
    store = tmp_path / STORE
    if damage == "tables gone":
        for f in store.glob("layers-*.parquet"):
            f.unlink()
    else:
        (store / "runs.parquet").write_bytes(b"not parquet" if damage == "garbage" else b"")
    runs = _runs(tmp_path)
    assert sorted(runs) == ["run-000", "run-001", "run-002"]
    assert all(r.steps_to_target == 20 for r in runs.values())
    pd.testing.assert_frame_equal(runs["run-001"].layers,
                                  pd.read_csv(tmp_path / "run-001" / "layers.csv"))


def test_a_read_only_results_folder_is_read_without_writing(tmp_path):
    for i in range(2):
        make_run(tmp_path, i, crossed_at=10)
    (tmp_path / ".winit").symlink_to(tmp_path / "elsewhere")  # not winit's folder: left alone
    store = RunStore(tmp_path).sync(_dirs(tmp_path))
    assert not store.writable and not (tmp_path / "elsewhere").exists()
    runs = store.runs()
    assert [r.steps_to_target for r in runs] == [10, 10]
    pd.testing.assert_frame_equal(runs[0].metrics, pd.read_csv(tmp_path / "run-000/metrics.csv"))


def test_tables_are_held_one_group_at_a_time(tmp_path):
    for i in range(4):
        make_run(tmp_path, i)
    runs = {r.path: r for r in RunStore(tmp_path).sync(_dirs(tmp_path)).runs()}
    by_group = ByGroup(runs, [["run-000", "run-001"], ["run-002", "run-003"]])
    assert by_group["run-000"].layers is not None
    held = [p for p, r in runs.items() if "layers" in r.__dict__]
    assert held == ["run-000", "run-001"]
    by_group["run-003"]
    assert [p for p, r in runs.items() if "layers" in r.__dict__] == ["run-002", "run-003"]


def test_a_report_of_some_runs_keeps_the_others_stored(tmp_path):
    for i in range(3):
        make_run(tmp_path, i)
    RunStore(tmp_path).sync(_dirs(tmp_path))
    one = tmp_path / "run-001"
    store = RunStore(tmp_path).sync([one], within=[one])
    assert [r.path for r in store.runs()] == ["run-001"]
    assert sorted(store.rows) == ["run-000", "run-001", "run-002"]  # still held
    shutil.rmtree(tmp_path / "run-002")
    assert sorted(RunStore(tmp_path).sync(_dirs(tmp_path)).rows) == ["run-000", "run-001"]


def test_runs_added_over_syncs_are_appended_as_segments_then_compacted(tmp_path):
    """Each sync that reads runs in writes their tables as one more segment (the others are
    left as they are); a changed run is served from its new segment, never its old rows; past
    MAX_SEGMENTS the store is compacted into one. Every run's tables stay what pandas reads."""
    from winit_cli.records.store import MAX_SEGMENTS

    def segments():
        return sorted(f.name for f in (tmp_path / STORE).glob("layers-*.parquet"))

    make_run(tmp_path, 0)
    _runs(tmp_path)
    assert len(segments()) == 1
    make_run(tmp_path, 1, crossed_at=10)
    _runs(tmp_path)
    first, second = segments(), None
    assert len(first) == 2
    with open(tmp_path / "run-000" / "metrics.csv") as f:
        lines = f.readlines()
    (tmp_path / "run-000" / "metrics.csv").write_text("".join(lines[:-1]))  # one row fewer
    runs = _runs(tmp_path)
    second = segments()  # run-000's first segment went: no run names it any more
    assert len(second) == 2 and len(set(first) & set(second)) == 1
    for i in range(2, MAX_SEGMENTS + 2):
        make_run(tmp_path, i)
        runs = _runs(tmp_path)
        assert 1 <= len(segments()) <= MAX_SEGMENTS
    assert len(runs) == MAX_SEGMENTS + 2
    for path, run in runs.items():
        for table in ("layers", "metrics"):
            expected = pd.read_csv(tmp_path / path / f"{table}.csv")
            pd.testing.assert_frame_equal(getattr(run, table), expected, check_exact=True)
