"""What a run or sweep will cost before it runs (`--dry-run`): its wall time, part by part, each
part either measured here and now or counted from the run's schedule. Machines are shared and
their speed drifts, so nothing is looked up; the estimate is a guide, not a promise.

    start-up     this process's own age once it has imported what a run imports (torch,
                 pandas, the records) and made a first optimizer (which imports torch._dynamo,
                 1.5 to 3 s here): a real run pays the same. Measured only in a `winit`
                 process (`measure_startup`), not in a test or a library caller
    data         reading, verifying and splitting the dataset, timed by doing it (files already
                 on this machine; a download is not counted, and said so)
    per group    (members of a group train together as one stacked model)
      setup      building, initializing (and calibrating) the stacked model, plus the Jacobian
                 spectrum at step 0 where record.jacobian asks for it: timed
      moment     the input second moment the theory starts from: one pass over the training
                 inputs, timed on one 8,192-row chunk and scaled by the rows
      steps      steps 0..S (S = train.steps, or epochs of batches): the recorded ones
                 (record.every, step 0 and S: probes measure every layer) and the others,
                 counted from the schedule, each kind timed on the group's model (the median
                 step), then scaled to the CPU share a long run gets beside the machine's
                 other runnable threads (`Contention`)
      evaluation validation passes (record.eval_every, else once an epoch, and at S) and the
                 final test pass, as examples times a timed per-example cost
      writing    layers.csv rows (recorded steps x layers, plus the checkpoints every
                 record.checkpoint_seconds), as rows times a timed per-row cost

Steps are timed on one model per distinct group shape, for a bounded number of steps (one warm-
up step, then recorded and unrecorded steps alternately, at least 2 and at most 20 of each, for
about `STEP_BUDGET` seconds, less where a sweep has many shapes: `TOTAL_BUDGET` shared). A group
of more than 3 members is timed at 1 and 2 members and extrapolated linearly (each member adds
its own matrix products; the per-step overhead is shared), the line anchored at 2 members with
its intercept kept between 0 and the 1-member time, so that noise in the two timings is not
multiplied by the member count. Timing runs on the real data where it is on this machine, else
on random data of its shape; a member that diverges there is timed on regardless (NaN costs what
finite numbers cost), and since a real run whose members all diverge stops early, the estimate
is then an upper bound. Not counted: assembling each run's record (theory and diagnosis, about
10 ms a run here), drawing progress, the thread tuner's trials of a neighbouring thread count
(7 steps at each, 3 s into a run and every 60 s after: 0.2 to 1.5 s a trial here, the most when
another process holds a CPU), what a command does once its runs are trained (compare's
comparison.csv and table; phase's theory per sigma_w^2 and heatmap, a few seconds here) and,
for sweeps, `--jobs N` (the estimate is for one process).
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from tempfile import TemporaryDirectory
from types import SimpleNamespace

import torch

from winit_cli.config import Config
from winit_cli.datasets import Splits
from winit_cli.errors import DataError
from winit_cli.training.schedule import Schedule, planned_steps

# Seconds of timed steps per measurement beyond the minimum counts: STEP_BUDGET, or a share of
# TOTAL_BUDGET where a sweep has many shapes to time.
STEP_BUDGET, TOTAL_BUDGET = 0.4, 2.0
MIN_STEPS, MAX_STEPS = 2, 20  # of each kind (recorded, unrecorded), after one warm-up step
EXACT_UP_TO = 3  # groups up to this size are timed whole; larger ones at 1 and 2 members
MOMENT_CHUNK = 8192  # runner.group.input_second_moment's chunk
EVAL_EXAMPLES = 500  # evaluation's cost per example, timed on this many


@dataclass(frozen=True)
class Timing:
    """Seconds, measured on one group shape at some member count."""

    setup: float  # build, initialize, calibrate (and the step-0 spectrum)
    plain: float  # one unrecorded step
    recorded: float  # one recorded step
    eval_example: float  # evaluating one example, for every member at once


def _extrapolate(one: Timing, two: Timing, k: int) -> Timing:
    """t(k) = a + b k through t(2), with the per-step overhead a = 2 t(1) - t(2) kept within
    [0, t(1)]: at most proportional to k, and never below t(2)."""
    def at(t1: float, t2: float) -> float:
        a = min(max(2 * t1 - t2, 0.0), t1)
        return max(t2, a + (t2 - a) / 2 * k)
    return Timing(*(at(getattr(one, f), getattr(two, f)) for f in Timing.__dataclass_fields__))


@dataclass(frozen=True)
class GroupCost:
    """One group's share of the cost, in seconds."""

    label: str  # what sets this group apart, e.g. "relu, depth 20, width 512"
    members: int
    steps: int  # optimizer steps S (the loop runs steps 0..S)
    recorded: int  # of the S + 1 steps, those the probes measure
    evaluated: int  # examples evaluated: validation passes and the final test pass
    timing: Timing  # at this group's member count
    extrapolated: bool  # timed at 1 and 2 members, not at `members`
    moment: float
    writing: float

    @property
    def training(self) -> float:
        t = self.timing
        return (self.steps + 1 - self.recorded) * t.plain + self.recorded * t.recorded

    @property
    def evaluation(self) -> float:
        return self.evaluated * self.timing.eval_example

    @property
    def seconds(self) -> float:
        return self.timing.setup + self.moment + self.training + self.evaluation + self.writing


