"""Time each tier of the test suite, each as its own pytest process, and write the table of the
docs' testing page (the `<!-- results:tiers -->` block) from those runs, so that the times the
docs state are measured, not remembered.

    .venv/bin/python scripts/test_tiers.py            # every tier, then the whole suite
    .venv/bin/python scripts/test_tiers.py --print    # print the table, rewrite nothing

The machine's load average before each tier is in the table: on a shared machine a tier's time
follows its neighbours' work. The unit tier runs with WINIT_DATA_DIR, WINIT_TEST_MNIST and HOME
pointing at empty folders, as its promise says (no dataset on the machine).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from docblocks import results_markers, rewrite_block  # beside this script

REPO = Path(__file__).resolve().parents[1]
TIERS = [("unit", "-m unit"), ("integration", "-m integration"), ("mnist", "-m mnist"),
         ("slow", "-m slow"), ("cluster", "-m cluster"), ("browser", "-m browser"),
         ("all tiers (CI)", "")]


def run_tier(selection: str, empty: Path | None) -> tuple[float, str]:
    """Wall seconds and pytest's closing line for one tier; its failures are printed."""
    env = dict(os.environ)
    if empty is not None:
        env.update({"WINIT_DATA_DIR": str(empty), "WINIT_TEST_MNIST": str(empty),
                    "WINIT_TEST_FASHION_MNIST": str(empty), "HOME": str(empty),
                    "XDG_CACHE_HOME": str(empty)})
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rfE", "-p",
                           "no:cacheprovider", *selection.split()], cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    for line in proc.stdout.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            print(f"  {line}", flush=True)
    closing = [line for line in proc.stdout.splitlines() if re.search(r"\d+ (passed|failed)",
                                                                      line)]
    summary = closing[-1].strip("= ") if closing else f"exit {proc.returncode}"
    return seconds, re.sub(r" in [\d.]+s.*$", "", summary)


def _clock(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--print", action="store_true", help="print, rewrite nothing")
    args = parser.parse_args()
    rows = ["| tier | command | wall time | load before | result |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as empty:
        for name, selection in TIERS:
            load = os.getloadavg()[0]
            seconds, summary = run_tier(selection, Path(empty) if name == "unit" else None)
            command = f"`pytest {selection}`".replace(" `", "`") if selection else "`pytest`"
            rows.append(f"| {name} | {command} | {_clock(seconds)} | {load:.1f} | {summary} |")
            print(rows[-1], flush=True)
    cores = os.cpu_count()
    table = "\n".join([*rows, "", f"Measured on {cores} cores, {time.strftime('%Y-%m-%d')}."])
    if args.print:
        print(table)
        return
    page = rewrite_block(*results_markers("tiers"), table)
    print(f"{page.relative_to(REPO)} rewritten")


if __name__ == "__main__":
    main()
