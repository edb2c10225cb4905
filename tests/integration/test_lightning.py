"""`winit_cli.lightning.WinitCallback` on a real `Trainer.fit`: the run folder it leaves is a
watched run's, read back from its files and checked against an independent computation: a
plain-torch replay of the same seeded training whose step-0 gradients (before any update) are
taken with torch.autograd, and the losses Lightning itself logged."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pytestmark = pytest.mark.integration


def _lightning():
    """lightning.pytorch: `scripts/setup.sh --tests` installs it (the `lightning` extra), so a
    missing or broken one fails here rather than skipping a test CI must run. (A PyPI
    torchvision beside the CPU torch breaks its import: setup.sh installs none.)"""
    import lightning.pytorch as pl
    return pl


def _data(n: int = 256):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 20, generator=generator)
    y = (x[:, :5].sum(1) > 0).long()
    return x, y


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(20, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(),
                         nn.Linear(32, 2))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    pl = _lightning()
    from winit_cli.lightning import WinitCallback

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()
            self.losses: list[float] = []

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.losses.append(float(loss.detach()))
            self.log("train_loss_logged", loss, on_step=True, on_epoch=False)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_acc", (self(x).argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    out = tmp_path_factory.mktemp("results")
    x, y = _data()
    train = DataLoader(TensorDataset(x, y), batch_size=32, shuffle=False)
    val = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=64)
    model = Classifier()
    callback = WinitCallback(every=2, out=out, name="lightning_mlp", scheme="xavier_normal",
                             dataset="synthetic", final={"val_accuracy": "val_acc"})
    trainer = pl.Trainer(max_epochs=2, callbacks=[callback], accelerator="cpu", devices=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(model, train, val)
    return callback, model, trainer


def test_the_fit_leaves_a_watched_run(fitted):
    callback, model, trainer = fitted
    run_dir = callback.run.dir
    record = json.loads((run_dir / "summary.json").read_text())
    layers = pd.read_csv(run_dir / "layers.csv")
    metrics = pd.read_csv(run_dir / "metrics.csv")
    steps = trainer.global_step
    assert steps == 16 and record["final"]["steps"] == steps  # 8 batches x 2 epochs
    assert record["status"] == "complete" and record["scheme"] == "xavier_normal"
    assert record["verdict"]["verdict"] in ("healthy", "vanishing", "exploding")
    assert record["final"]["val_accuracy"] == pytest.approx(
        float(trainer.callback_metrics["val_acc"]))
    assert sorted(layers.step.unique()) == list(range(0, steps, 2))
    assert list(layers.drop_duplicates("layer").name) == ["net.0", "net.2", "net.4"]
    # each row's loss: the mean of the losses the module computed since the previous row
    bounds = [-1, *metrics.step]
    want = [np.mean(model.losses[a + 1:b + 1]) for a, b in zip(bounds[:-1], bounds[1:],
                                                                strict=True)]
    np.testing.assert_allclose(metrics.train_loss.to_numpy(), want, rtol=1e-6)


def test_step_zero_gradients_match_plain_autograd(fitted):
    """Step 0's ||dL/dW|| and ||dL/dz|| per Linear, from a plain torch forward and backward
    on the first batch with the same seeded weights."""
    callback, _, _ = fitted
    layers = pd.read_csv(callback.run.dir / "layers.csv")
    net = _net()
    x, y = _data()
    outputs = []

    def keep(module, inputs, output) -> None:
        output.retain_grad()
        outputs.append(output)

    for module in net:
        if isinstance(module, nn.Linear):
            module.register_forward_hook(keep)
    F.cross_entropy(net(x[:32]), y[:32]).backward()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    step0 = layers[layers.step == 0].sort_values("layer")
    np.testing.assert_allclose(step0.weight_grad_norm,
                               [float(m.weight.grad.norm()) for m in linears], rtol=1e-5)
    np.testing.assert_allclose(step0.act_grad_norm,
                               [float(o.grad.norm()) for o in outputs], rtol=1e-5)


def test_an_exception_closes_the_run_as_failed(tmp_path):
    pl = _lightning()
    from winit_cli.lightning import WinitCallback

    class Broken(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def training_step(self, batch, index):
            if index == 3:
                raise ValueError("bad batch")
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    callback = WinitCallback(every=1, out=tmp_path)
    trainer = pl.Trainer(max_epochs=1, callbacks=[callback], accelerator="cpu", devices=1,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    with pytest.raises(ValueError, match="bad batch"):
        trainer.fit(Broken(), DataLoader(TensorDataset(*_data()), batch_size=32))
    record = json.loads((callback.run.dir / "summary.json").read_text())
    assert record["status"] == "failed" and "bad batch" in record["error"]
    assert sorted(pd.read_csv(callback.run.dir / "layers.csv").step.unique()) == [0, 1, 2]
