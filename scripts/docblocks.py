"""The one helper that rewrites script-written blocks of the docs pages. Every number on the docs
site that comes from a run sits between two marker lines, written there by the script that
measured it:

    <!-- results:NAME --> ... <!-- /results:NAME -->     scripts/readme_results.py (docs/results.md)
    <!-- results:planted -->, <!-- results:mutation -->   planted_bugs.py, mutation.py (testing.md)
    <!-- bench_train:start --> ... :end -->             benchmarks/bench_train.py (performance.md)
    <!-- bench_cli:start --> ... :end -->               benchmarks/bench_cli.py (performance.md)
    <!-- bench_watch:DEVICE:start --> ... :end -->      benchmarks/bench_watch.py (your-own-loop.md)
    <!-- bench_ray:start -->, <!-- bench_ray_phase:start --> ... :end -->
                                                        benchmarks/bench_ray.py (cluster.md)

A script names its block, not a page: the block is found in whichever page of docs/, or the
README, holds its markers (exactly one must), so a block can move between pages without touching
the script. The README holds one: `results:headline`, the "Which init should I use?" table.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"


def results_markers(name: str) -> tuple[str, str]:
    """The markers of readme_results.py's (and the test scripts') block NAME."""
    return f"<!-- results:{name} -->", f"<!-- /results:{name} -->"


def page_of(start: str, end: str, docs: Path = DOCS) -> Path:
    """The one docs page holding the `start` ... `end` block; SystemExit naming the markers if
    none or several do (a script must refuse before it runs for minutes, not after)."""
    readme = docs.parent / "README.md"
    candidates = [*sorted(docs.rglob("*.md")), *([readme] if readme.is_file() else [])]
    pages = [p for p in candidates if start in p.read_text()]
    if len(pages) != 1:
        where = ", ".join(str(p.relative_to(docs.parent)) for p in pages) or "no page"
        raise SystemExit(f"{start} ... {end}: expected in exactly one page of {docs}, "
                         f"found in {where}")
    text = pages[0].read_text()
    if text.count(start) != 1 or text.count(end) != 1 or text.index(end) < text.index(start):
        raise SystemExit(f"{pages[0]}: expected one {start} followed by one {end}")
    return pages[0]


def replace_block(text: str, start: str, end: str, body: str) -> str:
    """`text` with what lies between the marker lines `start` and `end` replaced by `body`."""
    i, j = text.index(start) + len(start), text.index(end)
    return text[:i] + "\n" + body.strip("\n") + "\n" + text[j:]


def rewrite_block(start: str, end: str, body: str, docs: Path = DOCS) -> Path:
    """Replace the block in the page that holds it; returns that page."""
    page = page_of(start, end, docs)
    page.write_text(replace_block(page.read_text(), start, end, body))
    return page
