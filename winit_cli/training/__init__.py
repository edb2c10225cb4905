"""Training: the loop with probes (loop.py) and its parts (step, schedule, threads, spectrum).

`ProgressFn` is defined here rather than in loop.py so that sweeps and the application can name
the callback without importing torch.
"""

from collections.abc import Callable

# on_progress(step, total steps, info), from whichever group is training: info holds the running
# "loss" and the "elapsed" seconds
ProgressFn = Callable[[int, int, dict], None]