@dataclass(frozen=True)
class Contention:
    """Other processes' demand for the CPUs, and what it does to a long run's steps.

    Steps are timed by their median: a typical step, run while this process held its CPUs. A run
    of minutes beside `others` runnable threads of other processes gets its fair share of the
    `cpus` it may use: min(1, cpus / (others + threads)) of each of its `threads` (the kernel's
    fair scheduler), so its steps and evaluations take 1 / share times longer. Setup, data and
    writing are timed whole, interruptions included, and are not scaled."""

    others: float  # runnable threads of other processes, on average while timing
    threads: int
    cpus: int

    @property
    def fair_share(self) -> float:
        return min(1.0, self.cpus / (self.others + self.threads))

    def scale(self, timing: Timing) -> Timing:
        f = 1 / self.fair_share
        return replace(timing, plain=timing.plain * f, recorded=timing.recorded * f,
                       eval_example=timing.eval_example * f)


@dataclass(frozen=True)
class CostEstimate:
    """The wall time of training `groups` one after another in one process (`--jobs 1`)."""

    groups: list[GroupCost]
    startup: float | None  # None: not measured (not a `winit` process)
    data: float  # reading the data found on this machine
    missing: list[str]  # datasets not on this machine: their download is not counted
    threads: int  # torch threads the timed steps ran with
    contention: Contention | None = None

    @property
    def steps(self) -> int:
        """Optimizer steps summed over groups (members of a group step together)."""
        return sum(g.steps for g in self.groups)

    @property
    def seconds(self) -> float:
        return (self.startup or 0.0) + self.data + sum(g.seconds for g in self.groups)

    def parts(self) -> dict[str, float]:
        """Seconds by part, summed over groups."""
        def total(name: str) -> float:
            return sum(getattr(g, name) for g in self.groups)
        return {"start-up": self.startup or 0.0, "data": self.data,
                "setup": sum(g.timing.setup for g in self.groups), "moment": total("moment"),
                "training steps": total("training"), "evaluation": total("evaluation"),
                "writing": total("writing")}


