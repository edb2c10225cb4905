"""Throughput of winit's training against baselines measured in the same run, as ratios.

    .venv/bin/python benchmarks/bench_train.py [--quick] [--docs]

(plain `python benchmarks/bench_train.py` re-runs itself with the repository's .venv.)

1. Recording cost: one MLP (depth 10, width 256, batch 128, SGD with momentum) trained by a
   hand-written PyTorch loop and by winit recording every 10 steps and every step, all at the
   same thread count. Targets: >= 0.95 and >= 0.85 of the plain loop's throughput.
2. Step by step, each pair of steps alternating so the machine's drift cancels: winit's
   unrecorded step against the plain loop's, what one record adds, and six members in one
   batched step against six single-member steps (what batching can gain per step).
3. Contention: winit (train.threads: auto) and the plain loop (torch's default threads) alone,
   beside 1 and beside 2 CPU-bound processes (`yes`, started here). Target: winit beside one
   >= 0.65 of winit alone in every trial; beside it, the bound: winit alone on one thread.
4. Sweeps: six init schemes batched (one stacked model) against six sequential runs, in GFLOP/s
   and against this machine's matmul peak (a 2048^3 product, same threads), with what bounds
   them: the rate of the step's own matrix products at their shapes and their share of the
   step (profiled), for the plain loop's step and the batched one; `compare --jobs 2`
   against `--jobs 1` on the same sweep. Targets: >= 1.5x in every trial; never slower.

Trials alternate between contenders; medians (and the worst trial where a target says "every")
are reported. Machines are shared and noisy: only ratios within one run mean anything. Results
go to benchmarks/results/bench_train.csv; --docs rewrites the table between the markers
`<!-- bench_train:start -->` and `<!-- bench_train:end -->` in the docs page that holds them
(docs/performance.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
try:
    import torch  # noqa: F401
except ModuleNotFoundError:  # run by a python without torch: use the repository's venv
    venv = REPO / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.prefix).resolve() != venv.parents[1].resolve():
        os.execv(venv, [str(venv), *sys.argv])
    raise
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))  # docblocks: the docs' script-written blocks

import argparse  # noqa: E402
import csv  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from docblocks import rewrite_block  # noqa: E402
from torch import nn  # noqa: E402

from winit_cli.config import validate  # noqa: E402
from winit_cli.runner.group import load_splits  # noqa: E402
from winit_cli.training.loop import train  # noqa: E402
from winit_cli.training.step import run_step, setup  # noqa: E402
from winit_cli.training.threads import LoadMeter, threads_for, usable_cpus  # noqa: E402

DEPTH, WIDTH, BATCH = 10, 256, 128
SCHEMES = ("normal", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal", "torch_default")
RESULTS = REPO / "benchmarks" / "results" / "bench_train.csv"
MARKERS = ("<!-- bench_train:start -->", "<!-- bench_train:end -->")


def config(steps: int, every: int, scheme: str = "he_normal", threads: int | str = "auto"):
    return validate({
        "model": {"depth": DEPTH, "width": WIDTH, "activation": "relu"},
        "init": {"scheme": scheme},
        "train": {"steps": steps, "batch_size": BATCH, "optimizer": "momentum", "lr": 0.01,
                  "threads": threads},
        "record": {"every": every},
    })


def _plain_model() -> tuple[nn.Module, torch.optim.Optimizer]:
    """The baseline's network and optimizer, as a user would write them by hand."""
    torch.manual_seed(0)
    sizes = [784] + [WIDTH] * (DEPTH - 1) + [10]
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < DEPTH - 1 else [])
    model = nn.Sequential(*layers)
    for m in model:
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def _plain_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor,
                y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    loss.item()


def plain_loop(splits, steps: int) -> None:
    """The baseline: what a user would write by hand, with the same final evaluations."""
    flush_subnormals()
    model, opt = _plain_model()
    x, y = splits.x_train, splits.y_train
    per_epoch = (len(x) + BATCH - 1) // BATCH
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(x))
        idx = order[(step % per_epoch) * BATCH:(step % per_epoch + 1) * BATCH]
        _plain_step(model, opt, x[idx], y[idx])
    with torch.no_grad():
        for xs, ys in ((splits.x_val, splits.y_val), (splits.x_test, splits.y_test)):
            (model(xs).argmax(1) == ys).float().mean().item()


