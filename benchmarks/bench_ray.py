"""Throughput of a sweep on Ray against the in-process executor, measured in the same run.

    python benchmarks/bench_ray.py [--steps 300] [--repeats 2]

Needs the ray extra and root: each cluster lives in a network namespace of its own, on
loopback (tests/raycluster.py). The same sweep (2 schemes x 4 depths at width 128: 4 groups of
2 stacked members) runs on

  in-process            InProcessExecutor: groups one after another, torch on all cores
  in-process, 1 thread  the same on one thread (what each Ray task gets)
  N processes           ProcessExecutor (--jobs N), one per core
  ray, 1 node           a head with all the cores; one task per group, 1 CPU and 1 thread each
  ray, 2 nodes          a head and a worker, half the cores each (splits cross nodes)

and is printed as runs/s and as a ratio to the in-process run (median over trials; the local
ones are interleaved with Ray's, since the machine is shared; each trial trains everything
anew). Ray's time counts what a user waits for: connecting, starting workers, sending the
splits, collecting the records. Then Ray's own cost per task: the round trip of an empty task,
one at a time and with many in flight, and the time to connect.

On one machine Ray cannot add cores, only run groups side by side on the cores it has (one
thread per task), so expect ratios near 1; more nodes are where it gains.

    python benchmarks/bench_ray.py --phase-cells 1000 --nodes 3 [--baseline-cells 200] [--docs]

is the same at scale: a `winit phase` of that many cells (10 depths x cells/10 values of
sigma_w2; tiny cells, PHASE_CELL, so the count is what is measured) run as a user runs it,
`winit phase ... --executor ray`, by a driver on a cluster of `--nodes` nodes of 1 CPU each,
and, first, the first `--baseline-cells` of those cells with the default local executor
(`winit phase`, in process). Throughput is cells/s from the fifth of the cells to the last
(for Ray: to the kill), so both sides skip their start (imports, MNIST, and Ray starting a
worker per node, each importing torch); per node it is that over the nodes, as a ratio to the
local run. Meanwhile the driver's RSS is
sampled, and once `--kill-at` of the cells are written one worker node is SIGKILLed (its raylet
and every process under it); the run must still end with every cell exactly once: one run
folder, one comparison.csv row and one phase.csv cell each. --docs writes the table into the
docs (scripts/docblocks.py's bench_ray_phase block).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # raycluster: the tests' namespaced Ray cluster
sys.path.insert(0, str(ROOT / "scripts"))  # docblocks: the docs' script-written blocks

from docblocks import page_of  # noqa: E402

BASE = {"model": {"width": 128, "activation": "relu"},
        "train": {"batch_size": 128, "optimizer": "momentum", "lr": 0.01},
        "data": {"subset": 10000, "val_size": 1000}, "record": {"every": 10}}
SWEEP_MARKERS = ("<!-- bench_ray:start -->", "<!-- bench_ray:end -->")
GRID = {"init.scheme": ["he_normal", "xavier_normal"], "model.depth": [4, 6, 8, 10]}


def spec(out: Path, steps: int):
    from winit_cli.sweeps.spec import SweepSpec

    base = json.loads(json.dumps(BASE))
    base["train"]["steps"] = steps
    base["output_dir"] = str(out)
    return SweepSpec("bench", base, GRID, [0])


def timed_sweep(executor_for, steps: int) -> float:
    """Seconds for the whole sweep, from planning to the last record written."""
    from winit_cli.sweeps.comparison import run_sweep
    from winit_cli.sweeps.plan import plan

    with tempfile.TemporaryDirectory(prefix="winit-bench-") as out:
        s = spec(Path(out), steps)
        start = time.perf_counter()
        frame = run_sweep(plan(s), s, executor_for())
        seconds = time.perf_counter() - start
    if set(frame.status) != {"complete"}:
        raise SystemExit(f"the sweep did not complete: {list(frame.status)}")
    return seconds


def driver(steps: int) -> None:
    """Inside a cluster's namespace: one Ray sweep, then Ray's own overheads; one JSON line."""
    import ray

    from winit_cli.sweeps.executors import cached_splits
    from winit_cli.sweeps.ray_executor import RayExecutor

    start = time.perf_counter()
    ray.init(log_to_driver=False, logging_level="ERROR")
    connect = time.perf_counter() - start  # the first connection of a process
    ray.shutdown()
    seconds = timed_sweep(lambda: RayExecutor(cached_splits()), steps)
    ray.init(log_to_driver=False, logging_level="ERROR")

    @ray.remote(num_cpus=1)
    def empty() -> None:
        return None

    ray.get([empty.remote() for _ in range(20)])  # workers started and warm
    trips = []
    for _ in range(50):
        start = time.perf_counter()
        ray.get(empty.remote())
        trips.append(time.perf_counter() - start)
    start = time.perf_counter()
    ray.get([empty.remote() for _ in range(500)])
    in_flight = (time.perf_counter() - start) / 500
    ray.shutdown()
    print(json.dumps({"seconds": seconds, "connect": connect,
                      "round_trip": statistics.median(trips), "in_flight": in_flight}))


def local_contenders(cores: int) -> dict:
    """name -> a function timing one sweep in this process (or its local workers)."""
    import torch

    from winit_cli.sweeps.executors import InProcessExecutor, cached_splits
    from winit_cli.sweeps.processes import ProcessExecutor

    def in_process(threads: int | None = None):
        def trial(steps: int) -> float:
            saved = torch.get_num_threads()
            torch.set_num_threads(threads or saved)
            try:
                return timed_sweep(lambda: InProcessExecutor(cached_splits()), steps)
            finally:
                torch.set_num_threads(saved)
        return trial

    return {"in-process": in_process(), "in-process, 1 thread": in_process(1),
            f"{cores} processes": lambda steps: timed_sweep(lambda: ProcessExecutor(cores),
                                                           steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--phase-cells", type=int, default=0, metavar="N",
                        help="A phase diagram of N cells (a multiple of 10) instead of the sweep")
    parser.add_argument("--nodes", type=int, default=3, help="Ray nodes for --phase-cells")
    parser.add_argument("--baseline-cells", type=int, default=200, metavar="N",
                        help="Cells the local executor runs, for the ratio")
    parser.add_argument("--kill-at", type=float, default=0.5, metavar="FRACTION",
                        help="SIGKILL a worker node once this fraction of cells is written")
    parser.add_argument("--samples", type=Path, metavar="FILE",
                        help="Write each driver's samples (seconds, cells, RSS) there as JSON")
    parser.add_argument("--docs", action="store_true",
                        help="Write the table into the docs (scripts/docblocks.py)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2,
                        help="CPUs the Ray nodes declare in all (default: this machine's)")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        return driver(args.steps)
    if args.phase_cells:
        return phase_benchmark(args.phase_cells, args.nodes, args.baseline_cells,
                               args.kill_at, args.docs, args.samples)
    from raycluster import RayCluster

    if args.docs:
        page_of(*SWEEP_MARKERS)  # refuse now, not after the run
    members = len(spec(Path("."), args.steps).members())
    load = os.getloadavg()
    print(f"sweep: {members} runs in 4 groups, {args.steps} steps each; {args.cores} cores; "
          f"load average {load[0]:.1f}", flush=True)
    local = local_contenders(args.cores)
    times: dict[str, list[float]] = {name: [] for name in local}
    overhead: dict[int, list[dict]] = {}
    env = {"WINIT_DATA_DIR": os.environ.get("WINIT_DATA_DIR", ""), "PYTHONUNBUFFERED": "1"}
    for nodes in (1, 2):
        name = f"ray, {nodes} node{'s' * (nodes > 1)}"
        times[name], overhead[nodes] = [], []
        with RayCluster(sys.executable, workers=nodes - 1, cpus=args.cores // nodes,
                        env=env) as cluster:
            print(f"  {name}: cluster up in {cluster.start_seconds:.1f} s", flush=True)
            for _ in range(args.repeats):  # local trials interleaved: the machine is shared
                for local_name, trial in local.items():
                    times[local_name].append(trial(args.steps))
                done = cluster.run([sys.executable, __file__, "--driver", "--steps",
                                    str(args.steps)], timeout=1800)
                if done.returncode != 0:
                    raise SystemExit(f"driver failed:\n{done.stderr[-3000:]}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                times[name].append(result["seconds"])
                overhead[nodes].append(result)
    table = report(times, overhead, members, args, load)
    print(table)
    if args.docs:
        write_docs(SWEEP_MARKERS, table)


def report(times: dict[str, list[float]], overhead: dict[int, list[dict]], members: int,
           args: argparse.Namespace, load: tuple) -> str:
    """The table as markdown (the docs' bench_ray block), with how it was measured."""
    # Two baselines: what `winit compare` does by default, and the same on one thread, which
    # is what each Ray task runs (on a loaded machine torch's threads can cost more than they give).
    baseline = statistics.median(times["in-process"])
    single = statistics.median(times["in-process, 1 thread"])
    lines = [f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_ray.py --steps "
             f"{args.steps} --repeats {args.repeats}`: {members} runs in 4 groups, "
             f"{args.steps} steps each, on {args.cores} cores shared with other jobs (load "
             f"average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end); "
             "medians of the trials listed (the local ones run beside each cluster).", "",
             "| executor | runs/s | vs in-process | vs in-process on 1 thread | trials (s) |",
             "|---|---|---|---|---|"]
    for name, seconds in times.items():
        median = statistics.median(seconds)
        spread = ", ".join(f"{s:.1f}" for s in seconds)
        lines.append(f"| {name} | {members / median:.2f} | {baseline / median:.2f} | "
                     f"{single / median:.2f} | {spread} |")
    lines.append("")
    for nodes, runs in overhead.items():
        trip = statistics.median(r["round_trip"] for r in runs) * 1e3
        in_flight = statistics.median(r["in_flight"] for r in runs) * 1e3
        connect = statistics.median(r["connect"] for r in runs)
        lines.append(f"Ray's overhead on {nodes} node(s): an empty task {trip:.2f} ms there and "
                     f"back ({in_flight:.2f} ms each with 500 in flight); ray.init "
                     f"{connect:.2f} s.")
    return "\n".join(lines)


def write_docs(markers: tuple[str, str], table: str) -> None:
    from docblocks import rewrite_block

    print(f"written into {rewrite_block(*markers, table)}")


# --- a phase diagram at scale (--phase-cells) ------------------------------------------------

# One cell: tiny, so that a thousand of them measure the machinery (tasks, transfers, writing
# run folders, comparison.csv), not the arithmetic.
PHASE_CELL = {"width": 8, "steps": 10, "subset": 512, "val_size": 256}
PHASE_DEPTHS = list(range(2, 12))
PHASE_MARKERS = ("<!-- bench_ray_phase:start -->", "<!-- bench_ray_phase:end -->")
SAMPLE_SECONDS = 0.25
WARM = 0.2  # throughput is counted from this fraction of the cells written: past the start


def phase_sigmas(cells: int) -> list[float]:
    if cells < len(PHASE_DEPTHS) or cells % len(PHASE_DEPTHS):
        raise SystemExit(f"--phase-cells and --baseline-cells: a multiple of {len(PHASE_DEPTHS)}")
    count = cells // len(PHASE_DEPTHS)
    return [round(0.5 + 3.5 * i / max(1, count - 1), 5) for i in range(count)]


def phase_command(out: Path, sigmas: list[float], *extra: str) -> list[str]:
    return [sys.executable, "-m", "winit_cli", "phase",
            "--sigma-w2", ",".join(map(str, sigmas)),
            "--depths", ",".join(map(str, PHASE_DEPTHS)), "--width", str(PHASE_CELL["width"]),
            "--steps", str(PHASE_CELL["steps"]), "--subset", str(PHASE_CELL["subset"]),
            "--set", f"data.val_size={PHASE_CELL['val_size']}", "--set", f"output_dir={out}",
            *extra]


def rss_bytes(pid: int) -> tuple[int, int]:
    """(resident now, peak resident) of a live process, from /proc; (0, 0) once it is gone."""
    try:
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                      .splitlines())
    except (OSError, ValueError):
        return 0, 0
    kib = [int(fields.get(k, "0 kB").split()[0]) for k in ("VmRSS", "VmHWM")]
    return kib[0] * 1024, kib[1] * 1024


