"""An independent plain-PyTorch twin of one member of a stacked model, for the model-family
tests: torch.nn.Linear, nn.BatchNorm1d, nn.LayerNorm and hand-drawn dropout masks, wired as
the docstrings of models/mlp.py and models/resmlp.py say, with every intermediate kept so that
autograd gives dL/dz, dL/dy and dL/dh directly. Nothing here calls winit's forward pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from winit_cli.config import validate
from winit_cli.inits import initialize
from winit_cli.models import build_model
from winit_cli.models.stacked import noise_seed

IN, WIDTH, CLASSES, BATCH = 12, 16, 5, 8


def make(members: int, seeds=None, perturb: bool = True, **model):
    """A stacked model of `model` options (init: he_normal unless model["init"] says), member k
    filled from seeds[k]; with `perturb`, norm parameters and biases moved off their init."""
    init = {"scheme": "he_normal"} | model.pop("init", {})
    config = validate({"model": {"width": WIDTH, **model}, "init": init})
    net = build_model(config.model, IN, CLASSES, members)
    seeds = seeds or list(range(members))
    for k, seed in enumerate(seeds):
        initialize(net, k, config.init.scheme, config.init.params,
                   torch.Generator().manual_seed(seed), zero_last=config.init.zero_last)
    net.seed_members(seeds)
    if not perturb:
        return net
    g = torch.Generator().manual_seed(50)
    with torch.no_grad():  # non-trivial norm parameters and biases, so that each one matters
        for norm in net.norms():
            norm.weight.add_(0.3 * torch.randn(norm.weight.shape, generator=g))
            norm.bias.add_(0.3 * torch.randn(norm.bias.shape, generator=g))
        for layer in net.linears():
            layer.bias.add_(0.1 * torch.randn(layer.bias.shape, generator=g))
    return net


def batch(members: int):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(members, BATCH, IN, generator=g)
    return x, torch.randint(0, CLASSES, (members, BATCH), generator=g)


PHI = {"relu": torch.relu, "tanh": torch.tanh, "linear": lambda v: v}


class Twin:
    """Member `k` of `model` as ordinary modules; `forward` records what the probes read."""

    def __init__(self, model, k: int, seed: int = 0, step: int = 0, training: bool = True):
        views = model.linears()
        self.roles = [v.role for v in views]
        self.linears = []
        for v in views:
            lin = nn.Linear(v.fan_in, v.fan_out, bias=v.bias is not None)
            with torch.no_grad():
                lin.weight.copy_(v.weight[k])
                if v.bias is not None:
                    lin.bias.copy_(v.bias[k])
            self.linears.append(lin)
        self.norms = [self._norm(n, model.norm_layers[i], k, training)
                      for i, n in enumerate(model.norms())]
        alpha = model.branch_scales()
        self.alpha = None if alpha is None else alpha[k].detach().clone().requires_grad_(
            isinstance(alpha, nn.Parameter))
        self.phi = PHI[model.activation]
        self.rate = 0.0 if model.noise is None else model.noise.rate
        self.training = training
        self.generator = torch.Generator().manual_seed(noise_seed(seed, step))
        self.kind = "resmlp" if "branch_out" in self.roles else "mlp"

    @staticmethod
    def _norm(view, module, k, training):
        n = view.weight.shape[1]
        norm = nn.BatchNorm1d(n) if view.kind == "batch" else nn.LayerNorm(n)
        with torch.no_grad():
            norm.weight.copy_(view.weight[k])
            norm.bias.copy_(view.bias[k])
            if view.kind == "batch":
                norm.running_mean.copy_(module.running_mean[k])
                norm.running_var.copy_(module.running_var[k])
        return norm.train(training)

    def act(self, v: torch.Tensor, i: int | None, out: dict) -> torch.Tensor:
        """dropout(phi(norm_i(v))), keeping the norm's output and phi's."""
        if i is not None and self.norms:
            v = self.norms[i](v)
            out["y"].append(v)
        h = self.phi(v)
        out["h"].append(h)
        if self.rate and self.training:
            mask = torch.rand(h.shape, generator=self.generator) >= self.rate
            h = h * mask / (1 - self.rate)
        return h

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        out = {"z": [], "y": [], "h": [], "post": [], "stream": []}
        if self.kind == "mlp":
            h = x
            for l, lin in enumerate(self.linears):
                z = lin(h)
                out["z"].append(z)
                if l < len(self.linears) - 1:
                    h = self.act(z, l, out)
                    out["post"].append(out["h"][-1])
            out["post"].append(z)
            return z, out
        return self._residual(x, out), out

    def _residual(self, x, out):
        def lin(l, a):
            z = self.linears[l](a)
            out["z"].append(z)
            return z

        h = lin(0, x)
        out["post"].append(h)
        out["stream"].append(h)
        l, block = 1, 0
        while self.roles[l] != "output":
            a = self.act(h, l - 1, out)
            if self.roles[l] == "branch_inner":
                u = lin(l, a)
                a = self.act(u, l, out)
                out["post"].append(out["h"][-1])
                l += 1
            f = lin(l, a)
            out["post"].append(f)
            h = h + self.alpha[block] * f
            out["stream"].append(h)
            l, block = l + 1, block + 1
        logits = lin(l, self.act(h, l - 1, out))
        out["post"].append(logits)
        return logits

    def parameters(self) -> list[torch.Tensor]:
        params = [p for lin in self.linears for p in lin.parameters()]
        params += [p for n in self.norms for p in n.parameters()]
        return params + ([self.alpha] if self.alpha is not None and self.alpha.requires_grad
                         else [])


def loss_of(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)
