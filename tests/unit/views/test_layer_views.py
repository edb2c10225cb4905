"""Per-layer weight and gradient views: the histograms of record.histograms (counts against
numpy.histogram on the same tensors) and the plot_grad_flow bars (heights against layers.csv),
on real MNIST: a stacked model's own forward and backward, and two tiny real runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.config import ModelConfig, load_config
from winit_cli.inits import initialize
from winit_cli.measure.histograms import BINS, EDGES, THRESHOLDS, layer_histograms, member_counts
from winit_cli.models import build_model
from winit_cli.runner.group import load_splits, run_group
from winit_cli.views.grad_flow import Bars, grad_flow_bars, recorded_step


def numpy_counts(values: np.ndarray) -> np.ndarray:
    """BINS counted by numpy: zeros and NaN apart, then numpy.histogram of |x| > 0 over
    [0, the edges..., inf] (its last bin is closed, so it holds inf)."""
    a = np.abs(values.astype(np.float64).ravel())
    finite_or_inf = a[~np.isnan(a)]
    counts, _ = np.histogram(finite_or_inf[finite_or_inf > 0],
                             bins=[0.0, *THRESHOLDS.astype(np.float64), np.inf])
    return np.array([(finite_or_inf == 0).sum(), *counts, np.isnan(a).sum()])


def test_bins_are_the_documented_ones():
    """Half-decade log10 |x| bins from 10^-24 to 10^4, the edges float32 nearest to 10^e."""
    assert EDGES[0] == -24 and EDGES[-1] == 4 and np.allclose(np.diff(EDGES), 0.5)
    assert len(BINS) == len(EDGES) - 1 + 4
    assert BINS[:3] == ("zero", "below", "-24.0") and BINS[-3:] == ("3.5", "above", "nan")
    assert np.allclose(THRESHOLDS, 10.0 ** EDGES, rtol=1e-7)


def test_edge_cases_count_as_numpy_does():
    """Exact zeros, values on an edge (which belongs to the bin above it), tiny, huge, inf and
    NaN values, per member."""
    on_edges = THRESHOLDS[::7]
    x = torch.tensor([[0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf, np.nan, 1e5, *on_edges],
                      [*-on_edges, 3e-3, -3e-3, 0.0, 1e-7, np.nan, 2.0, 7.0, 1e-24]],
                     dtype=torch.float32)
    got = member_counts(x).numpy()
    for k in range(2):
        assert got[k].tolist() == numpy_counts(x[k].numpy()).tolist()
    assert got[0][BINS.index("zero")] == 2 and got[0][BINS.index("nan")] == 1
    assert got[0][BINS.index("above")] == 4  # inf, -inf, 1e5 and 10^4 itself (the last edge)
    assert got[0][BINS.index("-24.0")] == 1  # 10^-24 exactly: the bin it opens


@pytest.mark.mnist
def test_layer_histograms_match_numpy_on_mnist(mnist_raw):
    """Every member's and layer's weights and dL/dW after a real MNIST forward and backward,
    against numpy.histogram of the same tensors; a ReLU net has dead units, so exact zeros."""
    spec = ModelConfig(depth=5, width=48, activation="relu")
    model = build_model(spec, input_size=784, classes=10, members=2)
    for k, scheme in enumerate(("he_normal", "xavier_normal")):
        initialize(model, k, scheme, {}, torch.Generator().manual_seed(k))
    x = mnist_raw.train_images[:128].float().div(255).view(128, -1)
    y = mnist_raw.train_labels[:128]
    logits = model(x.expand(2, *x.shape))
    F.cross_entropy(logits.reshape(-1, 10), y.repeat(2)).backward()
    counts = layer_histograms(model).numpy()  # [K, L, 2, bins]
    assert counts.shape == (2, 5, 2, len(BINS))
    for l, layer in enumerate(model.linears()):
        for k in range(2):
            for t, tensor in enumerate((layer.weight, layer.weight.grad)):
                expected = numpy_counts(tensor[k].detach().numpy())
                assert counts[k, l, t].tolist() == expected.tolist(), (k, l, t)
    assert counts[:, :, 1, BINS.index("zero")].sum() > 0


def _config(out: Path, scheme: str, histograms: bool = True):
    return load_config(None, [
        f"name=hist_{scheme}", f"init.scheme={scheme}", "model.depth=5", "model.width=32",
        "data.subset=500", "data.val_size=500", "train.steps=20", "record.every=5",
        f"record.histograms={str(histograms).lower()}", f"output_dir={out}"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory, mnist_path: Path) -> Path:
    root = tmp_path_factory.mktemp("runs")
    configs = [_config(root, s) for s in ("he_normal", "normal")]
    run_group(configs, load_splits(configs[0], mnist_path))
    return root


def _run_dir(root: Path, scheme: str) -> Path:
    (found,) = root.glob(f"*_hist_{scheme}_*")
    return found


@pytest.mark.mnist
def test_histograms_csv_agrees_with_layers_csv(runs: Path):
    """histograms.csv has a weight and a grad row per recorded step and layer; each row counts
    every weight; the largest |dL/dW| in layers.csv lies in the highest bin holding a value."""
    for scheme in ("he_normal", "normal"):
        layers = pd.read_csv(_run_dir(runs, scheme) / "layers.csv")
        hist = pd.read_csv(_run_dir(runs, scheme) / "histograms.csv")
        assert list(hist.columns) == ["step", "epoch", "layer", "tensor", *BINS]
        assert len(hist) == 2 * len(layers)
        merged = hist.merge(layers[["step", "layer", "fan_in", "fan_out", "weight_grad_abs_max"]],
                            on=["step", "layer"])
        assert (merged[list(BINS)].sum(axis=1) == merged.fan_in * merged.fan_out).all()
        grads = merged[merged.tensor == "grad"]
        for _, row in grads.iterrows():
            top = max(i for i, b in enumerate(BINS) if row[b] > 0)
            low = THRESHOLDS[top - 2] if BINS[top] not in ("zero", "below") else 0
            assert low <= np.float32(row.weight_grad_abs_max) < THRESHOLDS[top - 1], row.layer


def test_histograms_leave_the_config_hash(tmp_path: Path):
    """record.histograms adds a file, it changes no number: a run's identity is the same."""
    assert _config(tmp_path, "he_normal", True).content_hash() == \
        _config(tmp_path, "he_normal", False).content_hash()


