"""Damaged and mislabelled records: the corpus of damaged run folders (tests/corpus/runs, made by
tests/corpus/make_damaged_runs.py) through `winit report`, a report written whole or not at
all, repeats shown as repeats, the runs index (runs.csv) that never fails a run, and no verdict
for a run that failed or recorded nothing."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from cli_text import plain
from typer.testing import CliRunner

from winit_cli.app.report import build_report
from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.errors import ResultsError
from winit_cli.measure.quantities import columns
from winit_cli.records.index import INDEX_COLUMNS, append_index, rebuild_index
from winit_cli.records.reader import read_record
from winit_cli.records.rows import aggregate, rows_frame
from winit_cli.records.writer import environment, first_record, utcnow
from winit_cli.runner.member import assemble
from winit_cli.status import Status
from winit_cli.training.loop import MemberLog

CORPUS = Path(__file__).parents[2] / "corpus" / "runs"

# The reason `winit report` gives for leaving each damaged run out.
SKIPPED = {
    "layers_junk_row": "layers.csv line 11: step is 'this line is not a row",
    "layers_text_in_number": "layers.csv line 3: act_grad_norm is 'abc', not a number",
    "layers_extra_fields": "layers.csv is unreadable (Error tokenizing data",
    "layers_empty_step": "layers.csv line 4: step is empty",
    "layers_header_only": "layers.csv has no records",
    "layers_not_utf8": "layers.csv is unreadable ('utf-8' codec",
    "layers_missing": "layers.csv is missing",
    "layers_truncated": "layers.csv is truncated",
    "metrics_text_in_number": "metrics.csv line 3: train_loss is '1.2.3', not a number",
    "summary_not_utf8": "summary.json unreadable (not UTF-8: byte 0xe9",
    "summary_truncated": "summary.json unreadable (not JSON",
    "summary_verdict_int": "summary.json: verdict: Input should be a valid dictionary",
    "summary_depth_text": "summary.json: depth: Input should be a valid integer",
    "summary_status_unknown": "summary.json: status: Input should be",
    "summary_newer_schema": "schema version 99 is newer than this winit's",
    "summary_list": "summary.json: not a JSON object",
    "summary_deep": "summary.json unreadable (not JSON",
}
INCLUDED = {"good", "hostile_config"}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the corpus, plus damage git cannot hold: a FIFO as layers.csv."""
    runs = tmp_path / "runs"
    shutil.copytree(CORPUS, runs)
    fifo = runs / "layers_fifo"
    shutil.copytree(runs / "good", fifo)
    (fifo / "layers.csv").unlink()
    import os

    os.mkfifo(fifo / "layers.csv")
    return runs


def test_corpus_matches_its_generator():
    """Every damaged folder has an expected reason, and every expected reason a folder."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make", CORPUS.parent / "make_damaged_runs.py")
    make = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make)
    DAMAGE = make.DAMAGE  # noqa: N806
    assert set(DAMAGE) == set(SKIPPED) | {"hostile_config"}
    assert {p.name for p in CORPUS.iterdir() if p.is_dir()} == set(DAMAGE) | {"good"}


def test_report_skips_each_damaged_run_with_its_reason(corpus, tmp_path):
    """One damaged file never stops the report: each damaged run is one 'not included' line
    with its reason, and the healthy runs are reported."""
    result = invoke("report", str(corpus), "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.output + repr(result.exception)
    text = plain(result.output)
    reasons = dict(re.findall(r"not included: (\S+): (.*)", text))
    assert set(reasons) == set(SKIPPED) | {"layers_fifo"}, reasons
    for name, reason in SKIPPED.items():
        assert reason in reasons[name], (name, reasons[name])
    assert "not a regular file" in reasons["layers_fifo"]
    summary = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert set(summary.path) == INCLUDED
    # the numbers reported are the good run's own
    good = json.loads((corpus / "good" / "summary.json").read_text())
    assert summary.test_accuracy.tolist() == [good["final"]["test_accuracy"]] * 2


def test_repeats_of_one_seed_are_repeats_not_seeds(corpus, tmp_path):
    """`good` and `hostile_config` are the same config and seed (same config hash): one seed
    run twice, not two seeds. The aggregate says so, and the text never says 'mean of 2 seeds'."""
    build_report([corpus], out=tmp_path / "report")
    agg = pd.read_csv(tmp_path / "report" / "aggregate.csv")
    (row,) = agg.itertuples()
    assert (row.runs, row.n_seeds, row.repeats, str(row.seeds)) == (2, 1, 1, "0")
    assert pd.isna(row.test_accuracy_std)  # one seed has no spread (was 0: two "seeds")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "mean of 2 seeds" not in text and "1 repeat of the same seed counted once" in text


def test_aggregate_averages_repeats_before_seeds():
    """Seed 0 run twice (accuracies 0.5, 0.7) and seed 1 once (0.9): the mean over seeds is
    (0.6 + 0.9) / 2, the std that of {0.6, 0.9}; runs 3, seeds 2, repeats 1."""
    base = {"dataset": "mnist", "model_kind": "mlp", "scheme": "he_normal", "activation": "relu",
            "depth": 3, "width": "8", "status": "complete", "verdict": "healthy"}
    rows = [{**base, "seed": 0, "config_hash": "h0", "test_accuracy": 0.5, "path": "a"},
            {**base, "seed": 0, "config_hash": "h0", "test_accuracy": 0.7, "path": "b"},
            {**base, "seed": 1, "config_hash": "h1", "test_accuracy": 0.9, "path": "c"}]
    (row,) = aggregate(rows_frame(rows, []), []).itertuples()
    assert (row.runs, row.n_seeds, row.repeats) == (3, 2, 1)
    assert row.test_accuracy_mean == pytest.approx(0.75)
    assert row.test_accuracy_std == pytest.approx(pd.Series([0.6, 0.9]).std())


def test_report_is_written_whole_or_not_at_all(corpus, tmp_path, monkeypatch):
    """A failure half way through (after summary.csv, while the figures are saved) leaves the
    previous report byte for byte, and no staging folder behind."""
    out = tmp_path / "report"
    build_report([corpus / "good"], out=out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    import winit_cli.app.report as report_module

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(report_module, "write_text", broken)
    with pytest.raises(ResultsError, match="No space left on device.*previous report"):
        build_report([corpus], out=out)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]


def test_report_never_replaces_a_folder_that_is_not_a_report(corpus, tmp_path):
    """--out pointing at a folder of other files is refused (replacing it would delete them)."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(ResultsError, match="holds files winit did not write"):
        build_report([corpus / "good"], out=out)
    assert (out / "notes.txt").read_text() == "keep me"


