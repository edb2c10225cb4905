"""What `record.jacobian` adds to a quickstart-size run, measured in the same process.

    python benchmarks/bench_jacobian.py [--repeats 3] [--steps 1290]

The quickstart (10 layers of 256, He, 3 epochs = 1290 steps of 128 on MNIST's 55,000 training
examples) trained with and without the step-0 Jacobian spectrum (16 inputs, exact). Trials
alternate and medians are compared: machines are shared and noisy, only the ratio holds. The
target (issue 12): under 10% added.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from winit_cli.app.experiment import load_splits, run_group
from winit_cli.config import load_config
from winit_cli.measure.jacobian import jacobian_spectrum  # noqa: F401  (imported before timing)


def timed_run(jacobian: bool, steps: int, out: str, splits) -> float:
    config = load_config("configs/quickstart.yaml", [
        f"train.steps={steps}", f"record.jacobian={str(jacobian).lower()}", f"output_dir={out}"])
    start = time.perf_counter()
    run_group([config], splits)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1290)
    args = parser.parse_args()
    splits = load_splits(load_config("configs/quickstart.yaml"))
    times: dict[bool, list[float]] = {False: [], True: []}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(args.repeats):
            for jacobian in (False, True):
                times[jacobian].append(timed_run(jacobian, args.steps, out, splits))
    base, with_jacobian = (statistics.median(times[k]) for k in (False, True))
    print(f"quickstart, {args.steps} steps: {base:.1f} s without, {with_jacobian:.1f} s with "
          f"record.jacobian (median of {args.repeats}): +{100 * (with_jacobian / base - 1):.1f}%")
    # Each trial with the spectrum beside the one just before it without: on a machine whose
    # load changes over minutes, adjacent pairs share more of it than the medians do.
    paired = [w / b for b, w in zip(times[False], times[True], strict=True)]
    print("paired ratios (with / without, adjacent trials): "
          + ", ".join(f"{r:.3f}" for r in paired)
          + f"; median +{100 * (statistics.median(paired) - 1):.1f}%")


if __name__ == "__main__":
    main()
