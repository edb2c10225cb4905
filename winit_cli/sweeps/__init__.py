"""Sweeps: specs (spec.py), planning and grouping (plan.py), executors behind one factory
(executors.py; ray_executor.py registers the cluster one), and running with the comparison table
(comparison.py)."""

# Registers the Ray executor with the factory (Ray itself is imported only when it is used).
from winit_cli.sweeps import ray_executor as _ray_executor  # noqa: F401