def cells_written(out: Path) -> int:
    """Lines of the sweep's runs index: one is appended as each run folder is finished."""
    index = next(out.glob("sweeps/*/runs/runs.csv"), None)
    try:
        return max(0, len(index.read_text().splitlines()) - 1) if index else 0
    except OSError:
        return 0


def watch(process, out: Path, total: int, kill_at: float | None = None,
          kill=None) -> dict:
    """Sample the driver until it exits: (seconds, cells written, RSS) every SAMPLE_SECONDS and
    its peak RSS; call `kill` once `kill_at` of the cells are written."""
    start, samples, peak, killed_at = time.perf_counter(), [], 0, None
    while process.poll() is None:
        now, peak_now = rss_bytes(process.pid)
        peak = max(peak, peak_now)
        cells = cells_written(out)
        elapsed = time.perf_counter() - start
        if now:
            samples.append((elapsed, cells, now))
        if kill is not None and killed_at is None and cells >= kill_at * total:
            kill()
            killed_at = (elapsed, cells)
        time.sleep(SAMPLE_SECONDS)
    samples.append((time.perf_counter() - start, cells_written(out), 0))
    return {"seconds": time.perf_counter() - start, "samples": samples, "peak": peak,
            "killed_at": killed_at, "returncode": process.returncode}