# --- runs.csv -------------------------------------------------------------------------------------


def _results_with_two_runs(tmp_path: Path) -> Path:
    results = tmp_path / "results"
    for name in ("20260101-000000_a", "20260102-000000_b"):
        shutil.copytree(CORPUS / "good", results / name)
        summary = json.loads((results / name / "summary.json").read_text())
        summary["run_id"], summary["started_at"] = name, name[:8]
        (results / name / "summary.json").write_text(json.dumps(summary))
    return results


def test_non_utf8_index_is_rebuilt_not_fatal(tmp_path):
    """A runs.csv that is not UTF-8 made every later run exit 1; now it is rebuilt from the
    folders, and the run that found it is indexed with the rest."""
    results = _results_with_two_runs(tmp_path)
    (results / "runs.csv").write_bytes(b"run_id,\xff\xfe garbage\n")
    record = read_record(results / "20260102-000000_b")
    note = append_index(results, record, results / "20260102-000000_b")
    assert "rebuilt" in note
    index = pd.read_csv(results / "runs.csv")
    assert list(index.columns) == list(INDEX_COLUMNS)
    assert list(index.run_id) == ["20260101-000000_a", "20260102-000000_b"]


def test_index_without_trailing_newline_gets_no_glued_row(tmp_path):
    results = _results_with_two_runs(tmp_path)
    rebuild_index(results)
    text = (results / "runs.csv").read_text()
    (results / "runs.csv").write_text(text.rstrip("\n"))  # edited by hand, newline lost
    record = read_record(results / "20260101-000000_a")
    assert append_index(results, record, results / "20260101-000000_a") is None
    index = pd.read_csv(results / "runs.csv")
    assert len(index) == 3 and index.run_id.tolist()[-1] == "20260101-000000_a"
    assert list(index.columns) == list(INDEX_COLUMNS)


def test_unwritable_index_is_a_note_not_an_error(tmp_path):
    """runs.csv a directory (unwritable): append_index says so and raises nothing."""
    results = _results_with_two_runs(tmp_path)
    (results / "runs.csv").mkdir()
    record = read_record(results / "20260101-000000_a")
    note = append_index(results, record, results / "20260101-000000_a")
    assert note and "winit index rebuild" in note


def test_index_rebuild_command(tmp_path):
    """`winit index rebuild DIR` rewrites every runs.csv under DIR from the run folders: loose
    runs and a sweep's runs, leaving out a damaged run and one still running."""
    results = _results_with_two_runs(tmp_path)
    sweep_runs = results / "sweeps" / "s-abc123" / "runs"
    shutil.copytree(CORPUS / "good", sweep_runs / "20260103-000000_c")
    shutil.copytree(CORPUS / "summary_truncated", results / "20260104-000000_damaged")
    running = results / "20260105-000000_running"
    shutil.copytree(CORPUS / "good", running)
    summary = json.loads((running / "summary.json").read_text())
    (running / "summary.json").write_text(json.dumps({**summary, "status": "running"}))
    (results / "runs.csv").write_text("stale\n")
    result = invoke("index", "rebuild", str(results))
    assert result.exit_code == 0, result.output
    assert f"{results / 'runs.csv'}: 2 run(s)" in plain(result.output).replace("\n", "")
    index = pd.read_csv(results / "runs.csv")
    assert index.path.tolist() == [str(results / "20260101-000000_a"),
                                   str(results / "20260102-000000_b")]
    assert len(pd.read_csv(sweep_runs / "runs.csv")) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("index", "rebuild", str(empty))
    assert result.exit_code == 2 and "no run folders" in result.stderr


