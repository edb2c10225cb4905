"""Probe columns of every model family against plain autograd on a twin of each member
(tests/families_reference.py): the Linear layers' columns (dL/dz at every Linear output, for
every kind), the norm layers' columns and the residual stream's, every one from its definition
in probes.py and family_probes.py, after one SGD step for the update ratios."""

from __future__ import annotations

import math

import pytest
import torch
from families_reference import Twin, batch, make

from winit_cli.measure import quantities
from winit_cli.measure.family_probes import NORM_COLUMNS, RESIDUAL_COLUMNS
from winit_cli.measure.probes import Probe
from winit_cli.models import Trace

LR = 0.1
FAMILIES = [
    {"kind": "mlp", "depth": 4, "norm": "batch"},
    {"kind": "mlp", "depth": 4, "norm": "layer", "activation": "tanh"},
    {"kind": "mlp", "depth": 4, "dropout": 0.3},
    {"kind": "resmlp", "depth": 6},
    {"kind": "resmlp", "depth": 5, "branch_layers": 1, "activation": "tanh", "norm": "layer"},
    {"kind": "resmlp", "depth": 6, "norm": "batch", "dropout": 0.2, "learnable_scale": True},
    {"kind": "resmlp", "depth": 6, "learnable_scale": True, "init": {"scheme": "skipinit"}},
]


def _norm(t) -> float:
    return math.nan if t is None else t.detach().double().norm().item()


def _mean_std(t) -> tuple[float, float]:
    x = t.detach().double().flatten()
    return x.mean().item(), x.std().item()


def expected_rows(model, k: int, x, y) -> list[dict[str, float]]:
    """Every column of every row for member k, from the twin and torch.autograd."""
    twin = Twin(model, k, seed=k)
    logits, out = twin.forward(x[k])
    params = twin.parameters()
    tensors = out["z"] + out["y"] + out["stream"]
    grads = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y[k]),
                                params + tensors, allow_unused=True)
    grad = dict(zip(map(id, params + tensors), grads, strict=True))
    views = model.linears()
    rows = []
    for l, (lin, view) in enumerate(zip(twin.linears, views, strict=True)):
        post = out["post"][l]
        mean, std = _mean_std(post)
        gw = grad[id(lin.weight)]
        row = {"weight_grad_norm": _norm(gw), "bias_grad_norm": _norm(grad[id(lin.bias)]),
               "act_grad_norm": _norm(grad[id(out["z"][l])]), "weight_norm": _norm(lin.weight),
               "act_mean": mean, "act_std": std, "dead_fraction": math.nan,
               "saturated_fraction": math.nan,
               "weight_grad_abs_mean": gw.double().abs().mean().item(),
               "weight_grad_abs_max": gw.double().abs().max().item(),
               "update_ratio": LR * _norm(gw) / _norm(lin.weight)}
        if view.activation == "relu":
            row["dead_fraction"] = (post <= 0).all(dim=0).double().mean().item()
        if view.activation == "tanh":
            row["saturated_fraction"] = (post.abs() > 0.99).double().mean().item()
        rows.append(row | {c: math.nan for c in NORM_COLUMNS + RESIDUAL_COLUMNS})
    for i, norm in enumerate(twin.norms):
        ymean, ystd = _mean_std(out["y"][i])
        gg = grad[id(norm.weight)]
        rows[i].update(norm_weight_grad_norm=_norm(gg), norm_bias_grad_norm=_norm(
            grad[id(norm.bias)]), norm_act_grad_norm=_norm(grad[id(out["y"][i])]),
            norm_weight_norm=_norm(norm.weight), norm_act_mean=ymean, norm_act_std=ystd,
            norm_update_ratio=LR * _norm(gg) / _norm(norm.weight))
    stream_rows = [l for l, v in enumerate(views) if v.role in ("input", "branch_out")] \
        if out["stream"] else []
    for b, l in enumerate(stream_rows):
        rows[l]["stream_grad_norm"] = _norm(grad[id(out["stream"][b])])
        if b:
            rows[l]["branch_scale"] = twin.alpha[b - 1].item()
            g = grad.get(id(twin.alpha)) if twin.alpha.requires_grad else None
            rows[l]["branch_scale_grad"] = math.nan if g is None else g[b - 1].item()
    return rows


def measure(model, x, y) -> tuple[torch.Tensor, tuple[str, ...]]:
    """What training does at a recorded step: forward with a Trace, backward, probe, SGD."""
    probe = Probe(model)
    trace = Trace()
    logits = model(x, trace)
    k, b, c = logits.shape
    torch.nn.functional.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b),
                                      reduction="none").view(k, b).mean(1).sum().backward()
    values = probe.before_step(trace, will_update=True)
    with torch.no_grad():
        for p in model.parameters():
            p -= LR * p.grad
    probe.after_step(values)
    return values, probe.columns


@pytest.mark.parametrize("options", FAMILIES, ids=lambda o: "-".join(
    str(v) for v in o.values() if not isinstance(v, dict)))
@pytest.mark.parametrize("members", [1, 2])
def test_family_probe_matches_autograd(options, members):
    model = make(members, **dict(options, init=dict(options.get("init", {}))))
    x, y = batch(members)
    refs = [expected_rows(model, k, x, y) for k in range(members)]  # before the update
    values, columns = measure(model, x, y)
    family = (NORM_COLUMNS if "norm" in options else ()) + (
        RESIDUAL_COLUMNS if options["kind"] == "resmlp" else ())
    assert columns == quantities.columns() + family
    assert values.shape == (members, model.depth, len(columns))
    for k, rows in enumerate(refs):
        for l, row in enumerate(rows):
            for j, name in enumerate(columns):
                actual, expected = values[k, l, j].item(), row[name]
                what = f"member {k} layer {l + 1} {name}"
                if math.isnan(expected):
                    assert math.isnan(actual), f"{what}: expected NaN, got {actual}"
                else:
                    assert actual == pytest.approx(expected, rel=2e-5, abs=1e-7), what


def test_skipinit_branches_are_silent_and_the_stream_carries_the_gradient():
    """alpha = 0: no gradient reaches a branch layer at step 0, while the stream's gradient is
    the same at every block (the blocks are identities) and alpha's own gradient is not 0."""
    model = make(1, perturb=False, kind="resmlp", depth=8, learnable_scale=True,
                 init={"scheme": "skipinit"})
    x, y = batch(1)
    values, columns = measure(model, x, y)
    by = {c: values[0, :, j] for j, c in enumerate(columns)}
    roles = [v.role for v in model.linears()]
    branch = [l for l, r in enumerate(roles) if r.startswith("branch")]
    assert (by["act_grad_norm"][branch] == 0).all()
    stream = by["stream_grad_norm"][~torch.isnan(by["stream_grad_norm"])]
    assert len(stream) == 4 and torch.allclose(stream, stream[0].expand(4), rtol=1e-6)
    scale_grads = by["branch_scale_grad"][~torch.isnan(by["branch_scale_grad"])]
    assert len(scale_grads) == 3 and (scale_grads != 0).all()
