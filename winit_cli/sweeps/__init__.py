"""Sweeps: specs (spec.py), planning and grouping (plan.py), executors behind one factory
(executors.py; processes.py registers the local one, ray_executor.py the cluster one), and
running with the comparison table (comparison.py)."""

# Register the local and Ray executors with the factory (Ray itself is imported only when it is
# used).
from winit_cli.sweeps import processes as _processes  # noqa: F401
from winit_cli.sweeps import ray_executor as _ray_executor  # noqa: F401