def at_fraction(samples: list, total: int, fraction: float) -> tuple[float, int, int]:
    """The first sample with at least `fraction` of the cells written."""
    return next(s for s in samples if s[1] >= fraction * total)


def rate(samples: list, total: int, until: tuple[float, int] | None = None
         ) -> tuple[float, int, float]:
    """(cells/s, cells, seconds) from the sample at WARM of the cells to `until` (default: all
    written)."""
    t0, c0, _ = at_fraction(samples, total, WARM)
    t1, c1 = until or at_fraction(samples, total, 1.0)[:2]
    return (c1 - c0) / (t1 - t0), c1 - c0, t1 - t0


def longest_wait(samples: list, since: float) -> tuple[float, float]:
    """(seconds, when) of the longest stretch after `since` in which no cell was written."""
    longest, when = 0.0, since
    last_change, last_cells = since, None
    for t, cells, _ in samples:
        if t < since:
            continue
        if last_cells is not None and cells != last_cells:
            if t - last_change > longest:
                longest, when = t - last_change, last_change
            last_change = t
        last_cells = cells
    return longest, when


def check_every_cell_once(out: Path, total: int) -> dict:
    """What the sweep folder holds: run folders, comparison.csv rows and phase.csv cells, each
    counted by config hash (read from the files, not from winit), and how many are not once."""
    import pandas as pd

    (sweep,) = (out / "sweeps").iterdir()
    folders = [p for p in (sweep / "runs").iterdir() if p.is_dir() and p.name[0] != "."]
    summaries = [json.loads((p / "summary.json").read_text()) for p in folders]
    folder_hashes = [s["config_hash"] for s in summaries]
    rows = pd.read_csv(sweep / "comparison.csv")
    grid = pd.read_csv(sweep / "phase.csv")
    return {"folders": len(folders), "folders_complete": sum(s["status"] == "complete"
                                                             for s in summaries),
            "folder_repeats": len(folder_hashes) - len(set(folder_hashes)),
            "rows": len(rows), "rows_complete": int((rows.status == "complete").sum()),
            "row_repeats": int(rows.config_hash.duplicated().sum()),
            "rows_without_folder": len(set(rows.config_hash) - set(folder_hashes)),
            "index_lines": cells_written(out),
            "cells": len(grid), "cells_with_one_run": int((grid.runs == 1).sum()),
            "lost": total - len(set(folder_hashes) & set(rows.config_hash))}