def flush_subnormals() -> None:
    """As winit does by default (train.flush_subnormals), for the baselines too. Set again before
    each baseline: a winit run puts the process back to not flushing when it ends."""
    torch.set_flush_denormal(True)


def free_threads(window: float = 0.5) -> int:
    """What train.threads: auto would start with now: one thread per idle CPU."""
    meter = LoadMeter()
    time.sleep(window)
    return threads_for(meter.free(), usable_cpus())


def timed(fn: Callable[..., object], *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def trials(contenders: dict[str, Callable[[], float]], repeats: int, label: str
           ) -> dict[str, list[float]]:
    """Each contender `repeats` times, alternating; prints one line per round."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for r in range(repeats):
        for name, run in contenders.items():
            times[name].append(run())
        line = ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items())
        print(f"  [{label} {r + 1}/{repeats}] {line}", flush=True)
    return times


class Hogs:
    """`n` CPU-bound processes (`yes > /dev/null`) for the duration of a `with` block."""

    def __init__(self, n: int):
        self.n, self.procs = n, []

    def __enter__(self):
        self.procs = [subprocess.Popen(["yes"], stdout=subprocess.DEVNULL) for _ in range(self.n)]
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait()


Row = dict  # what, measured, target, met, detail


def ratio_row(what: str, measured: float, target: float | None, detail: str = "") -> Row:
    met = "" if target is None else ("met" if measured >= target else "not met")
    return {"what": what, "measured": round(measured, 3),
            "target": "" if target is None else f">= {target:g}", "met": met, "detail": detail}


def recording(splits, steps: int, repeats: int) -> list[Row]:
    # Every contender at one count: the CPUs free now (on a loaded machine 2 threads would
    # measure contention, which section 2 does, rather than the cost of recording).
    threads = free_threads()
    torch.set_num_threads(threads)

    def winit(every: int) -> float:
        return timed(lambda: train([config(steps, every, threads=threads)], splits))

    times = trials({"plain loop": lambda: timed(lambda: plain_loop(splits, steps)),
                    "winit every 10": lambda: winit(10),
                    "winit every step": lambda: winit(1)}, repeats, "recording")
    t = {name: statistics.median(v) for name, v in times.items()}
    detail = f"{steps} steps, {threads} threads, median of {repeats}"
    return [ratio_row("winit recording every 10 steps / plain loop (throughput)",
                      t["plain loop"] / t["winit every 10"], 0.95, detail),
            ratio_row("winit recording every step / plain loop",
                      t["plain loop"] / t["winit every step"], 0.85, detail)]


def _plain_stepper(splits) -> Callable[[int], None]:
    """One step of `plain_loop`'s training, as a function of the step number."""
    model, opt = _plain_model()
    order = torch.randperm(len(splits.x_train))

    def step(s: int) -> None:
        idx = order[(s % 400) * BATCH:(s % 400 + 1) * BATCH]
        _plain_step(model, opt, splits.x_train[idx], splits.y_train[idx])

    return step


def _winit_stepper(splits, schemes: tuple[str, ...]) -> Callable[[int, bool], None]:
    """One winit training step of `schemes` as one group, recorded or not (no evaluation)."""
    group = setup([config(10**6, 1, s, threads=torch.get_num_threads()) for s in schemes],
                  splits, torch.device("cpu"))
    group.plan.evaluates = lambda step: False
    alive = [True] * len(schemes)

    def step(s: int, recorded: bool) -> None:
        group.plan.records = lambda _: recorded
        run_step(group, s, alive)

    return step


def _block(step: Callable[..., None], start: int, count: int, *args) -> float:
    """Seconds per step over `count` consecutive steps."""
    return timed(lambda: [step(s, *args) for s in range(start, start + count)]) / count


def step_costs(splits, rounds: int) -> list[Row]:
    """Where the time goes, step by step: winit's unrecorded step against the plain loop's and
    what one record adds, paired in alternating steps so that the machine's drift cancels; six
    members batched in one step against six single-member steps, in alternating blocks of
    consecutive steps (alternating single steps, each model would evict the other's weights
    from the cache, which the six single steps of a sequential sweep do not)."""
    # the plain loop's init (He normal), and each scheme of the batched six alone
    plain, single = _plain_stepper(splits), _winit_stepper(splits, ("he_normal",))
    alone, six = [_winit_stepper(splits, (s,)) for s in SCHEMES], _winit_stepper(splits, SCHEMES)
    flush_subnormals()  # the steppers step without train(), which would set it
    ratio, record = [], []
    for s in range(rounds):
        p, u, r = timed(plain, s), timed(single, s, False), timed(single, s + 1, True)
        ratio.append(p / u)
        record.append((r - u, p))
    blocks = [sum(_block(one, 20 * b, 5, False) for one in alone) / _block(six, 20 * b, 10, False)
              for b in range(5)]
    cost, step = statistics.median(r for r, _ in record), statistics.median(p for _, p in record)
    detail = f"{torch.get_num_threads()} threads, median of {rounds} alternating steps"
    return [ratio_row("winit step, not recorded / plain loop step (speed)",
                      statistics.median(ratio), None, detail),
            ratio_row("one record, in plain-loop steps (recorded minus unrecorded winit step)",
                      cost / step, None, f"{cost * 1e3:.2f} ms; {detail}"),
            ratio_row("6 members in one batched step / 6 single-member steps (speed)",
                      statistics.median(blocks), None,
                      f"median of {len(blocks)} alternating blocks (5 steps of each scheme "
                      "alone, 10 batched): what batching gains per step, setup and evaluation "
                      "aside")]


def contention(splits, steps: int, repeats: int) -> list[Row]:
    times: dict[tuple[str, int], list[float]] = {}
    chosen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for r in range(repeats):
        for hogs in (0, 1, 2):
            with Hogs(hogs):
                start = time.perf_counter()
                (log,) = train([config(steps, 10)], splits)
                times.setdefault(("winit", hogs), []).append(time.perf_counter() - start)
                chosen[hogs].append(log.threads["threads"])
                times.setdefault(("plain", hogs), []).append(
                    timed(lambda: plain_loop(splits, steps)))
                if hogs == 0:  # the bound beside one hog: what one CPU alone can do
                    start = time.perf_counter()
                    train([config(steps, 10, threads=1)], splits)
                    times.setdefault(("winit 1 thread", 0), []).append(
                        time.perf_counter() - start)
            print(f"  [contention {r + 1}/{repeats}, {hogs} hog(s)] winit "
                  f"{times['winit', hogs][-1]:.2f} s ({chosen[hogs][-1]} threads), plain loop "
                  f"{times['plain', hogs][-1]:.2f} s", flush=True)
    t = {key: statistics.median(v) for key, v in times.items()}
    detail = f"{steps} steps, median of {repeats}"
    return [
        ratio_row("winit (threads auto) beside 1 CPU hog / alone, worst trial",
                  min(a / b for a, b in zip(times["winit", 0], times["winit", 1], strict=True)),
                  0.65, f"{detail} {t['winit', 0] / t['winit', 1]:.3f}; threads chosen "
                  f"{sorted(set(chosen[1]))}"),
        ratio_row("the bound beside 1 hog: winit alone at 1 thread / alone (threads auto)",
                  t["winit", 0] / t["winit 1 thread", 0], None,
                  f"{detail}; threads chosen alone {sorted(set(chosen[0]))}: with one of "
                  f"{usable_cpus()} CPUs taken, one thread on the other is the most a run can "
                  "have"),
        ratio_row("winit (threads auto) beside 2 CPU hogs / alone",
                  t["winit", 0] / t["winit", 2], None,
                  f"{detail}; threads chosen {sorted(set(chosen[2]))}"),
        ratio_row(f"plain loop ({torch.get_num_threads()} threads) beside 1 CPU hog / alone",
                  t["plain", 0] / t["plain", 1], None, detail),
        ratio_row(f"plain loop ({torch.get_num_threads()} threads) beside 2 CPU hogs / alone",
                  t["plain", 0] / t["plain", 2], None, detail),
    ]


def matmul_gflops(threads: int, n: int = 2048) -> float:
    """This machine's practical peak: the best of five n^3 float32 products."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(timed(lambda: a @ b) for _ in range(5))
    torch.set_num_threads(previous)
    return 2 * n**3 / best / 1e9


def sweep_gflop(steps: int, members: int) -> float:
    """Matmul work of training `members` nets for `steps` steps and evaluating each on the
    validation and test splits (15,000 examples); elementwise work left out."""
    sizes = [784] + [WIDTH] * (DEPTH - 1) + [10]
    params = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    per_step = 2 * BATCH * (3 * params - sizes[0] * sizes[1])  # no gradient for the input
    return members * (steps * per_step + 2 * 15_000 * params) / 1e9


GEMM_OPS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def step_gemm_seconds(step: Callable[..., None], steps: int, *args) -> float:
    """Seconds per step spent in matrix products, by torch's profiler over `steps` steps: each
    product's own (self) time, which the profiler's per-call overhead hardly touches, where the
    small elementwise calls around them it inflates (so the step itself is timed unprofiled)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _block(step, 0, steps, *args)
    return sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in GEMM_OPS) \
        / 1e6 / steps


