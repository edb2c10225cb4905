"""Look at a report.html the way a reader does: in a real browser (headless Chromium, which
scripts/setup.sh installs from Debian where it can), at a given window width.

    .venv/bin/python scripts/report_browser.py results/report/report.html --width 800
    ... --width 1280 --png docs/report_1280px.png     # and a screenshot of the top of the page

Prints the page's layout as JSON: the viewport's width (`client`), the page's scroll width
(`scroll`: wider than `client` means the reader must scroll sideways) and the elements whose
right edge lies past the viewport (`over`, outside boxes that scroll on their own: a wide table
scrolls in its `.wide` box, which must itself fit; `scrolling` counts the tables that do),
`images` and `unloaded` (figures that did not display), `broken` (words in table cells that the
layout split across lines: "xavier_nor mal"; a break after _ - / is between words), `figures`
and `uncaptioned` (figures without a caption), and `enlarges` (whether a click on the widest
figure, shown smaller than it is, shows it at its full size).
tests/integration/test_report_browser.py checks these.

How: a copy of the page with a small script that, once everything (the embedded figures too)
has loaded, measures the layout and writes it into the page as JSON; `chromium --dump-dom`
prints the page as it then is. Nothing but the copy is changed.
"""

from __future__ import annotations

import argparse
import html
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
HEIGHT = 1600  # of the window; a screenshot shows this much of the page's top

# Measures after the load event (figures decoded and laid out), then appends the result.
PROBE = """<script>addEventListener('load', () => {
  const root = document.documentElement, width = root.clientWidth, over = [];
  for (const e of document.querySelectorAll('body *')) {
    if (e.closest('.wide') && !e.classList.contains('wide')) continue;
    const r = e.getBoundingClientRect();
    if (r.right > width + 0.5) over.push(e.tagName.toLowerCase() + ' ends at ' +
      Math.round(r.right) + 'px: ' + (e.textContent || e.alt || '').trim().slice(0, 40));
  }
  // Words (letters, digits, dots) in table cells that the layout broke across lines.
  const broken = [];
  for (const cell of document.querySelectorAll('td, th')) {
    const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node; (node = walk.nextNode());) {
      for (const m of node.textContent.matchAll(/[A-Za-z0-9.]+/g)) {
        const range = document.createRange();
        range.setStart(node, m.index);
        range.setEnd(node, m.index + m[0].length);
        const tops = new Set([...range.getClientRects()].map(r => Math.round(r.top)));
        if (tops.size > 1) broken.push(m[0]);
      }
    }
  }
  const figures = [...document.querySelectorAll('figure')];
  const uncaptioned = figures.filter(f => !(f.querySelector('figcaption')?.textContent.trim()))
    .length;
  // A click on a figure shown smaller than it is shows it at full size; a second click puts
  // it back. Tried on the widest figure (null: none is shown smaller).
  let enlarges = null;
  const widest = [...document.querySelectorAll('figure img')]
    .sort((a, b) => b.naturalWidth - a.naturalWidth)[0];
  if (widest && widest.getBoundingClientRect().width < widest.naturalWidth - 1) {
    widest.click();
    enlarges = Math.abs(widest.getBoundingClientRect().width - widest.naturalWidth) < 1;
    widest.click();
  }
  const out = document.createElement('pre');
  out.id = 'winit-layout';
  out.textContent = JSON.stringify({client: width, scroll: root.scrollWidth,
    over: over.slice(0, 20), images: document.images.length, broken: broken.slice(0, 20),
    figures: figures.length, uncaptioned, enlarges,
    scrolling: [...document.querySelectorAll('.wide')].filter(w => w.scrollWidth > w.clientWidth)
      .length,
    unloaded: [...document.images].filter(i => !i.complete || !i.naturalWidth).length});
  document.body.appendChild(out);
});</script>"""


def browser() -> str | None:
    """The Chromium on PATH, or None."""
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def _chromium(page: Path, width: int, *args: str) -> str:
    exe = browser()
    if exe is None:
        sys.exit("no Chromium on PATH: bash scripts/setup.sh --tests installs Debian's as root, or "
                 "apt-get install chromium")
    with tempfile.TemporaryDirectory() as profile:
        # --no-sandbox: Chromium refuses to run as root otherwise (CI containers run as root).
        proc = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--user-data-dir={profile}", f"--window-size={width},{HEIGHT}",
             "--virtual-time-budget=10000", *args, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        sys.exit(f"{exe} failed ({proc.returncode}): {proc.stderr[-1000:]}")
    return proc.stdout


def layout(report: Path, width: int) -> dict:
    """The layout of `report` (an HTML file) in a window `width` pixels wide (see the top)."""
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
        dom = _chromium(page, width, "--dump-dom")
    found = re.search(r'<pre id="winit-layout">(.*?)</pre>', dom, re.S)
    if found is None:
        sys.exit(f"{report}: the page never finished loading in the browser")
    return json.loads(html.unescape(found.group(1)))


def screenshot(report: Path, width: int, png: Path) -> Path:
    """A PNG of the top HEIGHT pixels of `report` as a `width`-pixel window shows it."""
    png.parent.mkdir(parents=True, exist_ok=True)
    _chromium(report, width, f"--screenshot={png.resolve()}")
    if not png.is_file():
        sys.exit(f"the browser wrote no screenshot to {png}")
    return png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path, help="a report.html")
    parser.add_argument("--width", type=int, default=1280, help="window width in pixels")
    parser.add_argument("--png", type=Path, help="also save a screenshot here")
    args = parser.parse_args()
    print(json.dumps(layout(args.report, args.width)))
    if args.png:
        print(f"screenshot: {screenshot(args.report, args.width, args.png)}")


if __name__ == "__main__":
    main()
