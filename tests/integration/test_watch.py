"""`winit.watch` on models the CLI does not build: every recorded value against a plain autograd
computation (retain_grad on each layer's output), unsupported layers, evaluation under no_grad,
gradient accumulation, divergence, and the run folder as `winit report` reads it."""

from __future__ import annotations

import copy
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from torch import nn

import winit_cli as winit
from winit_cli.app.report import build_report
from winit_cli.measure.quantities import columns

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


class SmallCNN(nn.Module):
    """conv -> in-place ReLU -> strided conv -> BatchNorm -> tanh -> Linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)
        self.bn = nn.BatchNorm2d(6)
        self.act2 = nn.Tanh()
        self.fc = nn.Linear(6 * 13 * 13, 10)

    def forward(self, x):
        h = self.act2(self.bn(self.conv2(self.act1(self.conv1(x)))))
        return self.fc(h.flatten(1))

    def reference(self, x, y):
        """The same forward pass by hand, keeping z (with its gradient) and h per layer."""
        z1 = self.conv1(x)
        h1 = torch.relu(z1)
        z2 = self.conv2(h1)
        z3 = self.fc(torch.tanh(self.bn(z2)).flatten(1))
        for z in (z1, z2, z3):
            z.retain_grad()
        F.cross_entropy(z3, y).backward()
        return {"conv1": (z1, h1, "relu"), "conv2": (z2, z2, None), "fc": (z3, z3, None)}


class SequenceNet(nn.Module):
    """Conv1d -> GELU -> LayerNorm -> a Linear applied at every position ([B, L, C] input)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(28, 8, 5, padding=2)
        self.gelu = nn.GELU()
        self.norm = nn.LayerNorm(8)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        h = self.norm(self.gelu(self.conv(x)).transpose(1, 2))
        return self.head(h).mean(dim=1)

    def reference(self, x, y):
        z1 = self.conv(x)
        h1 = F.gelu(z1)
        z2 = self.head(self.norm(h1.transpose(1, 2)))
        for z in (z1, z2):
            z.retain_grad()
        F.cross_entropy(z2.mean(dim=1), y).backward()
        return {"conv": (z1, h1, "gelu"), "head": (z2, z2, None)}


def mnist_batch(mnist_raw, n: int, shape: tuple, device: str, start: int = 0):
    x = mnist_raw.train_images[start:start + n].float().div(255).sub(0.1307).div(0.3081)
    return x.view(n, *shape).to(device), mnist_raw.train_labels[start:start + n].to(device)


def expected(module: nn.Module, z, h, activation: str | None) -> dict[str, float]:
    """layers.csv's row for one layer, computed in float64 from the tensors themselves."""
    d = lambda t: t.detach().double()  # noqa: E731
    row = {"weight_grad_norm": d(module.weight.grad).norm(), "weight_norm": d(module.weight).norm(),
           "bias_grad_norm": d(module.bias.grad).norm(), "act_grad_norm": d(z.grad).norm(),
           "act_mean": d(h).mean(), "act_std": d(h).std(), "saturated_fraction": float("nan"),
           "dead_fraction": float("nan"),
           "weight_grad_abs_mean": d(module.weight.grad).abs().mean(),
           "weight_grad_abs_max": d(module.weight.grad).abs().max()}
    if activation == "relu":  # a unit (channel, position) never positive over the batch
        row["dead_fraction"] = 1 - (d(z).flatten(1) > 0).any(0).double().mean()
    if isinstance(module, nn.Linear):  # every leading index is an example
        row["dead_fraction"] = float("nan")
    return {k: float(v) for k, v in row.items()}


@pytest.mark.mnist
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("net,shape", [(SmallCNN, (1, 28, 28)), (SequenceNet, (28, 28))])
@pytest.mark.parametrize("make_optimizer", [
    lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),  # read from its buffers
    lambda params: torch.optim.Adam(params, lr=0.01)], ids=["momentum", "adam"])  # by difference
