"""Sweeps: specs (spec.py), planning and grouping (plan.py), executors behind one factory
(executors.py), and running with the comparison table (comparison.py)."""
