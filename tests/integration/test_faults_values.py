"""Values no honest file holds and inputs built to exhaust winit: a gzip bomb, a sparse 3 GB
table, mathtext in a name, impossible records, a watched loop that never called backward(),
integers of thousands of digits. Each is refused in one line or left out with its reason;
nothing is reported that cannot be true."""

from __future__ import annotations

import gzip
import json
import math
import shutil
import tracemalloc
from pathlib import Path

import pytest
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.datasets import get_dataset
from winit_cli.datasets.idx import read_checked
from winit_cli.errors import DataError

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).parents[1] / "corpus" / "runs"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


def copy_good(root: Path, name: str, edit=None) -> Path:
    """The corpus's healthy run under `root/name`, its summary.json changed by `edit`."""
    run = root / name
    shutil.copytree(CORPUS / "good", run)
    summary = json.loads((run / "summary.json").read_text())
    summary["run_id"] = summary["name"] = name
    if edit is not None:
        edit(summary)
    (run / "summary.json").write_text(json.dumps(summary))
    return run


def test_a_gzip_bomb_as_the_training_images_is_refused_without_inflating_it(tmp_path):
    """300 MB of zeros behind a valid IDX header, gzip'd to 0.3 MB: refused in one line once
    past the 47 MB the file holds (the whole 300 MB were inflated, 3 GB for a 14 MB bomb)."""
    spec = get_dataset("mnist")
    expected = spec.train_images
    path = tmp_path / "train-images-idx3-ubyte.gz"
    header = (0x803).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in expected.shape)
    with gzip.GzipFile(path, "wb", compresslevel=1) as f:
        f.write(header)
        for _ in range(300):
            f.write(bytes(1 << 20))
    payload = 16 + math.prod(expected.shape)
    tracemalloc.start()
    try:
        with pytest.raises(DataError) as err:
            read_checked(path, spec, expected)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(err.value) and f"more than {payload:,} bytes" in str(err.value)
    assert peak < 2 * payload < 300 << 20


def test_a_sparse_3_gb_layers_csv_is_left_out_unread(tmp_path):
    """`winit report` skips the run with the reason and reports the others; it read 3 GB."""
    root = tmp_path / "runs"
    copy_good(root, "ok")
    big = copy_good(root, "big")
    with open(big / "layers.csv", "r+b") as f:
        f.truncate(3 * 10**9 - 1)
        f.seek(0, 2)
        f.write(b"\n")
    result = invoke("report", str(root))
    assert result.exit_code == 0, result.output
    summary = (root / "report" / "summary.csv").read_text()
    assert "ok" in summary and ",big," not in summary
    assert "3,000,000,000 bytes, more than the 1,073,741,824 allowed" in " ".join(
        result.output.split())


def test_a_name_in_mathtext_is_drawn_as_written(tmp_path):
    """A scheme named `$\\frac{1}{$` (matplotlib's mathtext raised ParseSyntaxException and the
    whole report failed): the report is made and matplotlib draws the name as plain text."""
    from matplotlib.figure import Figure

    from winit_cli.views.plots import save

    root = tmp_path / "runs"
    for name, scheme in (("a", r"$\frac{1}{$"), ("b", "he_normal")):
        run = copy_good(root, name, lambda s, scheme=scheme: s.update(scheme=scheme))
        config = (run / "config.yaml").read_text()
        (run / "config.yaml").write_text(config.replace("scheme: he_normal",
                                                        f"scheme: '{scheme}'"))
    result = invoke("report", str(root))
    assert result.exit_code == 0, result.output
    assert list((root / "report" / "plots").glob("*.png"))

    raw = r"scheme $\frac{1}{$ and $x$, costs \$5"
    fig = Figure()
    ax = fig.subplots()
    ax.set_title(raw)
    ax.plot([1, 2], label=raw)
    ax.legend()
    save(fig, tmp_path / "f.png")
    for text in (ax.title, ax.get_legend().get_texts()[0]):
        # matplotlib's own step from a Text's string to what it draws: no mathtext, the raw name
        assert text._preprocess_math(text.get_text()) == (raw, False)