def test_records_match_plain_autograd(tmp_path, mnist_raw, device, net, shape, make_optimizer):
    """Each Linear and Conv layer's values at step 0 equal a hand computation with retain_grad
    on its output; norm layers record their parameters only; the update ratio is the optimizer's
    real step, whether read from heavy-ball momentum's buffer or measured as a difference; rows
    follow the order the modules ran."""
    torch.manual_seed(0)
    model = net().to(device)
    twin = copy.deepcopy(model)
    x, y = mnist_batch(mnist_raw, 32, shape, device)
    optimizer = make_optimizer(model.parameters())
    probe = winit.watch(model, optimizer, every=1, out=tmp_path, tensorboard=False)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    probe.step(loss)
    optimizer.step()
    run = probe.close()

    tensors = twin.reference(x, y)
    wanted = {name: expected(twin.get_submodule(name), *t) for name, t in tensors.items()}
    before = {n: p.detach().clone() for n, p in twin.named_parameters()}
    make_optimizer(twin.parameters()).step()
    rows = run.layers.set_index("name")
    names = [n for n, m in twin.named_modules() if isinstance(m, nn.Linear | nn.Conv1d |
                                                               nn.Conv2d | nn.BatchNorm2d |
                                                               nn.LayerNorm)]
    assert sorted(rows.index) == sorted(names)
    for name, want in wanted.items():
        w0 = before[f"{name}.weight"].double()
        want["update_ratio"] = float((twin.get_submodule(name).weight.detach().double() - w0).norm()
                                     / w0.norm())
        for column, value in want.items():
            got = rows.loc[name, column]
            assert got == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), (name, column)
    norm_name = next(n for n in names if n not in tensors)
    norm = twin.get_submodule(norm_name)
    assert rows.loc[norm_name, "weight_grad_norm"] == pytest.approx(
        float(norm.weight.grad.double().norm()), rel=1e-5)
    assert rows.loc[norm_name, ["act_grad_norm", "act_mean", "act_std"]].isna().all()
    assert run.record.depth == len(tensors)
    assert not run.record.theory.applicable and "Conv" in run.record.theory.reason


@pytest.mark.mnist
def test_cnn_layers_are_numbered_in_running_order(tmp_path, mnist_raw):
    """Layers are numbered as they first ran (the verdict's output layer is the last), with
    the module's name beside the number; BatchNorm's row has no dL/dz."""
    torch.manual_seed(0)
    model = SmallCNN()
    x, y = mnist_batch(mnist_raw, 16, (1, 28, 28), "cpu")
    probe = winit.watch(model, every=1, out=tmp_path)
    F.cross_entropy(model(x), y).backward()
    probe.step(0.0)
    run = probe.close()
    assert run.layers[["layer", "name"]].values.tolist() == [
        [1, "conv1"], [2, "conv2"], [3, "bn"], [4, "fc"]]
    assert run.record.activation == "relu"  # after conv1; none straight after conv2 (BatchNorm)
    assert run.layers.update_ratio.isna().all()  # no optimizer: no update to measure


