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
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

BASE = {"model": {"width": 128, "activation": "relu"},
        "train": {"batch_size": 128, "optimizer": "momentum", "lr": 0.01},
        "data": {"subset": 10000, "val_size": 1000}, "record": {"every": 10}}
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
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2,
                        help="CPUs the Ray nodes declare in all (default: this machine's)")
    parser.add_argument("--driver", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        return driver(args.steps)
    from raycluster import RayCluster

    members = len(spec(Path("."), args.steps).members())
    print(f"sweep: {members} runs in 4 groups, {args.steps} steps each; {args.cores} cores; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
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
    report(times, overhead, members)


def report(times: dict[str, list[float]], overhead: dict[int, list[dict]], members: int) -> None:
    # Two baselines: what `winit compare` does by default, and the same on one thread, which
    # is what each Ray task runs (on a loaded machine torch's threads can cost more than they give).
    baseline = statistics.median(times["in-process"])
    single = statistics.median(times["in-process, 1 thread"])
    print(f"{'executor':<22}{'median s':>9}{'runs/s':>8}{'vs in-process':>15}{'vs 1 thread':>13}"
          "  (trials)")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        spread = ", ".join(f"{s:.1f}" for s in seconds)
        print(f"{name:<22}{median:>9.1f}{members / median:>8.2f}{baseline / median:>14.2f}x"
              f"{single / median:>12.2f}x  ({spread})")
    for nodes, runs in overhead.items():
        trip = statistics.median(r["round_trip"] for r in runs) * 1e3
        in_flight = statistics.median(r["in_flight"] for r in runs) * 1e3
        connect = statistics.median(r["connect"] for r in runs)
        print(f"ray overhead, {nodes} node(s): an empty task {trip:.2f} ms round trip, "
              f"{in_flight:.2f} ms each with 500 in flight; ray.init {connect:.2f} s")


if __name__ == "__main__":
    main()
