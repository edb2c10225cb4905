"""scripts/readme_results.py, which writes the docs' results page (docs/results.md) from reruns
of its sweeps: its markers are all on that page, and what it writes is what the runs' files
hold."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS_PAGE = REPO / "docs" / "results.md"
README = REPO / "README.md"


def test_every_results_block_has_its_markers():
    """A block without markers would be left stale: the script refuses, the results page has
    the sweeps' blocks and the README the quickstart's output and the headline table, and no
    other page holds a second copy that would go stale."""
    pages = {RESULTS_PAGE: ("timing", "relu30", "tanh20", "mean1", "l2", "phase", "spectra",
                            "bn50", "resmlp100", "norm_rescue"),
             README: ("quickstart", "headline"),
             REPO / "docs" / "widths.md": ("widths",)}  # scripts/width_results.py
    every = [*(REPO / "docs").rglob("*.md"), README]
    for page, names in pages.items():
        text = page.read_text()
        for name in names:
            assert text.count(f"<!-- results:{name} -->") == 1, name
            assert text.count(f"<!-- /results:{name} -->") == 1, name
            others = [p for p in every if p != page and f"<!-- results:{name} -->" in p.read_text()]
            assert not others, (name, others)


@pytest.mark.mnist
@pytest.mark.slow
def test_the_written_numbers_are_the_runs_numbers(tmp_path: Path, mnist_path: Path):
    """The mean-1 sweep, made small (--set), rerun and written out (--print: the README and
    docs/ stay untouched): its accuracies and dz ratios are those in the report's CSVs."""
    before = RESULTS_PAGE.read_bytes()
    # PYTHONPATH: this checkout's winit, whichever checkout the environment was installed from.
    env = {**os.environ, "WINIT_DATA_DIR": str(mnist_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme_results.py"), "--only", "mean1",
         "--set", "model.width=32", "--set", "train.steps=20", "--set", "data.subset=1000",
         "--out", str(tmp_path), "--print"],
        capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split("--- mean1")[1].split("mean1: ")[0].split())
    summary = pd.read_csv(tmp_path / "report-mean1" / "summary.csv")
    agg = pd.read_csv(tmp_path / "report-mean1" / "aggregate.csv")
    shallow = summary[(summary.scheme == "mean1_normal") & (summary.depth == 3)].iloc[0]
    assert f"layer 1 is 10^{shallow.log10_first_to_last_measured:.1f} times" in text
    for _, row in agg.iterrows():  # a diverged run is stopped where it diverged: no accuracy
        assert (f"{100 * row.test_accuracy_mean:.1f}%" if pd.notna(row.test_accuracy_mean)
                else "no accuracy") in text, row.scheme
    assert re.search(r"took \d+\.\d minutes; docs not rewritten", proc.stdout)
    assert RESULTS_PAGE.read_bytes() == before


def test_every_name_the_script_writes_has_markers_and_figures(monkeypatch):
    """Each NAME in the script's SWEEPS has one marker pair in one page, and every figure it
    copies is in docs/ and shown by that page (a name added without them would fail only after
    its sweep had run)."""
    import importlib.util

    # the script imports its neighbours (report_browser) as run from scripts/ itself
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location("readme_results",
                                                  REPO / "scripts" / "readme_results.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    for name in [*script.SWEEPS, "headline", "timing"]:
        page = script.page_of(*script.results_markers(name)).read_text()
        for _, target in script.FIGURES.get(name, []):
            assert (REPO / "docs" / target).is_file(), target
            assert f"]({target})" in page, target
        for _, target in script.SCREENSHOTS.get(name, []):
            assert (REPO / "docs" / target).is_file(), target
            assert f"]({target})" in page, target


@pytest.mark.mnist
@pytest.mark.slow
def test_phase_and_spectra_texts_are_their_runs_numbers(tmp_path: Path, mnist_path: Path):
    """The phase diagram and the depth-32 spectra, made tiny (--set), rerun and printed: the
    agreement count is phase.csv's own, and each spread and var ratio is the mean of the runs'
    summary.json values (each quantity recomputed here from the files)."""
    import json

    env = {**os.environ, "WINIT_DATA_DIR": str(mnist_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme_results.py"), "--only", "phase",
         "--only", "spectra", "--set", "model.width=16", "--set", "train.steps=3",
         "--set", "data.subset=600", "--out", str(tmp_path), "--print"],
        capture_output=True, text=True, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stderr
    phase_text = " ".join(proc.stdout.split("--- phase")[1].split("phase: ")[0].split())
    (grid_csv,) = tmp_path.glob("sweeps/phase-*/phase.csv")
    grid = pd.read_csv(grid_csv)
    right = int((grid.trained == grid.predicted_trainable).sum())
    assert f"classifies {right} of {len(grid)} cells correctly" in phase_text
    spectra_text = " ".join(proc.stdout.split("--- spectra")[1].split("spectra: ")[0].split())
    for label, activation, orthogonal in (("tanh, orthogonal", "tanh", True),
                                          ("ReLU, Gaussian (He)", "relu", False)):
        blocks = [json.loads(p.read_text())["jacobian"]
                  for p in tmp_path.glob(f"sweeps/spectra32-*/runs/*_{activation}_"
                                         f"{orthogonal}_s*/summary.json")]
        assert len(blocks) == 2
        var_ratio = sum(b["var_ratio"] for b in blocks) / 2
        spread = sum(b["spread"] for b in blocks) / 2
        assert f"**{label}**: var(s^2)/mean(s^2)^2 {var_ratio:.3g}" in spectra_text
        assert f"spread {spread:.2f} over s > 1e-6 max" in spectra_text