class WithLSTM(nn.Module):
    """Rows of an image as a sequence: Linear -> LSTM -> a scale of its own -> Linear."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(28, 16)
        self.lstm = nn.LSTM(16, 12, batch_first=True)
        self.scale = nn.Parameter(torch.ones(()))
        self.out = nn.Linear(12, 10)

    def forward(self, x):
        h, _ = self.lstm(torch.relu(self.embed(x)))
        return self.out(self.scale * h[:, -1])


def train_steps(model, batches, probe, optimizer=None, lr=0.05):
    for x, y in batches:
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        probe.step(loss)
        if optimizer is not None:
            optimizer.step()
        model.zero_grad(set_to_none=True)


@pytest.mark.mnist
def test_unsupported_layers_are_listed_once_and_the_rest_recorded(tmp_path, mnist_raw):
    """An LSTM and a bare nn.Parameter are named once, in a warning and in config.yaml; the
    Linear layers around them are recorded in full."""
    torch.manual_seed(0)
    model = WithLSTM()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe = winit.watch(model, torch.optim.SGD(model.parameters(), lr=0.05), every=2,
                            out=tmp_path)
        batches = [mnist_batch(mnist_raw, 16, (28, 28), "cpu", start=16 * i) for i in range(5)]
        train_steps(model, batches, probe, probe.optimizer)
        run = probe.close()
    notes = [str(w.message) for w in caught if "not recorded" in str(w.message)]
    assert len(notes) == 1
    assert "lstm (LSTM: weight_ih_l0" in notes[0] and "model (WithLSTM: scale)" in notes[0]
    config = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert config["model"]["not_recorded"][0].startswith("model (WithLSTM: scale)")
    assert sorted(set(run.layers.name)) == ["embed", "out"]
    assert run.layers.step.unique().tolist() == [0, 2, 4]
    assert np.isfinite(run.layers[["weight_grad_norm", "act_grad_norm", "update_ratio",
                                   "act_std"]].to_numpy()).all()
    assert "parameters winit does not record" in run.record.theory.reason


@pytest.mark.mnist
def test_evaluation_under_no_grad_records_nothing(tmp_path, mnist_raw):
    """Forward passes under no_grad or inference_mode, even on a recorded step, leave the
    records exactly as without them."""
    torch.manual_seed(0)
    model = SmallCNN()
    twin = copy.deepcopy(model)
    train = [mnist_batch(mnist_raw, 16, (1, 28, 28), "cpu", start=16 * i) for i in range(3)]
    other, _ = mnist_batch(mnist_raw, 64, (1, 28, 28), "cpu", start=500)
    plain = winit.watch(twin, every=1, out=tmp_path / "plain")
    train_steps(twin, train, plain)
    probe = winit.watch(model, every=1, out=tmp_path / "evaluated")
    for x, y in train:
        with torch.no_grad():
            model(other)
        with torch.inference_mode():
            model(other)
        assert probe.capture.calls == {}
        train_steps(model, [(x, y)], probe)
    a, b = probe.close().layers, plain.close().layers
    np.testing.assert_array_equal(a[list(columns())].to_numpy(), b[list(columns())].to_numpy())


@pytest.mark.mnist
def test_gradient_accumulation_measures_the_whole_batch(tmp_path, mnist_raw):
    """Two half batches, each loss halved, then one probe.step: the records equal those of one
    full batch (the batch is every forward pass of the step)."""
    torch.manual_seed(0)
    whole = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))
    halves = copy.deepcopy(whole)
    x, y = mnist_batch(mnist_raw, 64, (784,), "cpu")
    one = winit.watch(whole, every=1, out=tmp_path / "one")
    train_steps(whole, [(x, y)], one)
    two = winit.watch(halves, every=1, out=tmp_path / "two")
    for part in (slice(0, 32), slice(32, 64)):
        (F.cross_entropy(halves(x[part]), y[part]) / 2).backward()
    two.step(0.0)
    a, b = one.close().layers, two.close().layers
    measured = list(columns())
    np.testing.assert_allclose(b[measured].to_numpy(float), a[measured].to_numpy(float),
                               rtol=1e-5, equal_nan=True)


@pytest.mark.mnist
def test_divergence_is_the_verdict(tmp_path, mnist_raw):
    """A learning rate that blows the weights up: status and verdict `diverged`, at the first
    recorded step whose loss or values are not finite."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e12)
    probe = winit.watch(model, optimizer, every=1, out=tmp_path)
    batches = [mnist_batch(mnist_raw, 32, (784,), "cpu", start=32 * i) for i in range(6)]
    train_steps(model, batches, probe, optimizer)
    run = probe.close()
    assert run.verdict == "diverged" and run.record.status.value == "diverged"
    first_bad = run.metrics[~np.isfinite(run.metrics.train_loss)].step.min()
    assert run.record.verdict.step <= first_bad
    assert run.record.verdict.step > 0


