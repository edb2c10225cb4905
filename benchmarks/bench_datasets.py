"""What verifying a dataset costs, against decoding it, measured in the same run.

    python benchmarks/bench_datasets.py [--repeats 5]

For MNIST (the published .gz files) and Fashion-MNIST (a recompressed copy), found as winit
finds them ($WINIT_DATA_DIR, the cache): the median time of reading + gunzipping the four files
(the part no loader can skip), of hashing their payloads (md5 of ~55 MB), of hashing the .gz
bytes (the published-archive fast path), and of a whole `load_raw` (lookup, decode, verify).
Machines are shared and noisy: trials alternate and medians are compared; only ratios hold.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import statistics
import time

from winit_cli.datasets import find_dir, get_dataset, load_raw


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name: str, repeats: int) -> dict[str, float]:
    spec = get_dataset(name)
    folder = find_dir(spec)
    if folder is None:
        raise SystemExit(f"{spec.title} not found: set WINIT_DATA_DIR")
    stored = [(folder / f.name).read_bytes() for f in spec.files]
    payloads = [gzip.decompress(b) for b in stored]
    trials: dict[str, list[float]] = {"decode": [], "payload md5": [], "archive md5": [],
                                      "load_raw": []}
    for _ in range(repeats):
        trials["decode"].append(timed(lambda: [gzip.decompress((folder / f.name).read_bytes())
                                               for f in spec.files]))
        trials["payload md5"].append(timed(lambda: [hashlib.md5(p).hexdigest()
                                                    for p in payloads]))
        trials["archive md5"].append(timed(lambda: [hashlib.md5(b).hexdigest() for b in stored]))
        trials["load_raw"].append(timed(lambda: load_raw(spec, download=False)))
    return {key: statistics.median(values) for key, values in trials.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    for name in ("mnist", "fashion_mnist"):
        medians = measure(name, args.repeats)
        base = medians["decode"]
        print(f"{name}: " + ", ".join(f"{key} {1000 * value:.0f} ms ({value / base:.2f}x decode)"
                                      for key, value in medians.items()))


if __name__ == "__main__":
    main()
