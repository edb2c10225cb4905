"""`winit report` over many runs, against reading the same files with pandas, in the same run.

    .venv/bin/python benchmarks/bench_report_scale.py [--runs 1000] [--add 100] [--groups 10]

Makes N run folders under a temporary folder (copies of one small real run, trained here, each
with its own run id, seed and init scheme, spread over --groups groups by their width label),
then times, each as a whole `winit report` process (start-up included):

  floor   every run's summary.json (json), config.yaml (yaml) and layers.csv and metrics.csv
          (pandas.read_csv) read in this process: what any report must at least read
  cold    the first report (the results folder has no store yet)
  warm    the same report again, nothing changed
  +ADD    after --add more runs were copied in (a new sweep: one more group)

and each report's peak resident memory (its own, from wait4). Targets (issue 29): cold <= 3x
floor, +ADD <= 0.25 of cold, peak <= 2 GB. Machines are shared and noisy: read the ratios.
Everything is written under --tmp (default /tmp) and removed at the end unless --keep. With
--docs the table is written into the docs (scripts/docblocks.py's bench_report_scale block).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from docblocks import rewrite_block  # noqa: E402  scripts/docblocks.py: the docs' blocks

MARKERS = ("<!-- bench_report_scale:start -->", "<!-- bench_report_scale:end -->")
PYTHON = REPO / ".venv" / "bin" / "python"
SCHEMES = ("he_normal", "he_uniform", "xavier_normal", "xavier_uniform", "lecun_normal",
           "lecun_uniform", "orthogonal", "normal")


def train_source(folder: Path) -> Path:
    """One small real run (MNIST, depth 4, width 32, 60 steps): the folder all copies come from."""
    data = os.environ.get("WINIT_DATA_DIR") or str(
        Path(os.environ.get("WINIT_TEST_MNIST", REPO.parent / "shared/data/mnist")).parent)
    subprocess.run([str(PYTHON), "-m", "winit_cli", "run", str(REPO / "configs/quickstart.yaml"),
                    "--set", "model.depth=4", "--set", "model.width=32",
                    "--set", "train.steps=60", "--set", f"data.dir={data}",
                    "--set", f"output_dir={folder}", "--quiet"],
                   check=True, env=_env(), stdout=subprocess.DEVNULL)
    return next(p for p in folder.iterdir() if p.is_dir())


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def make_runs(source: Path, root: Path, start: int, count: int, groups: int,
              new_group: bool = False) -> None:
    """Runs start..start+count-1 as copies of `source`: distinct run id, seed, scheme, hash and
    (by the width label) one of `groups` groups, or with `new_group` all in one more (a new
    sweep). Text is edited in place of re-serialising, as fast as a copy."""
    summary = (source / "summary.json").read_text()
    config = (source / "config.yaml").read_text()
    record = json.loads(summary)
    tables = [p for p in ("layers.csv", "metrics.csv") if (source / p).exists()]
    for i in range(start, start + count):
        run_id = f"{record['run_id']}-{i:06d}"
        scheme, seed = SCHEMES[i % len(SCHEMES)], i // len(SCHEMES)
        width = 32 + (groups if new_group else i % groups)
        folder = root / run_id
        folder.mkdir()
        for name in tables:
            shutil.copyfile(source / name, folder / name)
        (folder / "config.yaml").write_text(
            config.replace("scheme: he_normal", f"scheme: {scheme}")
            .replace("seed: 0", f"seed: {seed}").replace("width: 32", f"width: {width}"))
        (folder / "summary.json").write_text(
            summary.replace(record["run_id"], run_id)
            .replace(record["config_hash"], f"{i:064x}")
            .replace('"scheme": "he_normal"', f'"scheme": "{scheme}"')
            .replace('"seed": 0,', f'"seed": {seed},')
            .replace('"width": 32,', f'"width": {width},'))


def floor(root: Path) -> float:
    """Seconds to read every run's files with json, yaml and pandas: the least a report reads."""
    import pandas as pd
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    t = time.perf_counter()
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and p.name[0] != "."):
        json.loads((folder / "summary.json").read_text())
        yaml.load((folder / "config.yaml").read_text(), Loader=loader)
        pd.read_csv(folder / "layers.csv")
        pd.read_csv(folder / "metrics.csv")
    return time.perf_counter() - t


def report(root: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in GB) of one `winit report` process."""
    t = time.perf_counter()
    proc = subprocess.Popen([str(PYTHON), "-m", "winit_cli", "report", str(root), "--out",
                             str(out), "--quiet"], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"winit report failed: {proc.stderr.read().decode()[-2000:]}")
    return seconds, usage.ru_maxrss / 1024 ** 2


def markdown(rows: list[tuple], cold: float) -> str:
    """The figures as a Markdown table, with the issue's targets beside them."""
    targets = {"cold report": "<= 3x floor; peak <= 2 GB", "warm report": "",
               "floor (pandas)": ""}
    lines = ["| | seconds | x floor | x cold | peak GB | target |", "|---|--:|--:|--:|--:|---|"]
    for name, seconds, peak in rows:
        target = targets.get(name, "<= 0.25x cold")
        lines.append(f"| {name} | {seconds:.2f} | {seconds / rows[0][1]:.2f} | "
                     f"{seconds / cold:.3f} | {f'{peak:.2f}' if peak else ''} | {target} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--add", type=int, default=100)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--keep", action="store_true", help="leave the runs and reports")
    parser.add_argument("--docs", action="store_true", help="rewrite the table in the docs")
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench_report_scale.", dir=args.tmp))
    try:
        source = train_source(work / "source")
        root = work / "results"
        root.mkdir()
        make_runs(source, root, 0, args.runs, args.groups)
        rows = [("floor (pandas)", floor(root), None)]
        cold = report(root, work / "report")
        rows += [("cold report", *cold), ("warm report", *report(root, work / "report"))]
        make_runs(source, root, args.runs, args.add, args.groups, new_group=True)
        rows.append((f"report after +{args.add}", *report(root, work / "report")))
        table = markdown(rows, cold[0])
        print(f"{args.runs} runs (+{args.add}), {args.groups} groups\n\n{table}")
        if args.docs:
            context = (f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_report_scale.py "
                       f"--runs {args.runs} --add {args.add} --groups {args.groups}` in "
                       f"{time.perf_counter() - started:.0f} s: {os.cpu_count()} CPUs, load "
                       f"average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.")
            print(f"rewrote the table of {rewrite_block(*MARKERS, context + chr(10) * 2 + table)}")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept: {work}")


if __name__ == "__main__":
    main()
