"""`--json`: a command's result as one JSON document on stdout, for scripts. Built from the same
records and tables the terminal views draw; numbers that could not be measured are null.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd


def _plain(x: Any) -> Any:
    """numpy and pandas scalars as Python values; NaN, inf and pd.NA as None."""
    if x is None or x is pd.NA:
        return None
    if hasattr(x, "item") and not isinstance(x, list | dict | str):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, Path):
        return str(x)
    return x


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) for k, v in row.items()} for row in frame.to_dict("records")]


def dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, default=_plain, allow_nan=False)


def run_result(outcome, report_dir: Path | None) -> dict[str, Any]:
    return {"run_dir": str(outcome.run_dir), "report_dir": _plain(report_dir),
            "record": outcome.record.to_json()}


def comparison_result(comparison) -> dict[str, Any]:
    frame = comparison.frame
    return {"sweep_dir": str(comparison.plan.directory), "comparison_csv": str(comparison.path),
            "runs": records(frame) if frame is not None else []}


def phase_result(diagram, agreement: tuple[int, int], fit, line: str) -> dict[str, Any]:
    """`winit phase --json`: where the grid and figure are, the agreement, the fitted c (an
    app.phase.BestC or None)."""
    return {"sweep_dir": str(diagram.comparison.plan.directory),
            "grid_csv": str(diagram.grid_path), "figure": str(diagram.figure_path),
            "c": diagram.options.c, "right": agreement[0], "total": agreement[1],
            "best_c": None if fit is None else {"low": fit.low, "high": _plain(fit.high),
                                                "right": fit.right, "total": fit.total},
            "agreement": line, "cells": records(diagram.grid)}


def report_result(report) -> dict[str, Any]:
    groups = []
    for (title, configs), line in zip(report.groups.items(), report.recommendations,
                                      strict=True):
        table = configs.drop(columns="members").assign(
            label=[report.labels[i].replace("`", "") for i in configs.index])
        groups.append({"title": title, "recommendation": line.replace("**", "")
                       .replace("`", ""), "configurations": records(table)})
    return {"out": str(report.out), "files": [str(f) for f in report.files], "groups": groups,
            "runs": records(report.summary),
            "not_included": [{"path": s.path, "reason": s.reason} for s in report.skipped]}


def cost_estimate(cost) -> dict[str, Any]:
    """An app.estimate.CostEstimate: seconds by part, and each group's counts and timings."""
    return {
        "seconds_by_part": cost.parts(), "startup_measured": cost.startup is not None,
        "data_not_on_machine": list(cost.missing), "threads": cost.threads,
        "other_runnable_threads": cost.contention.others if cost.contention else None,
        "fair_cpu_share": cost.contention.fair_share if cost.contention else None,
        "groups": [{"label": g.label, "runs": g.members, "steps": g.steps,
                    "recorded_steps": g.recorded, "evaluated_examples": g.evaluated,
                    "step_seconds": g.timing.plain, "recorded_step_seconds": g.timing.recorded,
                    "extrapolated": g.extrapolated, "seconds": g.seconds}
                   for g in cost.groups]}