def _layers_edit(edit):
    def apply(run: Path) -> None:
        import pandas as pd

        frame = pd.read_csv(run / "layers.csv")
        edit(frame)
        frame.to_csv(run / "layers.csv", index=False)
    return apply


def _set(key: str, value):
    def edit(summary: dict) -> None:
        block, _, name = key.rpartition(".")
        (summary[block] if block else summary)[name] = value
    return edit


def _duplicate_first_row(frame):
    frame.loc[len(frame)] = frame.iloc[0]


# A damaged copy of the healthy run -> (summary edit, layers.csv edit, the reason it is left out)
IMPOSSIBLE = {
    "accuracy_7": (_set("final.test_accuracy", 7.0), None,
                   "final.test_accuracy: Input should be less than or equal to 1"),
    "steps_negative": (_set("final.steps", -3), None,
                       "final.steps: Input should be greater than or equal to 0"),
    "width_negative": (_set("width", -8), None, "width -8 (positive)"),
    "depth_50": (_set("depth", 50), None, "rows for layers 1 to 3 (3 of them), but depth is 50"),
    "norm_negative": (None, _layers_edit(lambda f: f.__setitem__(
        "act_grad_norm", -f["act_grad_norm"])), "act_grad_norm -0.138"),
    "step_negative": (None, _layers_edit(lambda f: f.__setitem__("step", f["step"] - 1)),
                      "layers.csv line 2: step -1 is negative"),
    "row_twice": (None, _layers_edit(_duplicate_first_row),
                  "layers.csv line 11: a second row for step 0, layer 1"),
    "dead_fraction_2": (None, _layers_edit(lambda f: f.__setitem__("dead_fraction", 2.0)),
                        "dead_fraction 2 is not a fraction in [0, 1]"),
}


def test_impossible_records_are_left_out_with_their_reason(tmp_path):
    """Each impossible record is skipped with why, never tabulated or recommended (a test
    accuracy of 7.0 showed as 700.0% and was recommended; width -8 formed its own group)."""
    root = tmp_path / "runs"
    copy_good(root, "good")
    for name, (summary_edit, layers_edit, _) in IMPOSSIBLE.items():
        run = copy_good(root, name, summary_edit)
        if layers_edit is not None:
            layers_edit(run)
    result = invoke("report", str(root), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    skipped = {s["path"]: s["reason"] for s in report["not_included"]}
    assert set(skipped) == set(IMPOSSIBLE)
    for name, (_, _, reason) in IMPOSSIBLE.items():
        assert reason in skipped[name], (name, skipped[name])
    summary = (root / "report" / "summary.csv").read_text()
    assert all(f",{name}," not in summary for name in IMPOSSIBLE)


def _watched(tmp_path):
    import torch
    from torch import nn

    import winit_cli as winit

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    probe = winit.watch(model, every=1, out=tmp_path / "results", dataset="mnist")
    return torch, model, probe


def _train(torch, model, probe, steps: int, backward: bool = True) -> None:
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 6)),
                                                 torch.tensor([0, 1, 2, 0]))
        if backward:
            loss.backward()
        probe.step(loss)
        model.zero_grad(set_to_none=True)


def test_close_refuses_impossible_final_values_and_keeps_the_real_step_count(tmp_path):
    """`probe.close(test_accuracy=7.0)` and `close(steps=-3)` are refused before anything is
    written (steps=-3 replaced the real count); the probe then closes with what it counted."""
    from winit_cli.errors import ConfigError

    torch, model, probe = _watched(tmp_path)
    _train(torch, model, probe, 3)
    with pytest.raises(ConfigError, match=r"test_accuracy=7\.0: input should be less than"):
        probe.close(test_accuracy=7.0)
    with pytest.raises(ConfigError, match="steps is counted by the probe"):
        probe.close(steps=-3)
    run = probe.close(test_accuracy=0.5)
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["final"]["steps"] == 3 and summary["final"]["test_accuracy"] == 0.5