def phase_benchmark(cells: int, nodes: int, baseline_cells: int, kill_at: float,
                    docs: bool, samples: Path | None = None) -> None:
    from raycluster import RayCluster

    if docs:
        page_of(*PHASE_MARKERS)  # refuse now, not after the run
    load = os.getloadavg()
    print(f"phase diagram: {cells} cells ({len(PHASE_DEPTHS)} depths x {cells // 10} sigma_w2), "
          f"cell {PHASE_CELL}; {nodes} Ray nodes of 1 CPU on {os.cpu_count()} cores; "
          f"load average {load[0]:.1f}", flush=True)
    mnist = {"WINIT_DATA_DIR": os.environ.get("WINIT_DATA_DIR", ""), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="winit-bench-phase-") as scratch:
        root = Path(scratch)
        with open(root / "local.log", "w") as log:
            local_process = subprocess.Popen(
                phase_command(root / "local", phase_sigmas(baseline_cells)),
                env={**os.environ, **mnist}, stdout=log, stderr=subprocess.STDOUT)
            local = watch(local_process, root / "local", baseline_cells)
        if local["returncode"] != 0:
            raise SystemExit(f"local phase failed:\n{(root / 'local.log').read_text()[-3000:]}")
        print(f"  local: {baseline_cells} cells in {local['seconds']:.1f} s", flush=True)
        with RayCluster(sys.executable, workers=nodes - 1, cpus=1, env=mnist) as cluster, \
                open(root / "ray.log", "w") as log:
            print(f"  ray: {nodes} nodes up in {cluster.start_seconds:.1f} s", flush=True)
            driver_process = cluster.popen(
                phase_command(root / "ray", phase_sigmas(cells), "--executor", "ray"),
                stdout=log, stderr=subprocess.STDOUT)
            killed: list[int] = []
            ray = watch(driver_process, root / "ray", cells, kill_at,
                        kill=lambda: killed.extend(cluster.kill_worker(0)) if nodes > 1
                        else None)
        if ray["returncode"] != 0:
            raise SystemExit(f"ray phase failed:\n{(root / 'ray.log').read_text()[-3000:]}")
        print(f"  ray: {cells} cells in {ray['seconds']:.1f} s; killed {len(killed)} "
              f"processes at {ray['killed_at']}", flush=True)
        check = check_every_cell_once(root / "ray", cells)
    if samples:
        samples.write_text(json.dumps({"local": local, "ray": ray, "check": check}))
    table = phase_table(cells, nodes, baseline_cells, local, ray, check, load,
                        os.getloadavg())
    print(table)
    if docs:
        write_docs(PHASE_MARKERS, table)
    if check["lost"] or check["row_repeats"] or check["folder_repeats"]:
        raise SystemExit("cells lost or repeated: see the table")