@pytest.mark.mnist
@pytest.mark.slow
def test_report_reads_watched_runs(tmp_path, mnist_raw):
    """`winit report` (build_report) tabulates watched runs like any other: a CNN with a
    BatchNorm row and an MLP, their verdicts from summary.json, nothing skipped."""
    torch.manual_seed(0)
    batches = [mnist_batch(mnist_raw, 16, (1, 28, 28), "cpu", start=16 * i) for i in range(4)]
    runs = []
    for model in (SmallCNN(), nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.Tanh(),
                                            nn.Linear(32, 10))):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        probe = winit.watch(model, optimizer, every=2, out=tmp_path / "results",
                            dataset="mnist")
        train_steps(model, batches, probe, optimizer)
        runs.append(probe.close(test_accuracy=0.5))
    report = build_report([tmp_path / "results"])
    assert not report.skipped
    summary = report.summary.set_index("model_kind")
    assert sorted(summary.index) == ["Sequential", "SmallCNN"]
    for run in runs:
        row = summary.loc[run.record.model_kind]
        assert row.verdict == run.verdict and row.test_accuracy == 0.5
    assert (report.out / "report.md").is_file()


def test_importing_winit_does_not_import_torch():
    """`import winit_cli` stays cheap (the CLI imports it for --help); `winit_cli.watch` is the
    function, on first and later access."""
    code = ("import sys, winit_cli; assert 'torch' not in sys.modules, 'torch imported'; "
            "w = winit_cli.watch; assert 'torch' in sys.modules; "
            "assert winit_cli.watch is w and callable(w), w")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.mnist
@pytest.mark.parametrize("modules,activation,problem", [
    ([nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)],
     "relu", None),
    ([nn.Linear(784, 32), nn.Linear(32, 10)], "linear", None),
    ([nn.Linear(784, 32), nn.LeakyReLU(0.2), nn.Linear(32, 10)], "unknown", "activation"),
    ([nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)],
     "mixed", "activation"),
    ([nn.Linear(784, 32), nn.Dropout(0.1), nn.ReLU(), nn.Linear(32, 10)], "unknown",
     "feed each other"),
    ([nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10), nn.Sigmoid()], "relu", "output layer"),
])
def test_the_theory_applies_to_plain_mlps_only(tmp_path, mnist_raw, modules, activation,
                                               problem):
    """Which models get a prediction: Linear layers feeding each other through one known
    activation (or none: linear); a dropout in between, another slope, mixed activations or
    an activated output layer each say why not."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), *modules)
    probe = winit.watch(model, every=1, out=tmp_path, scheme="torch_default")  # nn.Linear's
    x, y = mnist_batch(mnist_raw, 32, (784,), "cpu")
    train_steps(model, [(x, y)], probe)
    run = probe.close()
    assert run.record.activation == activation
    if problem is None:
        assert run.record.theory.applicable, run.record.theory.reason
        assert run.layers.predicted_q[run.layers.step == 0].notna().all()
    else:
        assert problem in run.record.theory.reason


@pytest.mark.mnist
def test_an_error_in_the_loop_leaves_a_failed_run(tmp_path, mnist_raw):
    """Used as a context manager, the probe closes the run when the loop raises: status
    failed, the error named, no verdict (as for CLI runs), what was recorded kept."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    x, y = mnist_batch(mnist_raw, 16, (784,), "cpu")
    with (pytest.raises(RuntimeError, match="data loader broke"),
          winit.watch(model, every=1, out=tmp_path) as probe):
        train_steps(model, [(x, y)], probe)
        raise RuntimeError("data loader broke")
    summary = yaml.safe_load((probe.dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "data loader broke" in summary["error"]
    assert summary["verdict"] is None and summary["verdict_text"].startswith("no verdict")
    assert len(probe.close().layers) == 2  # closing again returns the same run
