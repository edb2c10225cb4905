"""histograms.csv's counts (measure/histograms.py) for a stacked model, against numpy.histogram
on each member's weights and gradients with the documented edges (10^e for e = -24, -23.5, ...,
4, as float32), exact zeros, values below 1e-24, above 1e4 and NaN counted apart by hand."""

from __future__ import annotations

import numpy as np
import torch

from winit_cli.config import ModelConfig
from winit_cli.measure.histograms import BINS, histogram_frame, layer_histograms
from winit_cli.models import build_model

EDGES = (10.0 ** np.arange(-24.0, 4.25, 0.5)).astype(np.float32)


def expected_counts(values: np.ndarray) -> list[int]:
    """zero, below, the 56 half-decade bins, above, nan: from the module's documented table."""
    a = np.abs(values.astype(np.float32).ravel())
    finite = a[~np.isnan(a)]
    inside = finite[(finite >= EDGES[0]) & (finite < EDGES[-1])]
    return [int((finite == 0).sum()), int(((finite > 0) & (finite < EDGES[0])).sum()),
            *np.histogram(inside, bins=EDGES)[0].tolist(), int((finite >= EDGES[-1]).sum()),
            int(np.isnan(a).sum())]


def test_counts_per_member_layer_and_tensor_match_numpy():
    """Two members, three layers; the weights hold every special value (0, 1e-30, 1e5, inf, NaN)
    in member 1 only, and the last layer has no gradient (it counts nothing)."""
    spec = ModelConfig(depth=3, widths=[7, 5], activation="tanh")
    model = build_model(spec, input_size=6, classes=4, members=2)
    generator = torch.Generator().manual_seed(0)
    layers = model.linears()
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator)
                               * 10.0 ** torch.randint(-30, 6, layer.weight.shape,
                                                       generator=generator))
        layers[1].weight[1, 0, :5] = torch.tensor([0.0, 1e-30, 1e5, float("inf"), float("nan")])
    for layer in layers[:2]:
        layer.weight.grad = torch.randn(layer.weight.shape, generator=generator) * 1e-3
    counts = layer_histograms(model)
    assert counts.shape == (2, 3, 2, len(BINS))
    for k in range(2):
        for l, layer in enumerate(layers):
            grad = layer.weight.grad
            assert counts[k, l, 0].tolist() == expected_counts(layer.weight[k].detach().numpy())
            assert counts[k, l, 1].tolist() == (
                expected_counts(grad[k].numpy()) if grad is not None else [0] * len(BINS))

    frame = histogram_frame([(0, 0), (10, 2)], [counts[1], counts[1]])
    assert frame[["step", "epoch", "layer", "tensor"]].values.tolist() == [
        [step, epoch, layer, tensor] for step, epoch in [(0, 0), (10, 2)]
        for layer in (1, 2, 3) for tensor in ("weight", "grad")]
    np.testing.assert_array_equal(frame[list(BINS)].to_numpy(),
                                  np.concatenate([counts[1].reshape(-1, len(BINS))] * 2))