def test_close_with_a_nan_accuracy_finishes_the_run_with_null(tmp_path):
    """NaN is a number that could not be measured: written as null (JSON has no NaN; the
    write raised and the run stayed 'running' for ever)."""
    torch, model, probe = _watched(tmp_path)
    _train(torch, model, probe, 2)
    run = probe.close(test_accuracy=float("nan"), test_loss=float("inf"))
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["status"] == "complete"
    assert summary["final"]["test_accuracy"] is None and summary["final"]["test_loss"] is None


def test_steps_without_backward_get_no_verdict(tmp_path):
    """`probe.step(loss)` with no backward(): no gradient reached the model, so nothing can be
    said about gradient flow (its NaN gradients once read 'healthy'). Warned once, the gradient
    columns empty, the run complete with no verdict and the reason."""
    torch, model, probe = _watched(tmp_path)
    with pytest.warns(UserWarning, match="step 0: no gradient reached the recorded layers"):
        _train(torch, model, probe, 3, backward=False)
    run = probe.close()
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["verdict"] is None
    assert "no gradient reached the model at 3 of 3 recorded steps" in summary["verdict_text"]
    assert run.layers["act_grad_norm"].isna().all()


def test_a_module_used_twice_and_a_shared_weight_are_warned(tmp_path):
    """A Linear applied twice per forward pass, and two Linears tied to one weight: each is
    named in a warning saying what its rows hold (it was recorded as one layer, silently)."""
    import torch
    from torch import nn

    import winit_cli as winit

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner, self.first, self.last = nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
            self.last.weight = nn.Parameter(torch.randn(3, 6))
            self.tied = nn.Linear(6, 3)
            self.tied.weight = self.last.weight  # one weight, two layers

        def forward(self, x):
            h = torch.tanh(self.inner(torch.tanh(self.inner(self.first(x)))))
            return self.last(h) + self.tied(h)

    model = Twice()
    with pytest.warns(UserWarning, match="last and tied share one weight"):
        probe = winit.watch(model, every=1, out=tmp_path / "results", dataset="mnist")
    loss = nn.functional.cross_entropy(model(torch.randn(4, 6)), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    with pytest.warns(UserWarning, match="inner ran more than once in a forward pass"):
        probe.step(loss)
    probe.close()


BIG = "1" * 5000  # Python refuses to read an int of more than 4,300 digits (ValueError)


@pytest.mark.parametrize("where", ["file", "set", "sweep", "grid", "option", "summary"])
def test_an_integer_of_5000_digits_is_one_line_and_exit_2(where, tmp_path):
    """In a config file, a --set, a sweep file, a --grid value: one line, exit 2 (a ValueError
    traceback); in --depths, one short line (it quoted all 5,000 digits). In a run's
    summary.json: the run is left out with the reason."""
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  depth: 3\n")
    if where == "summary":
        root = tmp_path / "runs"
        copy_good(root, "ok")
        run = copy_good(root, "big")
        (run / "summary.json").write_text((run / "summary.json").read_text().replace(
            '"seed": 0', f'"seed": {BIG}'))
        result = invoke("report", str(root))
        assert result.exit_code == 0, result.output
        assert "big" in result.output and "not JSON" in result.output
        return
    args = {
        "file": ["run", str(config)],
        "set": ["run", str(config), "--set", f"train.seed={BIG}"],
        "sweep": ["compare", "schemes", "--sweep", str(tmp_path / "s.yaml"), "--dry-run"],
        "grid": ["compare", "schemes", "--grid", f"train.seed={BIG},1", "--dry-run"],
        "option": ["compare", "schemes", "--depths", BIG, "--dry-run"],
    }[where]
    if where == "file":
        config.write_text(f"model:\n  depth: {BIG}\n")
    (tmp_path / "s.yaml").write_text(f"name: s\nbase: {config}\ngrid:\n  model.depth: [{BIG}]\n")
    result = invoke(*args, "--set", f"output_dir={tmp_path / 'out'}")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error:") and len(result.output) < 300
    assert ("5,002 chars" if where == "option" else "5,000 digits") in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out").exists()


@pytest.mark.parametrize("dry_run", [False, True], ids=["run", "dry-run"])
def test_a_sweep_name_of_300_characters_is_refused_in_one_line(dry_run, tmp_path):
    """`compare --name` of 300 characters: the sweep folder's name is too long for the file
    system (an OSError traceback), and --dry-run accepted it."""
    result = invoke("compare", "schemes", "--name", "a" * 300, *(["--dry-run"] * dry_run),
                    "--set", f"output_dir={tmp_path / 'out'}")
    assert result.exit_code == 2, result.output
    assert "300 characters; at most 100" in result.output and len(result.output.splitlines()) <= 2
    assert not (tmp_path / "out").exists()


def _run(mnist_path: Path, tmp_path: Path, *sets: str) -> dict:
    """A small real `winit run` of the quickstart config with `sets`; its summary.json."""
    config = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
    out = tmp_path / "out"
    args = ["run", str(config), "--set", f"output_dir={out}", "--set", f"data.dir={mnist_path}"]
    for item in sets:
        args += ["--set", item]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    (summary,) = out.glob("*/summary.json")
    return json.loads(summary.read_text())


@pytest.mark.mnist
def test_samples_per_second_counts_the_examples_a_batch_holds(mnist_path, tmp_path):
    """A batch of 128 over 100 examples holds 100 (it was counted as 128: up to 32x high)."""
    summary = _run(mnist_path, tmp_path, "data.subset=100", "train.batch_size=128",
                   "train.steps=6", "model.depth=2", "model.width=8")
    final = summary["final"]
    assert final["samples_per_second"] * final["group_seconds"] == pytest.approx(
        final["steps"] * 100)


@pytest.mark.mnist
def test_depth_1_gets_no_verdict_for_want_of_a_hidden_layer(mnist_path, tmp_path):
    """One Linear layer: no ratio to the output layer exists (it printed +0.00 and healthy)."""
    summary = _run(mnist_path, tmp_path, "model.depth=1", "train.steps=4", "data.subset=200")
    assert summary["verdict"] is None
    assert "no hidden layer to compare with the output layer" in summary["verdict_text"]


@pytest.mark.mnist
def test_a_loss_10000_times_its_first_value_is_diverged(mnist_path, tmp_path):
    """Adam at lr 1e6 (tanh keeps every value finite) drives the loss to ~1e8 from 2.3: that
    is a divergence, not 'exploding' or 'vanishing' gradients."""
    summary = _run(mnist_path, tmp_path, "model.activation=tanh", "train.optimizer=adam",
                   "train.lr=1e6", "train.steps=30", "data.subset=500")
    assert summary["status"] == "diverged" and summary["verdict"]["verdict"] == "diverged"
    assert "the training loss reached" in summary["verdict_text"]


@pytest.mark.parametrize("value", ["a\nb", "a\x1b[31mred", "\x1b]0;title\x07"])
def test_control_characters_in_a_set_value_are_echoed_escaped(value, tmp_path):
    """A newline or a terminal escape typed into --set comes back as its escape, on one line
    (it was echoed raw: a second line, or a recoloured terminal)."""
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  depth: 3\n")
    result = invoke("run", str(config), "--set", f"mo{value}del.depth=3")
    assert result.exit_code == 2
    assert len(result.output.strip().splitlines()) == 1
    assert not any(c in result.output for c in "\x1b\x07") and repr(value)[1:-1] in result.output


def test_an_empty_config_file_is_refused(tmp_path):
    """An empty file (or only comments) trained the defaults without a word: most likely not
    the file meant. `{}` still asks for the defaults on purpose."""
    config = tmp_path / "c.yaml"
    config.write_text("# nothing here yet\n")
    result = invoke("run", str(config), "--set", f"output_dir={tmp_path / 'out'}")
    assert result.exit_code == 2 and "empty" in result.output and "write {}" in result.output
    assert not (tmp_path / "out").exists()
