"""The headline: `winit run` as a user runs it, a whole process from start to exit, against a
plain PyTorch script process doing the same steps (benchmarks/plain_mnist.py), as ratios.

    .venv/bin/python benchmarks/bench_cli.py [--steps 400] [--repeats 5] [--docs]

Both train 10 Linear layers of width 256 (ReLU, He normal) on MNIST, batch 128, SGD with
momentum, for --steps steps, then evaluate on the validation and test sets; winit also records
layer statistics (every 10 steps, or every step), predicts them from theory, writes its run
folder and prints its summary. Each trial runs the three processes in turn (alternating, so the
machine's drift cancels); medians over the trials. The ratios are throughput: plain seconds
over winit seconds, of wall-clock time and of CPU time (user + system, the process and its
children), since on a shared machine the wall clock also measures the neighbours.

Then where a `winit run` process spends its time: one more run under cProfile, its time split
into import, data, setup, training steps, records, evaluation and writing (`--no-profile`
skips it). --docs rewrites the block between `<!-- bench_cli:start -->` and
`<!-- bench_cli:end -->` (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))  # docblocks: the docs' script-written blocks

from docblocks import rewrite_block  # noqa: E402

MARKERS = ("<!-- bench_cli:start -->", "<!-- bench_cli:end -->")
BASE = "plain script"
PYTHON = REPO / ".venv" / "bin" / "python"
WINIT = REPO / ".venv" / "bin" / "winit"
# The profile's phases: the functions whose cumulative time each phase is, in winit_cli.
PHASES = {
    "data: read, verify, split": ("runner/group.py", "load_splits"),
    "theory: the input's second moment": ("runner/group.py", "input_second_moment"),
    "setup: model, init, optimizer": ("training/step.py", "setup"),
    "of which torch.optim's first call imports torch._dynamo": ("torch/_dynamo/__init__.py",
                                                                  "<module>"),
    "training steps (records included)": ("training/step.py", "run_step"),
    "of which records (probes)": ("measure/probes.py", "before_step"),
    "final evaluation": ("training/loop.py", "finish"),
    "records: verdict, theory, tables, summary.json": ("runner/group.py", "finish"),
}


def data_dir() -> Path:
    folder = os.environ.get("WINIT_DATA_DIR") or os.environ.get("WINIT_TEST_MNIST")
    if not folder:
        raise SystemExit("set WINIT_DATA_DIR to the folder holding MNIST's .gz files")
    return Path(folder)


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one process run to its exit."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            cwd=REPO)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    proc.stderr.close()
    return wall, usage.ru_utime + usage.ru_stime


def winit_cmd(steps: int, every: int, out: Path, threads: int | str = "auto") -> list[str]:
    return [str(WINIT), "run", "configs/quickstart.yaml", "--set", f"train.steps={steps}",
            "--set", f"record.every={every}", "--set", f"output_dir={out}",
            "--set", f"train.threads={threads}", "--quiet"]


def plain_cmd(steps: int, threads: int | None = None) -> list[str]:
    return [str(PYTHON), str(REPO / "benchmarks" / "plain_mnist.py"), str(data_dir()),
            "--steps", str(steps), *(["--threads", str(threads)] if threads else [])]


# Imports alone, as processes timed beside the runs: what of winit's extra CPU time is
# importing what it needs (pandas, pydantic, Rich, Typer, ...) beyond the torch both import.
IMPORTS = {
    "imports of the plain script (torch)": "import torch, torch.nn.functional, torch.optim",
    "imports of `winit run`": "import torch.optim, winit_cli.cli, winit_cli.app.run",
}


def import_cmd(code: str) -> list[str]:
    return [str(PYTHON), "-c", code]


def free_threads(window: float = 0.5) -> int:
    """What train.threads: auto would start with now: one thread per idle CPU."""
    from winit_cli.training.threads import LoadMeter, threads_for, usable_cpus

    meter = LoadMeter()
    time.sleep(window)
    return threads_for(meter.free(), usable_cpus())


def trials(steps: int, repeats: int, threads: int, env: dict[str, str], out: Path,
           default_threads: bool) -> dict[str, list]:
    """Both at `threads` (the CPUs free at the start, as `auto` would pick), so that the ratio
    is winit's own cost; then winit with its own choice (`auto`: the start-up's load reading
    and the tuner's trials included) and, with `default_threads`, the plain script with
    torch's (one per core: on a busy machine its threads wait for each other, see
    training/threads.py, and it runs several times slower)."""
    contenders = {
        BASE: plain_cmd(steps, threads),
        "winit run, every 10": winit_cmd(steps, 10, out, threads),
        "winit run, every step": winit_cmd(steps, 1, out, threads),
        "winit run, every 10, threads auto": winit_cmd(steps, 10, out),
    }
    if default_threads:
        contenders["plain script, torch's default threads"] = plain_cmd(steps)
    contenders.update({name: import_cmd(code) for name, code in IMPORTS.items()})
    times: dict[str, list] = {name: [] for name in contenders}
    for r in range(repeats):
        for name, cmd in contenders.items():
            times[name].append(timed(cmd, env))
        print(f"  [{r + 1}/{repeats}] " + ", ".join(
            f"{n} {t[-1][0]:.1f} s ({t[-1][1]:.1f} CPU)" for n, t in times.items()), flush=True)
    return times


def profile(steps: int, env: dict[str, str], out: Path) -> list[tuple[str, float]]:
    """Seconds per phase of one profiled `winit run` (every 10 steps), and the whole."""
    stats_file = out / "winit.prof"
    cmd = [str(PYTHON), "-m", "cProfile", "-o", str(stats_file), "-m", "winit_cli",
           *winit_cmd(steps, 10, out)[1:]]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, cwd=REPO)
    stats = pstats.Stats(str(stats_file)).stats  # (file, line, name) -> (cc, nc, tt, ct, ...)
    total = max(v[3] for v in stats.values())
    rows = [("whole process (profiled)", total)]
    cli = sum(v[3] for (f, _, n), v in stats.items()
              if f.endswith("cli/experiment.py") and n == "run")
    for phase, (file, name) in PHASES.items():
        rows.append((phase, sum(v[3] for (f, _, n), v in stats.items()
                                if f.endswith(file) and n == name)))
    rows.append(("start-up: imports before the command", total - cli))
    top = sum(s for name, s in rows[1:] if not name.startswith("of which"))
    rows.append(("the rest: imports inside the command (torch, pandas), printing", total - top))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--default-threads", action="store_true",
                        help="also the plain script at torch's default thread count")
    parser.add_argument("--docs", action="store_true", help="rewrite the docs' block")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(REPO), "WINIT_DATA_DIR": str(data_dir())}
    started, load = time.perf_counter(), os.getloadavg()[0]
    sys.path.insert(0, str(REPO))
    threads = free_threads()
    print(f"bench_cli: {os.cpu_count()} CPUs, load average {load:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        times = trials(args.steps, args.repeats, threads, env, out, args.default_threads)
        phases = [] if args.no_profile else profile(args.steps, env, out)
    wall = {n: statistics.median(w for w, _ in t) for n, t in times.items()}
    cpu = {n: statistics.median(c for _, c in t) for n, t in times.items()}
    base = BASE
    lines = [f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_cli.py` in "
             f"{time.perf_counter() - started:.0f} s: {os.cpu_count()} CPUs, load average "
             f"{load:.1f} at the start; {args.steps} steps, medians of {args.repeats} "
             f"alternating trials; {threads} thread(s) (the CPUs free at the start) where "
             "pinned.", "",
             "| whole process | wall s | CPU s | throughput / plain (wall) | (CPU) | target |",
             "|---|---|---|---|---|---|"]
    targets = {"winit run, every 10": ">= 0.95", "winit run, every step": ">= 0.85"}
    for name in times:
        if name in IMPORTS:
            continue
        lines.append(f"| {name} | {wall[name]:.2f} | {cpu[name]:.2f} | "
                     f"{wall[base] / wall[name]:.3f} | {cpu[base] / cpu[name]:.3f} | "
                     f"{targets.get(name, '—')} |")
    plain_imports, winit_imports = (cpu[name] for name in IMPORTS)
    lines += ["", "Of winit's extra CPU time (every 10 steps: "
              f"{cpu['winit run, every 10'] - cpu[base]:.2f} s), importing what it needs beyond "
              f"torch takes {winit_imports - plain_imports:.2f} s (processes that only import, "
              f"timed in the same trials: {plain_imports:.2f} s CPU for the plain script's "
              f"imports, {winit_imports:.2f} s for `winit run`'s)."]
    if phases:
        lines += ["", "Where one `winit run` process (every 10 steps) spends its time, under "
                  "cProfile (which slows Python-heavy code more than kernels):", "",
                  "| phase | s | share |", "|---|---|---|"]
        total = phases[0][1]
        lines += [f"| {name} | {s:.2f} | {s / total:.0%} |" for name, s in phases]
    table = "\n".join(lines)
    print(table)
    if args.docs:
        print(f"rewrote {rewrite_block(*MARKERS, table)}")


if __name__ == "__main__":
    main()