def gemm_bound(splits, peak: float, steps: int = 40) -> list[Row]:
    """What bounds a sweep's GFLOP/s below the matmul peak, split in two: how fast the step's
    matrix products run at their own shapes ([128, 256] x [256, 256] and the like, far smaller
    than 2048^3), and what share of the step they take (the rest: activations, the loss, the
    optimizer's pass, winit's per-member checks). The plain loop's step, split the same way,
    shows which part is winit's."""
    sizes = [784] + [WIDTH] * (DEPTH - 1) + [10]
    params = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    flop = 2 * BATCH * (3 * params - sizes[0] * sizes[1]) / 1e9  # one member's step
    plain, six = _plain_stepper(splits), _winit_stepper(splits, SCHEMES)
    flush_subnormals()
    _block(plain, 0, 5), _block(six, 0, 5, False)  # warm-up
    rows = []
    for label, step, members, args in (("plain loop", plain, 1, ()),
                                       ("6 schemes batched", six, len(SCHEMES), (False,))):
        seconds = statistics.median(_block(step, 10 * r, 10, *args) for r in range(3))
        gemm = step_gemm_seconds(step, steps, *args)
        rate = members * flop / gemm
        rows += [ratio_row(f"{label}: its step's matrix products alone, GFLOP/s", rate, None,
                           f"{rate / peak:.0%} of the matmul peak; {torch.get_num_threads()} "
                           f"threads, profiled over {steps} steps"),
                 ratio_row(f"{label}: share of its step's time in matrix products",
                           min(gemm / seconds, 1.0), None,
                           f"{1e3 * seconds:.2f} ms a step, {1e3 * gemm:.2f} ms of it in "
                           "products; the step's rate is the products' rate times this share")]
    return rows


