"""report.html as a reader sees it: rendered by a real browser (Debian's Chromium, headless,
which scripts/setup.sh installs), laid out without sideways scrolling at 800 and 1280 pixels.

The layout is measured by scripts/report_browser.py (the page's scroll width against its
viewport, and every element's right edge). The report is of two tiny real MNIST runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from winit_cli.app.report import build_report
from winit_cli.config import load_config
from winit_cli.runner.group import load_splits, run_group

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("report_browser",
                                               REPO / "scripts" / "report_browser.py")
report_browser = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report_browser)


def _config(out: Path, scheme: str):
    return load_config(None, [
        # a long name: long run ids in the table are what pushed the page sideways
        f"name=a_rather_long_run_name_for_the_table_{scheme}", f"init.scheme={scheme}",
        "model.depth=6", "model.width=32", "data.subset=500", "data.val_size=500",
        "train.steps=20", "record.every=5", f"output_dir={out}"])


@pytest.fixture(scope="module")
def report_html(tmp_path_factory, mnist_path: Path) -> Path:
    assert report_browser.browser() is not None, \
        "no Chromium on PATH: run scripts/setup.sh --tests as root, or apt-get install chromium"
    root = tmp_path_factory.mktemp("runs")
    configs = [_config(root, s) for s in ("he_normal", "xavier_uniform")]
    run_group(configs, load_splits(configs[0], mnist_path))
    return build_report([root], out=root / "report").out / "report.html"


@pytest.mark.mnist
@pytest.mark.parametrize("width", [800, 1280])
def test_report_fits_the_window(report_html: Path, width: int):
    """No sideways scrolling: the page is no wider than the window, no element ends past its
    right edge, the tables fit without scrolling in their own box, and every figure shows."""
    found = report_browser.layout(report_html, width)
    assert found["client"] == width
    assert found["scroll"] <= found["client"], found
    assert found["over"] == [], found
    assert found["scrolling"] == 0, found
    assert found["images"] == report_html.read_text().count("<img") > 0
    assert found["unloaded"] == 0
    assert found["broken"] == [], found  # no word split across lines in the runs tables
    assert found["figures"] == found["images"] and found["uncaptioned"] == 0, found
    assert found["enlarges"] is True  # a click shows a figure at its full size


def test_the_check_sees_a_word_broken_and_a_figure_uncaptioned(tmp_path: Path):
    """The measurement can fail: a narrow cell that may break anywhere splits a word, and a
    figure with no caption is counted."""
    page = tmp_path / "page.html"
    page.write_text("<!doctype html><html><body><table><tr><td style='width:3em;"
                    "overflow-wrap:anywhere'>xavier_normal_initialisation</td></tr></table>"
                    "<figure><img alt='a' src='data:image/gif;base64,R0lGODlhAQABAAAAACw="
                    "'></figure></body></html>")
    found = report_browser.layout(page, 800)
    assert found["broken"] and found["uncaptioned"] == 1, found


def test_the_check_sees_overflow(tmp_path: Path):
    """The measurement can fail: a 2000-pixel table is named as sticking out of an 800-pixel
    window, and a long unbreakable line makes the page wider than the window."""
    table, line = tmp_path / "table.html", tmp_path / "line.html"
    table.write_text("<!doctype html><html><body><table style='width:2000px'><tr><td>a</td>"
                     "</tr></table></body></html>")
    line.write_text("<!doctype html><html><body><p>" + "x" * 400 + "</p></body></html>")
    found = report_browser.layout(table, 800)
    assert found["scroll"] > found["client"] == 800
    assert any(o.startswith("table ends at 20") for o in found["over"]), found
    assert report_browser.layout(line, 800)["scroll"] > 800


@pytest.mark.mnist
def test_screenshot_is_the_window_width(report_html: Path, tmp_path: Path):
    """The screenshots in docs/ are what a window of that width shows."""
    from matplotlib.image import imread

    image = imread(report_browser.screenshot(report_html, 800, tmp_path / "shot.png"))
    assert image.shape[:2] == (report_browser.HEIGHT, 800)
    assert image[..., :3].std() > 0.05  # not a blank page