# --- no verdict without a measurement -------------------------------------------------------------


def _start(config):
    return first_record(config, "r", utcnow(), environment("cpu", True), None)


def _log(config, steps: list[int], status: str) -> MemberLog:
    log = MemberLog(config)
    depth = config.model.depth
    sizes = [784, *config.model.hidden_widths(), 10]
    log.layer_shapes = list(zip(sizes[:-1], sizes[1:], strict=True))
    for s in steps:
        log.layer_steps.append((s, 0))
        values = torch.ones(depth, len(columns()), dtype=torch.float64)
        log.layer_values.append(values)
    log.status = Status(status)
    return log


def test_failed_run_has_no_verdict_and_says_why():
    """A failed run was 'healthy: gradients stay within the thresholds'; now it has no verdict
    and its text says why it failed, although it recorded steps before failing."""
    config = load_config(None, ["model.depth=3", "model.width=8"])
    result = assemble(_log(config, [0, 10], "failed"), _start(config), 1.0,
                      "RuntimeError: simulated")
    assert result.record.status is Status.FAILED and result.record.verdict is None
    assert result.record.verdict_text == "no verdict: the run failed (RuntimeError: simulated)"
    assert len(result.layers) == 6  # what was recorded is kept


def test_run_that_recorded_nothing_has_no_verdict():
    """Ctrl-C before step 0 was measured: interrupted, no verdict (was 'healthy')."""
    config = load_config(None, ["model.depth=3", "model.width=8"])
    result = assemble(_log(config, [], "interrupted"), _start(config), 1.0, "interrupted")
    assert result.record.status is Status.INTERRUPTED and result.record.verdict is None
    assert "nothing was recorded" in result.record.verdict_text
    recorded = assemble(_log(config, [0], "complete"), _start(config), 1.0)
    assert recorded.record.verdict is not None and recorded.record.verdict.verdict == "healthy"


TINY = {"model": {"depth": 3, "width": 16}, "train": {"steps": 6, "batch_size": 64},
        "data": {"subset": 600, "val_size": 200}, "record": {"every": 2}}


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_a_member_that_fails_mid_run_has_no_verdict_anywhere(tmp_path, monkeypatch):
    """A sweep member failing after step 2: summary.json, the runs index and comparison.csv
    all say failed with no verdict (they said 'healthy'), and say why."""
    import winit_cli.runner.group as experiment
    from winit_cli.sweeps import comparison, executors
    from winit_cli.sweeps import plan as planning
    from winit_cli.sweeps.spec import SweepSpec

    real = experiment.train

    def train(configs, splits, *, on_progress=None, **kwargs):
        def progress(step, total, info):
            if step >= 2:
                raise RuntimeError("simulated failure at step 2")
        return real(configs, splits, on_progress=progress, **kwargs)

    monkeypatch.setattr(experiment, "train", train)
    spec = SweepSpec("f", {**TINY, "output_dir": str(tmp_path)}, {"init.scheme": ["normal"]})
    plan = planning.plan(spec)
    frame = comparison.run_sweep(plan, spec, executors.InProcessExecutor(experiment.load_splits))
    (row,) = frame.itertuples()
    assert row.status == "failed" and pd.isna(row.verdict)
    assert "simulated failure at step 2" in row.error
    (run_dir,) = [p for p in (plan.directory / "runs").iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["verdict"] is None and "simulated failure" in summary["verdict_text"]
    assert pd.read_csv(run_dir / "layers.csv").step.max() == 2  # what was measured is kept
    index = pd.read_csv(plan.directory / "runs" / "runs.csv")
    assert index.status.tolist() == ["failed"] and index.verdict.isna().all()


@pytest.mark.mnist
@pytest.mark.usefixtures("winit_data_dir")
def test_an_error_while_assembling_the_record_leaves_no_run_running(tmp_path, monkeypatch):
    """If the theory or the diagnosis raises once training is done (gelu with std 1e99 once
    did), the run is saved as failed with its tables, never left on 'running'."""
    import winit_cli.runner.group as experiment
    import winit_cli.runner.member as member

    def broken(*args, **kwargs):
        raise FloatingPointError("overflow in the mean-field integral")

    monkeypatch.setattr(member, "predict_run", broken)
    config = load_config(None, [f"output_dir={tmp_path}", "model.depth=3", "model.width=16",
                                "train.steps=4", "data.subset=600", "record.every=2"])
    (outcome,) = experiment.run_group([config], experiment.load_splits(config))
    summary = json.loads((outcome.run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["verdict"] is None
    assert "FloatingPointError while assembling the record" in summary["error"]
    assert sorted(set(pd.read_csv(outcome.run_dir / "layers.csv").step)) == [0, 2, 4]
