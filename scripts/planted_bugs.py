"""Plant the bugs that once went unnoticed (issue 16), one at a time, and check a test catches each.

Each plant is a textual edit of one module in a private copy of the committed tree (HEAD: commit
first); the tests named for it must then fail, and pass again once it is undone (the copy is
restored before the next). These are the plausible bugs that every test passed before the tests
in test_training_loop.py, test_training_reference.py, test_batched_members.py,
test_probes_numerics.py, test_sweep_resume.py, test_report_grid.py, test_atomic_writes.py,
test_predict_lsuv.py and test_subnormals.py were written; those of issue 25 (one per capability
the suite lacked: docs/testing.md's rule) are caught by the test written for each.

    .venv/bin/python scripts/planted_bugs.py            # all (a few minutes)
    .venv/bin/python scripts/planted_bugs.py --docs     # and rewrite docs/testing.md's block

Exits 1 if any plant goes unnoticed, or if a plant no longer applies (the code it edits moved).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path
from typing import NamedTuple

import mutation_report

REPO = Path(__file__).resolve().parents[1]


class Plant(NamedTuple):
    bug: str
    module: str
    edits: list[tuple[str, str]]  # (text in the module, what it becomes)
    tests: list[str]  # test files, by file name: found wherever they sit under tests/ (`located`)


STEP, LOOP = "winit_cli/training/step.py", "winit_cli/training/loop.py"
NORMS = "winit_cli/measure/norms.py"
SCHEDULE = "winit_cli/training/schedule.py"
PLANTS = [
    Plant("float64 recompute of norms outside float32's range removed", NORMS,
          [("    for i in rows[wrong.any(axis=1)]:", "    for i in rows[:0]:")],
          ["test_probes_numerics.py"]),
    Plant("act_std's recompute from centred values removed", "winit_cli/measure/quantities.py",
          [("        redo = np.flatnonzero(((means**2 > 10 * var) | out_of_band(std))"
            ".any(axis=1))", "        redo = []")], ["test_probes_numerics.py"]),
    Plant("weight decay (and a scheme's L2) never applied", STEP,
          [("decay if bool((decay != 0).any()) else None", "None")],
          ["test_training_reference.py", "test_batched_members.py"]),
    Plant("no redo with a trace for a divergence between recorded steps", STEP,
          [("    if trace is None and any(a and not f", "    if False and any(a and not f")],
          ["test_training_loop.py"]),
    Plant("resume treats only 'complete' as done", "winit_cli/status.py",
          [("return self in (Status.COMPLETE, Status.DIVERGED)",
            "return self in (Status.COMPLETE,)")], ["test_sweep_resume.py"]),
    Plant("report aggregation ignores grid keys", "winit_cli/records/rows.py",
          [('return [*GROUP, "scheme", *map(column_name, grid)]', 'return [*GROUP, "scheme"]')],
          ["test_report_grid.py"]),
    Plant("plain non-atomic writes", "winit_cli/records/files.py",
          [("    fd, tmp = tempfile.mkstemp(",
            "    path.write_bytes(text if isinstance(text, bytes) else text.encode())\n"
            "    return\n"
            "    fd, tmp = tempfile.mkstemp(")], ["test_atomic_writes.py"]),
    Plant("LSUV's theory from the formula variance, not the measured one",
          "winit_cli/diagnosis/predict.py",
          [("    if scheme.data_dependent:\n        w = (step0",
            "    if False:\n        w = (step0")], ["test_predict_lsuv.py"]),
    Plant("train-metrics window never reset", LOOP,
          [("        window.reset()", "        pass")], ["test_training_loop.py"]),
    Plant("Adam with other betas", STEP,
          [("torch.optim.Adam(params, lr=t.lr, fused=True)",
            "torch.optim.Adam(params, lr=t.lr, fused=True, betas=(0.9, 0.99))")],
          ["test_training_reference.py"]),
    Plant("validation on the recording interval instead of its own", SCHEDULE,
          [("return (step > 0 and step % self.eval_every == 0) or step == self.steps",
            "return (step > 0 and step % self.record_every == 0) or step == self.steps")],
          ["test_training_loop.py"]),
    Plant("subnormals never flushed", LOOP,
          [("        torch.set_flush_denormal(True)", "        pass")],
          ["test_subnormals.py"]),
    Plant("checkpoints never written", LOOP,
          [("        if on_checkpoint and time.perf_counter()",
            "        if False and time.perf_counter()")], ["test_training_loop.py"]),
    Plant("step 0 not recorded", SCHEDULE,
          [("return step % self.record_every == 0 or step == self.steps",
            "return (step > 0 and step % self.record_every == 0) or step == self.steps")],
          ["test_training_loop.py"]),
    Plant("batched members all take the first member's weight decay", STEP,
          [("                          for c in configs], device=device)",
            "                          for c in configs[:1] * len(configs)], device=device)")],
          ["test_batched_members.py"]),
    # Issue 25: one capability each, written against an independent computation.
    Plant("BatchNorm's whole-net prediction over one layer too many",
          "winit_cli/diagnosis/predict_families.py",
          [("    predicted = per_layer * (depth - 2)", "    predicted = per_layer * (depth - 1)")],
          ["test_predict_batchnorm.py"]),
    Plant("LayerNorm's chi_l from layer l's sigma_w^2 instead of layer l+1's",
          "winit_cli/theory/layernorm_dropout.py",
          [("chi = [sigma[i + 1] * dsm / q[i]", "chi = [sigma[i] * dsm / q[i]")],
          ["test_theory_layernorm_dropout.py::"
           "test_layernorm_per_layer_chi_with_non_uniform_layers_matches_a_simulated_net"]),
    Plant("phase diagram decides 'trained' on train accuracy", "winit_cli/app/phase.py",
          [('grid["trained"] = grid.test_accuracy > options.threshold',
            'grid["trained"] = grid.train_accuracy > options.threshold')],
          ["test_phase.py::test_trained_is_decided_by_test_accuracy_on_a_comparison_csv_whose_"
           "accuracies_disagree"]),
    Plant("steps_to_target takes the last step at the target, not the first",
          "winit_cli/records/reader.py",
          [("return int(hit.step.iloc[0]) if len(hit)",
            "return int(hit.step.iloc[-1]) if len(hit)")],
          ["test_ranking.py"]),
    Plant("configurations ranked by validation accuracy", "winit_cli/records/rows.py",
          [("_acc=configs.test_accuracy_mean.astype(float)",
            "_acc=configs.val_accuracy_mean.astype(float)")], ["test_ranking.py"]),
    Plant("glorot resolved to xavier_normal", "winit_cli/inits/aliases.py",
          [('"glorot": "xavier_uniform"', '"glorot": "xavier_normal"')], ["test_aliases.py"]),
    Plant("SELU given gain 1 (self-normalizing) instead of torch's 3/4",
          "winit_cli/inits/registry.py",
          [('"selu": 3.0 / 4,', '"selu": 1.0,')],
          ["test_gains.py"]),
    Plant("watch's TensorBoard tags named in registration order, not forward order",
          "winit_cli/watcher/probe.py",
          [("names = [self.layers[i].name for i in self.capture.order[:len(record.values)]]",
            "names = [layer.name for layer in self.layers[:len(record.values)]]")],
          ["test_tensorboard_order.py"]),
]


def copy_head(dest: Path) -> None:
    archive = subprocess.run(["git", "archive", "--format=tar", "HEAD"], cwd=REPO,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")


def located(root: Path, names: list[str]) -> list[str]:
    """Test files named by file name (or file::test), as paths from `root`; each file must be
    under tests/ once."""
    paths = []
    for name in names:
        file, sep, test = name.partition("::")
        found = sorted((root / "tests").rglob(file))
        if len(found) != 1:
            raise SystemExit(f"{file}: {len(found)} files of that name under {root / 'tests'}")
        paths.append(found[0].relative_to(root).as_posix() + sep + test)
    return paths


def failing(copy: Path, tests: list[str]) -> list[str]:
    """The tests that fail in `copy` (stopping at the first), as pytest names them."""
    tests = located(copy, tests)
    env = {**os.environ, "PYTHONPATH": str(copy), "PYTHONDONTWRITEBYTECODE": "1",
           "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                          *tests], cwd=copy, env=env, capture_output=True, text=True)
    if run.returncode not in (0, 1):
        raise SystemExit(f"pytest could not run {tests}:\n{run.stdout[-2000:]}{run.stderr}")
    return re.findall(r"^FAILED (\S+)", run.stdout, re.M)


def check(plant: Plant, copy: Path) -> list[str]:
    path = copy / plant.module
    original = path.read_text()
    text = original
    for old, new in plant.edits:
        if text.count(old) != 1:
            raise SystemExit(f"{plant.bug}: {plant.module} no longer has {old!r} once; update "
                             "the plant")
        text = text.replace(old, new)
    path.write_text(text)
    try:
        return failing(copy, plant.tests)
    finally:
        path.write_text(original)


def rewrite_docs(rows: list[str]) -> None:
    table = "\n".join(["| bug planted | in | first test that fails |", "| --- | --- | --- |",
                       *rows])
    print(f"rewrote the table of {mutation_report.rewrite_docs(table, 'planted')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", action="store_true",
                        help="rewrite the table in the docs (docs/testing.md)")
    args = parser.parse_args()
    rows, missed = [], []
    with tempfile.TemporaryDirectory(prefix="winit-planted-") as tmp:
        copy = Path(tmp)
        copy_head(copy)
        if failing(copy, sorted({t for p in PLANTS for t in p.tests})):
            raise SystemExit("the tests fail with nothing planted")
        for plant in PLANTS:
            failed = check(plant, copy)
            caught = re.sub(r"^\S*?/(?=test_)", "", failed[0]) if failed else "NOT CAUGHT"
            print(f"{plant.bug}: {caught}", flush=True)
            rows.append(f"| {plant.bug} | `{plant.module.removeprefix('winit_cli/')}` "
                        f"| `{caught}` |")
            if not failed:
                missed.append(plant.bug)
    if args.docs:
        rewrite_docs(rows)
    if missed:
        raise SystemExit(f"not caught: {'; '.join(missed)}")


if __name__ == "__main__":
    main()