def sweeps(splits, steps: int, repeats: int) -> list[Row]:
    threads = free_threads()  # batched, sequential and the matmul peak alike
    torch.set_num_threads(threads)
    configs = [config(steps, 10, scheme, threads) for scheme in SCHEMES]
    times = trials({"6 sequential": lambda: timed(lambda: [train([c], splits) for c in configs]),
                    "6 batched": lambda: timed(lambda: train(configs, splits))},
                   repeats, "sweep")
    gains = [s / b for s, b in zip(times["6 sequential"], times["6 batched"], strict=True)]
    peak = matmul_gflops(threads)
    work = sweep_gflop(steps, len(SCHEMES))
    rate = {name: work / statistics.median(v) for name, v in times.items()}
    detail = (f"{steps} steps each, {threads} threads, {repeats} trials "
              f"(median {statistics.median(gains):.2f})")
    return [
        ratio_row("6 schemes batched / 6 sequential runs, worst trial", min(gains), 1.5, detail),
        ratio_row("matmul peak of this machine, GFLOP/s (2048^3)", peak, None,
                  f"{threads} threads"),
        ratio_row("6 sequential runs, GFLOP/s", rate["6 sequential"], None,
                  f"{rate['6 sequential'] / peak:.0%} of the matmul peak"),
        ratio_row("6 schemes batched, GFLOP/s", rate["6 batched"], None,
                  f"{rate['6 batched'] / peak:.0%} of the matmul peak"),
    ] + gemm_bound(splits, peak)


