"""Rerun the width study of docs/widths.md (MNIST, depth 4, ReLU, Adam, widths 128..1024, SP
and muP) with `winit widths`, and rewrite that page's numbers and figures from its files, so
neither can drift from the code.

    .venv/bin/python scripts/width_results.py            # ~15 minutes on 2 cores
    .venv/bin/python scripts/width_results.py --out /tmp/w --print   # nothing rewritten

Two sweeps: the coordinate check (3 steps at lr 0.003) and learning-rate transfer (200 steps,
lr 2^-13 .. 2^-5, one octave apart). Both resume: a rerun with the same --out trains nothing.
The numbers go between `<!-- results:widths -->` and `<!-- /results:widths -->`
(scripts/docblocks.py finds the page), the figures to docs/widths_coord.png and
docs/widths_lr_transfer.png.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

from docblocks import results_markers, rewrite_block  # beside this script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from winit_cli.app.widths import lr_spread, read_study, verdicts  # noqa: E402

WIDTHS = "128,256,512,1024"
COORD = ["--steps", "3", "--set", "train.lr=0.003", "--name", "coord"]
LRS = ",".join(repr(2.0 ** k) for k in range(-13, -4))
LR = ["--steps", "200", "--lrs", LRS, "--name", "lr"]


def widths(args: list[str], out: Path) -> Path:
    """Run (or resume) one `winit widths` sweep; its folder."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([str(REPO / ".venv" / "bin" / "winit"), "widths", "--widths", WIDTHS,
                           *args, "--set", f"output_dir={out}", "--json"],
                          capture_output=True, text=True, env=env, check=True)
    return Path(json.loads(done.stdout)["sweep_dir"])


def block(coord_dir: Path, lr_dir: Path) -> str:
    """The page's numbers, from the sweeps' CSV files."""
    _, slopes, _ = read_study(coord_dir)
    _, _, lr = read_study(lr_dir)
    depth = int(slopes.layer.max())
    lines = ["| parametrization | output slope, step 0 | step 1 | step 3 | theory (step >= 1) "
             "| best-lr spread across widths |", "|---|---|---|---|---|---|"]
    spread = lr_spread(lr)
    for p, mine in slopes.groupby("parametrization", sort=False):
        out = mine[mine.layer == depth].set_index("step")
        lines.append(f"| {p} | {out.slope[0]:+.2f} | {out.slope[1]:+.2f} | "
                     f"{out.slope[3]:+.2f} | {out.predicted_slope[1]:+.0f} | "
                     f"{spread.get(p, float('nan')):.1f} octaves |")
    best = lr[lr.best == 1].sort_values(["parametrization", "width"])
    each = {p: ", ".join(f"{int(r.width)}: 2^{round(math.log2(r.lr))}"
                         for r in cell.itertuples())
            for p, cell in best.groupby("parametrization", sort=False)}
    lines += ["", *[f"- {v}" for v in verdicts(slopes).values()],
              *[f"- {p}: best lr per width {e}" for p, e in each.items()]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "widths")
    parser.add_argument("--print", action="store_true", help="print, rewrite nothing")
    args = parser.parse_args()
    coord_dir, lr_dir = widths(COORD, args.out), widths(LR, args.out)
    text = block(coord_dir, lr_dir)
    print(text)
    if args.print:
        return
    shutil.copyfile(coord_dir / "coord.png", REPO / "docs" / "widths_coord.png")
    shutil.copyfile(lr_dir / "lr_transfer.png", REPO / "docs" / "widths_lr_transfer.png")
    print(rewrite_block(*results_markers("widths"), text))


if __name__ == "__main__":
    main()
