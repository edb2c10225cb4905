"""What `record.jacobian` adds to a quickstart-size run, measured in the same process.

    python benchmarks/bench_jacobian.py [--repeats 5] [--steps 1290]

The quickstart (10 layers of 256, He, 3 epochs = 1290 steps of 128 on MNIST's 55,000 training
examples) trained with and without the step-0 Jacobian spectrum (16 inputs, exact). Two ratios,
both from this run (machines are shared and noisy, only ratios hold; issue 12's target: under
10% added):

- in-run share: inside each run with the spectrum, the seconds spent taking it over the run's
  own wall time. Both are measured in the same seconds of the same process, so a neighbour's
  load slows both alike: the steadiest figure on a shared machine. (Writing spectrum.csv,
  4,096 rows, is outside it.)
- end to end: runs with and without alternate; medians, and each with-run over the without-run
  just before it. On a machine whose load swings by tens of percent from minute to minute this
  one is only as good as the machine is quiet; compare it with the in-run share.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import winit_cli.training.loop as loop
from winit_cli.config import load_config
from winit_cli.runner.group import load_splits, run_group

spectrum_seconds: list[float] = []
_init_spectra = loop.init_spectra


def _timed_init_spectra(*args, **kwargs):
    start = time.perf_counter()
    try:
        return _init_spectra(*args, **kwargs)
    finally:
        spectrum_seconds.append(time.perf_counter() - start)


loop.init_spectra = _timed_init_spectra  # the name the training loop calls


def timed_run(jacobian: bool, steps: int, out: str, splits) -> float:
    config = load_config("configs/quickstart.yaml", [
        f"train.steps={steps}", f"record.jacobian={str(jacobian).lower()}", f"output_dir={out}"])
    start = time.perf_counter()
    run_group([config], splits)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1290)
    args = parser.parse_args()
    splits = load_splits(load_config("configs/quickstart.yaml"))
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            for jacobian in (False, True):
                times[jacobian].append(timed_run(jacobian, args.steps, out, splits))
    shares = [s / t for s, t in zip(spectrum_seconds, times[True], strict=True)]
    print(f"in-run share: the spectrum took {statistics.median(spectrum_seconds):.2f} s of a "
          f"{statistics.median(times[True]):.1f} s run (medians of {args.repeats}): "
          f"+{100 * statistics.median(shares):.1f}% (per run: "
          + ", ".join(f"{100 * s:.1f}%" for s in shares) + ")")
    base, with_jacobian = (statistics.median(times[k]) for k in (False, True))
    paired = [w / b for b, w in zip(times[False], times[True], strict=True)]
    print(f"end to end, {args.steps} steps: {base:.1f} s without, {with_jacobian:.1f} s with "
          f"record.jacobian (medians of {args.repeats}): {100 * (with_jacobian / base - 1):+.1f}%;"
          " paired (with / the without just before): "
          + ", ".join(f"{r:.3f}" for r in paired)
          + f", median {100 * (statistics.median(paired) - 1):+.1f}%")


if __name__ == "__main__":
    main()
