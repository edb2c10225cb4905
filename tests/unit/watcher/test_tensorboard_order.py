"""TensorBoard tags of a `winit.watch` run name each value's own layer, for a model whose layers
are registered in another order than they run (the output layer defined first, as many models
do): the value under `<quantity>/<module name>` must be that module's, computed here with plain
torch, and layers are numbered in the order they run."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

import winit_cli as winit


class HeadFirst(nn.Module):
    """Registered head, then body; run body, then head."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(32, 5)
        self.body = nn.Linear(20, 32)

    def forward(self, x):
        return self.head(torch.relu(self.body(x)))


def test_tags_pair_each_value_with_its_module_in_forward_order(tmp_path):
    torch.manual_seed(0)
    model = HeadFirst()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 20), torch.randint(0, 5, (64,))
    # plain torch, on the same weights and batch as the watched step 0
    loss = F.cross_entropy(model(x), y)
    grads = dict(zip(["head", "body"], torch.autograd.grad(
        loss, [model.head.weight, model.body.weight]), strict=True))
    want = {f"weight_norm/{name}": float(getattr(model, name).weight.detach().norm())
            for name in ("head", "body")}
    want |= {f"weight_grad_norm/{name}": float(g.norm()) for name, g in grads.items()}

    probe = winit.watch(model, optimizer, every=1, out=tmp_path, tensorboard=True)
    for _ in range(2):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        probe.step(loss)
        optimizer.step()
        optimizer.zero_grad()
    run = probe.close()

    events = EventAccumulator(str(run.dir), size_guidance={"scalars": 0})
    events.Reload()
    got = {tag: next(e.value for e in events.Scalars(tag) if e.step == 0) for tag in want}
    assert got == pytest.approx(want, rel=1e-6)  # an event holds a float32
    step0 = run.layers[run.layers.step == 0].set_index("name")
    assert step0.layer.to_dict() == {"body": 1, "head": 2}