def process_age() -> float | None:
    """Seconds since this process started (Linux /proc), or None where that cannot be read."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: ticks after boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def recorded_steps(steps: int, every: int) -> int:
    """How many of steps 0..S the schedule records: multiples of `every`, and S."""
    return steps // every + 1 + (steps % every != 0)


def evaluations(steps: int, every: int) -> int:
    """Validation passes: at steps 1..S that are multiples of `every`, and at S (even S = 0)."""
    return steps // every + (steps % every != 0 or steps == 0)


def _random_splits(config: Config, train: int, held_out: int) -> Splits:
    """Random inputs and labels of the real shapes: time does not depend on the values
    (subnormals aside, which training flushes by default)."""
    from winit_cli.datasets import get_dataset

    spec = get_dataset(config.data.dataset)
    g = torch.Generator().manual_seed(0)

    def part(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return (torch.randn(n, spec.input_size, generator=g),
                torch.randint(0, spec.classes, (n,), generator=g))
    (x, y), (xv, yv) = part(train), part(held_out)
    return Splits(x_train=x, y_train=y, x_val=xv, y_val=yv, x_test=xv, y_test=yv,
                  train_idx=torch.arange(train), val_idx=torch.arange(held_out),
                  dataset=config.data.dataset)


@dataclass
class _Data:
    splits: Splits  # what steps are timed on
    train: int  # the real run's example counts
    val: int
    test: int
    moment: float  # seconds of the input-second-moment pass over `train` rows


def _load(config: Config, data_dir: Path | None) -> tuple[_Data, float, str | None]:
    """The config's data as a run loads it, timed; random data of its shape where the files
    are not on this machine (then the dataset's name is returned: its download is not counted).
    """
    from winit_cli.datasets import get_dataset, load_dataset, make_splits
    from winit_cli.runner.group import SPLIT_SEED, input_second_moment

    d = config.data
    started = time.perf_counter()
    try:
        raw = load_dataset(d.dataset, data_dir, d.dir, download=False)
        splits = make_splits(raw, d.val_size, d.subset, seed=SPLIT_SEED)
        seconds, missing = time.perf_counter() - started, None
        train, val, test = len(splits.x_train), len(splits.x_val), len(splits.x_test)
    except DataError:
        spec = get_dataset(d.dataset)
        left = spec.train_images.shape[0] - d.val_size
        train, val, test = min(d.subset or left, left), d.val_size, spec.test_images.shape[0]
        splits = _random_splits(config, 4 * config.train.batch_size, 2500)
        seconds, missing = 0.0, d.dataset
    chunk = SimpleNamespace(x_train=splits.x_train[:MOMENT_CHUNK])
    timed = []
    for _ in range(3):  # the median of three: one chunk takes ~50 ms, short enough to be hit
        started = time.perf_counter()  # whole by another process's burst
        input_second_moment(chunk)  # type: ignore[arg-type]
        timed.append(time.perf_counter() - started)
    moment = sorted(timed)[1] * train / len(chunk.x_train)
    return _Data(splits, train, val, test, moment), seconds, missing


def _time_steps(configs: list[Config], splits: Splits, budget: float
                ) -> tuple[Timing, list[int], int, int]:
    """Timing of these configs trained as one group (the median of each kind of step, the
    median of three evaluations: a typical step, not one another process interrupted); the
    runnable threads on the machine after each step; the torch threads used; the layers."""
    from winit_cli.training.loop import (
        MemberLog,
        flushes_subnormals,
        record_spectra,
        resolve_device,
    )
    from winit_cli.training.step import evaluate, run_step, setup
    from winit_cli.training.threads import ThreadControl

    device = resolve_device(configs[0].train.device)
    flush = flushes_subnormals(configs[0])
    if flush:
        torch.set_flush_denormal(True)
    threads = ThreadControl(configs[0].train.threads)
    try:
        started = time.perf_counter()
        group = setup(configs, splits, device)
        record_spectra([MemberLog(c) for c in configs], group, splits)
        built = time.perf_counter() - started
        threads.start()
        # Even steps recorded, odd ones not, no validation pass: the two kinds interleaved so
        # that a change of load touches both alike.
        group.plan = Schedule(10**9, 10**9, 2, 10**9)
        spent: dict[bool, list[float]] = {True: [], False: []}
        alive = [True] * len(configs)
        begun, step, runnable = time.perf_counter(), 0, []
        while step < 2 * MAX_STEPS + 1:
            threads.before_step(step)
            tic = time.perf_counter()
            result = run_step(group, step, alive)
            if step >= 1:  # step 0 warms up the allocator and the thread pool
                spent[result.recorded].append(time.perf_counter() - tic)
                runnable += _runnable()
            alive = [a and f for a, f in zip(alive, result.finite, strict=True)]
            step += 1
            if min(len(v) for v in spent.values()) >= MIN_STEPS and \
                    time.perf_counter() - begun > budget:
                break
        x = splits.x_val if len(splits.x_val) else splits.x_train
        n = EVAL_EXAMPLES
        x, y = x[:n].to(device), (splits.y_val if len(splits.x_val) else splits.y_train)[:n]
        evaluations = []
        for _ in range(3):
            tic = time.perf_counter()
            evaluate(group.model, x, y.to(device))
            evaluations.append((time.perf_counter() - tic) / len(x))
        layers = len(group.model.layer_shapes())
        used = torch.get_num_threads()
    finally:
        threads.restore()
        if flush:
            torch.set_flush_denormal(False)
    typical = {k: statistics.median(v) for k, v in spent.items()}
    return (Timing(built, typical[False], typical[True], statistics.median(evaluations)),
            runnable, used, layers)


def _runnable(stat: Path = Path("/proc/stat")) -> list[int]:
    """Threads running or ready to run on the machine now, this one included ([] where
    /proc/stat cannot be read)."""
    try:
        return [int(line.split()[1]) for line in stat.read_text().splitlines()
                if line.startswith("procs_running")]
    except (OSError, ValueError, IndexError):
        return []


def _seconds_per_row(layers_columns: int, rows: int = 2000) -> float:
    """Writing one layers.csv row, timed by writing `rows` of them as a run writes them."""
    import numpy as np
    import pandas as pd

    from winit_cli.records.files import write_csv

    values = np.random.default_rng(0).standard_normal((rows, layers_columns))
    frame = pd.DataFrame(values, columns=[f"c{i}" for i in range(layers_columns)])
    with TemporaryDirectory() as folder:
        started = time.perf_counter()
        write_csv(Path(folder) / "layers.csv", frame)
        return (time.perf_counter() - started) / rows


def group_labels(groups: list[list[Config]]) -> list[str]:
    """What sets each group apart: its model's shape, and any other value that members of one
    group must share (training.SHARED_KEYS) and that differs between the groups."""
    from winit_cli.config import dig
    from winit_cli.training.loop import SHARED_KEYS

    def shape(c: Config) -> str:
        m = c.model
        width = "-".join(map(str, m.widths)) if m.widths else str(m.width)
        kind = "" if m.kind == "mlp" else f"{m.kind} "
        return f"{kind}{m.activation}, depth {m.depth}, width {width}"

    def leaves(c: Config) -> dict[str, object]:
        found: dict[str, object] = {}
        for key in SHARED_KEYS:
            if key in ("model", "record") or key.startswith("data"):
                continue
            found[key.rpartition(".")[2]] = dig(c.to_dict(), key)
        return found

    seen = [leaves(g[0]) for g in groups]
    varying = [k for k in (seen[0] if seen else {}) if len({repr(s[k]) for s in seen}) > 1]
    return [", ".join([shape(g[0]), *(f"{k} {s[k]}" for k in varying)])
            for g, s in zip(groups, seen, strict=True)]


def startup_seconds(measure: bool) -> float | None:
    """This process's age once it has imported what a run imports: a real run's start-up.
    Only meaningful in a `winit` process (`measure`); None otherwise. The first optimizer a
    process makes imports torch._dynamo (1.5 to 3 s here): done now, so that it is counted
    here and not in the first group's setup."""
    from winit_cli.runner import group  # noqa: F401  pandas, the records, the theory

    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    return process_age() if measure else None


def _data_key(c: Config) -> tuple:
    return (c.data.dataset, c.data.val_size, c.data.subset, c.data.dir)


def _shape_key(group: list[Config]) -> tuple:
    """What a group's step time depends on: groups alike in it are timed once."""
    c = group[0]
    return (c.model.model_dump_json(), c.train.batch_size, c.train.optimizer, c.train.device,
            c.train.threads, c.record.jacobian, len(group), _data_key(c))


@dataclass(frozen=True)
class _Shape:
    timing: Timing  # as timed (extrapolated where `extrapolated`)
    runnable: list[int]  # runnable threads on the machine after each timed step
    extrapolated: bool
    threads: int
    layers: int


def estimate(groups: list[list[Config]], data_dir: Path | None = None,
             measure_startup: bool = False) -> CostEstimate:
    """The cost of training `groups` (lists of configs that train together) one after another;
    groups of one shape and size are timed once. `measure_startup`: this process is the
    `winit` command, whose age is a run's start-up (`startup_seconds`)."""
    from winit_cli.measure.quantities import columns
    from winit_cli.training.threads import usable_cpus

    startup = startup_seconds(measure_startup)
    shapes = {_shape_key(g): g for g in groups}
    measurements = sum(1 if len(g) <= EXACT_UP_TO else 2 for g in shapes.values())
    budget = min(STEP_BUDGET, TOTAL_BUDGET / max(1, measurements))
    loaded: dict[tuple, _Data] = {}
    data_seconds, missing = 0.0, []
    for group in groups:
        key = _data_key(group[0])
        if key not in loaded:
            loaded[key], seconds, absent = _load(group[0], data_dir)
            data_seconds += seconds
            missing += [absent] if absent and absent not in missing else []
    timed = {shape: _Shape(*_timing(g, loaded[_data_key(g[0])].splits, budget))
             for shape, g in shapes.items()}
    threads = next(iter(timed.values())).threads if timed else torch.get_num_threads()
    runnable = [n for shape in timed.values() for n in shape.runnable]
    # after a step this thread runs, and torch's other threads may still spin: not others
    others = max(0.0, statistics.mean(runnable) - threads) if runnable else 0.0
    contention = Contention(others, threads, usable_cpus())
    per_row = _seconds_per_row(5 + len(columns())) if groups else 0.0
    costs = []
    for group, label in zip(groups, group_labels(groups), strict=True):
        shape = timed[_shape_key(group)]
        costs.append(_group_cost(label, group, loaded[_data_key(group[0])],
                                 contention.scale(shape.timing),
                                 shape.extrapolated, shape.layers, per_row))
    return CostEstimate(costs, startup, data_seconds, missing, threads, contention)


def _timing(group: list[Config], splits: Splits, budget: float
            ) -> tuple[Timing, list[int], bool, int, int]:
    """The group's Timing (timed whole when small, else at 1 and 2 members and extrapolated),
    runnable-thread samples, whether extrapolated, threads, layers."""
    if len(group) <= EXACT_UP_TO:
        timing, runnable, threads, layers = _time_steps(group, splits, budget)
        return timing, runnable, False, threads, layers
    one, runnable_one, threads, layers = _time_steps(group[:1], splits, budget)
    two, runnable_two, _, _ = _time_steps(group[:2], splits, budget)
    return _extrapolate(one, two, len(group)), runnable_one + runnable_two, True, threads, layers


def _group_cost(label: str, group: list[Config], data: _Data, timing: Timing,
                extrapolated: bool, layers: int, per_row: float) -> GroupCost:
    c = group[0]
    steps = planned_steps(c)
    per_epoch = math.ceil(data.train / c.train.batch_size)
    recorded = recorded_steps(steps, c.record.every)
    passes = evaluations(steps, c.record.eval_every or per_epoch) if data.val else 0
    cost = GroupCost(label, len(group), steps, recorded, passes * data.val + data.test, timing,
                     extrapolated, data.moment, 0.0)
    # A checkpoint every checkpoint_seconds rewrites the tables so far: half of them on average.
    checkpoints = int((cost.training + cost.evaluation) // c.record.checkpoint_seconds)
    rows = recorded * layers * len(group)
    return replace(cost, writing=rows * per_row * (1 + checkpoints / 2))