def sweep_seconds(steps: int, jobs: int, grid: dict) -> float:
    """`winit compare` of `grid` with --jobs `jobs`, into a fresh folder."""
    from winit_cli.sweeps import comparison, executors
    from winit_cli.sweeps import plan as planning
    from winit_cli.sweeps import spec as specs

    with tempfile.TemporaryDirectory() as root:
        base = config(steps, 10).to_dict()
        base["output_dir"] = root
        spec = specs.SweepSpec(f"bench-jobs{jobs}", base, grid, [0])
        executor = executors.make_executor("local", executors.ExecutorOptions(jobs=jobs))
        return timed(lambda: comparison.run_sweep(planning.plan(spec), spec, executor))


def jobs(steps: int, repeats: int) -> list[Row]:
    """--jobs 2 against --jobs 1 on a sweep of one shape (one stacked model) and of two."""
    rows = []
    grids = {"6 schemes, one shape": {"init.scheme": list(SCHEMES)},
             "3 schemes x depths 10 and 6": {"init.scheme": list(SCHEMES[:3]),
                                             "model.depth": [DEPTH, 6]}}
    for label, grid in grids.items():
        times = trials({"--jobs 1": lambda g=grid: sweep_seconds(steps, 1, g),
                        "--jobs 2": lambda g=grid: sweep_seconds(steps, 2, g)},
                       repeats, f"jobs, {label}")
        speed = [one / two for one, two in zip(times["--jobs 1"], times["--jobs 2"], strict=True)]
        rows.append(ratio_row(f"compare --jobs 2 / --jobs 1 (speed), {label}, worst trial",
                              min(speed), 0.95,
                              f"{steps} steps, threads auto, {usable_cpus()} CPUs, {repeats} "
                              f"trials (median {statistics.median(speed):.2f}); target: never "
                              "slower, 5% left for trial noise"))
    return rows


def markdown(rows: list[Row], context: str) -> str:
    lines = [context, "", "| what | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {r['what']} | {r['measured']:g} | {r['target'] or '—'} | {r['met'] or '—'} |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--repeats", type=int, default=5, help="trials of the recording case")
    parser.add_argument("--quick", action="store_true", help="a smoke test: 40 steps, 2 trials")
    parser.add_argument("--docs", action="store_true",
                        help="rewrite the table in the docs (docs/performance.md)")
    args = parser.parse_args()
    steps, repeats = (40, 2) if args.quick else (args.steps, args.repeats)
    started, load = time.perf_counter(), os.getloadavg()[0]
    print(f"bench_train: {usable_cpus()} usable CPUs, load average {load:.1f}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads by default", flush=True)
    splits = load_splits(config(1, 1))
    plain_loop(splits, 20)  # warm-up
    rows: list[Row] = []
    default = torch.get_num_threads()
    print("1/5 recording cost", flush=True)
    rows += recording(splits, steps, repeats)
    print("2/5 step by step", flush=True)
    rows += step_costs(splits, 2 * steps)
    torch.set_num_threads(default)
    print("3/5 contention", flush=True)
    rows += contention(splits, steps, 4)
    print("4/5 sweeps: batched against sequential", flush=True)
    rows += sweeps(splits, steps, max(2, repeats - 2))
    torch.set_num_threads(default)
    print("5/5 sweeps: --jobs 2 against --jobs 1", flush=True)
    rows += jobs(steps, 2)
    context = (f"Measured {time.strftime('%Y-%m-%d')} by `benchmarks/bench_train.py` in "
               f"{time.perf_counter() - started:.0f} s: {usable_cpus()} CPUs, load average "
               f"{load:.1f} at the start, torch {torch.__version__}.")
    table = markdown(rows, context)
    print("\n" + table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["what", "measured", "target", "met", "detail"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"\nwrote {RESULTS.relative_to(REPO)}")
    if args.docs:
        print(f"rewrote the benchmark table of {rewrite_block(*MARKERS, table)}")


if __name__ == "__main__":
    main()
