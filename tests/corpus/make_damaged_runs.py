"""Writes the damaged run folders of tests/corpus/runs from the healthy one (runs/good), each
with one kind of damage a copied, edited or half-written results folder can have. The output is
committed; rerun this after changing `good` or adding a case:

    .venv/bin/python tests/corpus/make_damaged_runs.py

DAMAGE maps a folder name to (file, how its bytes change); tests/test_faults_records.py holds
the reason `winit report` must give for skipping each (and `good` plus `hostile_config` must be
reported).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

RUNS = Path(__file__).parent / "runs"


def _summary(change: Callable[[dict], None]) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        summary = json.loads(data)
        change(summary)
        return (json.dumps(summary, indent=2) + "\n").encode()
    return edit


def _cell(line: int, column: str, value: str) -> Callable[[bytes], bytes]:
    """Replace one cell of a CSV (line 1 is the header)."""
    def edit(data: bytes) -> bytes:
        lines = data.decode().splitlines()
        j = lines[0].split(",").index(column)
        cells = lines[line - 1].split(",")
        cells[j] = value
        lines[line - 1] = ",".join(cells)
        return ("\n".join(lines) + "\n").encode()
    return edit


BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9))

DAMAGE: dict[str, tuple[str, Callable[[bytes], bytes] | None]] = {
    "layers_junk_row": ("layers.csv", lambda b: b + b"this line is not a row of numbers\n"),
    "layers_text_in_number": ("layers.csv", _cell(3, "act_grad_norm", "abc")),
    "layers_extra_fields": ("layers.csv", lambda b: b + b"0" + b",1" * 30 + b"\n"),
    "layers_empty_step": ("layers.csv", _cell(4, "step", "")),
    "layers_header_only": ("layers.csv", lambda b: b.split(b"\n")[0] + b"\n"),
    "layers_not_utf8": ("layers.csv", lambda b: b[:200] + b"\xff\xfe\x00" + b[200:]),
    "layers_missing": ("layers.csv", None),
    "layers_truncated": ("layers.csv", lambda b: b[: len(b) // 2]),  # ends mid-row: fewer cells
    "metrics_text_in_number": ("metrics.csv", _cell(3, "train_loss", "1.2.3")),
    "summary_not_utf8": ("summary.json", lambda b: b.replace(b'"good"', b'"g\xe9\xff"', 1)),
    "summary_truncated": ("summary.json", lambda b: b[: len(b) // 3]),
    "summary_verdict_int": ("summary.json", _summary(lambda s: s.update(verdict=5))),
    "summary_depth_text": ("summary.json", _summary(lambda s: s.update(depth="eight"))),
    "summary_status_unknown": ("summary.json", _summary(lambda s: s.update(status="great"))),
    "summary_newer_schema": ("summary.json", _summary(lambda s: s.update(schema_version=99))),
    "summary_list": ("summary.json", lambda b: b"[1, 2, 3]\n"),
    "summary_deep": ("summary.json", lambda b: b"[" * 5000 + b"]" * 5000),
    "hostile_config": ("config.yaml", lambda b: BOMB.encode()),
}


def main() -> None:
    good = RUNS / "good"
    for name, (file, damage) in DAMAGE.items():
        target = RUNS / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(good, target)
        summary = json.loads((target / "summary.json").read_text())
        summary["run_id"] = name
        (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if damage is None:
            (target / file).unlink()
        else:
            (target / file).write_bytes(damage((target / file).read_bytes()))


if __name__ == "__main__":
    main()