def phase_table(cells: int, nodes: int, baseline_cells: int, local: dict, ray: dict,
                check: dict, load: tuple, load_end: tuple) -> str:
    local_rate = rate(local["samples"], baseline_cells)
    killed = ray["killed_at"]
    before = rate(ray["samples"], cells, killed)
    mb = 1024 ** 2
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_ray.py --phase-cells {cells} "
        f"--nodes {nodes} --baseline-cells {baseline_cells}`: {os.cpu_count()} CPUs shared with "
        f"other jobs, load average {load[0]:.1f} at the start, {load_end[0]:.1f} at the end. "
        f"A cell: width {PHASE_CELL['width']}, depth 2-11, {PHASE_CELL['steps']} steps on "
        f"{PHASE_CELL['subset']} MNIST examples. {nodes} Ray nodes of 1 CPU each (more CPUs "
        f"declared than the machine has). Cells/s run from {WARM:.0%} of the cells written "
        "to the last (Ray: to the kill), so neither side's start-up counts.",
        "",
        "| executor | cells counted | in | cells/s | per node | per node vs 1 in-process "
        "worker |",
        "|---|---|---|---|---|---|",
        f"| local, in process (1 worker) | {local_rate[1]} | {local_rate[2]:.0f} s | "
        f"{local_rate[0]:.2f} | {local_rate[0]:.2f} | 1.00 |",
        f"| Ray, {nodes} nodes, before the kill | {before[1]} | {before[2]:.0f} s | "
        f"{before[0]:.2f} | {before[0] / nodes:.2f} | {before[0] / nodes / local_rate[0]:.2f} |",
    ]
    if killed:
        t_end, c_end = at_fraction(ray["samples"], cells, 1.0)[:2]
        after = (c_end - killed[1]) / (t_end - killed[0])
        lines.append(f"| Ray, {nodes - 1} nodes, after the kill | {c_end - killed[1]} | "
                     f"{t_end - killed[0]:.0f} s | {after:.2f} | {after / (nodes - 1):.2f} | "
                     f"{after / (nodes - 1) / local_rate[0]:.2f} |")
    warm = {name: at_fraction(run["samples"], total, WARM)[0]
            for name, run, total in (("local", local, baseline_cells), ("ray", ray, cells))}
    lines += ["", f"Whole commands: the local `winit phase` of {baseline_cells} cells "
              f"{local['seconds']:.0f} s, {warm['local']:.0f} s of it before {WARM:.0%} of its "
              f"cells were written; the Ray one of {cells} cells {ray['seconds']:.0f} s, "
              f"{warm['ray']:.0f} s of it before {WARM:.0%} (connecting, loading MNIST, Ray's "
              "first tasks)."]
    rss = {f: at_fraction(ray["samples"], cells, f)[2] / mb for f in (0.1, 0.5, 1.0)}
    last = at_fraction(ray["samples"], cells, 1.0)[0]
    wait = longest_wait(ray["samples"], killed[0]) if killed else (0.0, 0.0)
    streaming = max(rss for t, _, rss in ray["samples"] if t <= last)
    lines += [
        "",
        f"The driver's resident memory: {rss[0.1]:.0f} MB at 10% of the cells written, "
        f"{rss[0.5]:.0f} MB at 50%, {rss[1.0]:.0f} MB at 100% (the highest sampled while "
        f"cells came in: {streaming / mb:.0f} MB); peak over the whole command "
        f"{ray['peak'] / mb:.0f} MB, which ran {ray['seconds'] - last:.0f} s after the last "
        f"cell (the final comparison.csv, phase.csv and phase.png). The local run's peak over "
        f"its {baseline_cells} cells: {local['peak'] / mb:.0f} MB.",
        "",
        (f"One worker node SIGKILLed (raylet and the processes under it) at {killed[1]} of "
         f"{cells} cells written, {killed[0]:.0f} s in; the longest wait for a cell after it: "
         f"{wait[0]:.0f} s, from {wait[1] - killed[0]:.0f} s after the kill. "
         if killed else "No node killed. ") +
        f"At the end: {check['folders']} run folders ({check['folder_repeats']} repeated), "
        f"{check['rows']} comparison.csv rows ({check['rows_complete']} complete, "
        f"{check['row_repeats']} repeated, {check['rows_without_folder']} without a folder), "
        f"{check['index_lines']} runs index lines, {check['cells_with_one_run']} of "
        f"{check['cells']} phase.csv cells with exactly one run; {check['lost']} cells lost.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