@pytest.mark.mnist
@pytest.mark.slow
def test_report_draws_histograms_and_grad_flow_bars(runs: Path, tmp_path: Path):
    """`winit report --grad-flow-step 12` draws the histograms of each configuration and the
    bars at step 10 (the last recorded before 12)."""
    out = tmp_path / "report"
    result = CliRunner().invoke(app, ["report", str(runs), "--out", str(out),
                                      "--grad-flow-step", "12", "--quiet"])
    assert result.exit_code == 0, result.output
    plots = sorted(p.name for p in (out / "plots").glob("*.png"))
    assert sum(p.startswith("histograms_") for p in plots) == 2
    assert sum(p.startswith("grad_flow_bars_") for p in plots) == 1
    text = (out / "report.md").read_text()
    assert "![mean and max |dL/dW| per layer](plots/grad_flow_bars_" in text
    assert text.count("![weight and gradient histograms: ") == 2


@pytest.mark.mnist
def test_grad_flow_bars_are_layers_csv_values(runs: Path):
    """The bars' heights: mean |dL/dW| (front) and max |dL/dW| (behind) per layer at the
    recorded step at or before the one asked for; one panel per configuration."""
    layers = {s: pd.read_csv(_run_dir(runs, s) / "layers.csv") for s in ("he_normal", "normal")}
    assert recorded_step(layers["normal"], 12) == 10
    assert recorded_step(layers["normal"], 0) == 0
    fig = grad_flow_bars([Bars(s, "C0", f) for s, f in layers.items()], 12, "test")
    for ax, (scheme, frame) in zip(fig.axes, layers.items(), strict=False):
        rows = frame[frame.step == 10].sort_values("layer")
        heights = [p.get_height() for p in ax.patches]
        depth = len(rows)
        assert heights[:depth] == pytest.approx(rows.weight_grad_abs_max.tolist(), rel=1e-12)
        assert heights[depth:2 * depth] == pytest.approx(rows.weight_grad_abs_mean.tolist(),
                                                         rel=1e-12)
        assert ax.get_title().endswith("(step 10)"), scheme


def test_grad_flow_layer_numbers_never_collide():
    """A 30-layer net's bars: the layer numbers under each panel do not overlap (they did, all
    30 of them, on the README's relu30 figure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    depth = 30
    frame = pd.DataFrame({"step": 0, "layer": np.arange(1, depth + 1),
                          "weight_grad_abs_mean": np.geomspace(1e-7, 1e-3, depth),
                          "weight_grad_abs_max": np.geomspace(1e-5, 1e-1, depth)})
    fig = grad_flow_bars([Bars("a", "C0", frame), Bars("b", "C1", frame)], 0, "test")
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in fig.axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert len(boxes) >= 3
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:], strict=False)), labels


def test_a_run_with_no_finite_gradient_keeps_its_layers_in_place():
    """A CLI run whose every dL/dz is missing at init (mean1_normal, deep enough, overflows)
    once had all its layers taken for norm layers (placed at 0.5, 1.5, ...): the report's
    gradient-flow figure then indexed an empty frame and the report crashed. Only a watched
    model's rows (with module names) can hold norm layers, and only beside layers that have a
    gradient."""
    import numpy as np
    import pandas as pd

    from winit_cli.views.plots import with_positions

    cli = pd.DataFrame({"step": 0, "layer": [1, 2, 3], "act_grad_norm": np.nan})
    assert list(with_positions(cli).position) == [1.0, 2.0, 3.0]
    watched = cli.assign(name=["fc1", "bn1", "fc2"])
    assert list(with_positions(watched).position) == [1.0, 2.0, 3.0]
    watched.loc[[0, 2], "act_grad_norm"] = 1.0  # bn1 has no dL/dz: drawn between the two
    assert list(with_positions(watched).position) == [1.0, 1.5, 2.0]
