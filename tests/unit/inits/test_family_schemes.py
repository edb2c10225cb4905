"""Init schemes on every kind (Fixup, SkipInit, ReZero, init.zero_last, and the plain schemes on
a residual MLP), and the one-line errors for combinations that cannot work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from winit_cli.config import load_config, validate
from winit_cli.errors import ConfigError
from winit_cli.inits import SCHEMES, initialize
from winit_cli.models import build_model

DEPTH, WIDTH = 10, 32  # resmlp: 4 blocks of 2 Linear layers


def filled(scheme: str, params=None, seed: int = 3, zero_last: bool = False, **model):
    config = validate({"model": {"kind": "resmlp", "depth": DEPTH, "width": WIDTH, **model},
                       "init": {"scheme": scheme, "params": params or {},
                                "zero_last": zero_last}})
    net = build_model(config.model, 20, 4, members=2)
    for k in range(2):
        initialize(net, k, scheme, config.init.params, torch.Generator().manual_seed(seed + k),
                   zero_last=zero_last)
    return net


def he_draws(shapes, seed: int) -> list[torch.Tensor]:
    """What he_normal draws for these [out, in] shapes from one generator, in order (ReLU)."""
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.init.kaiming_normal_(torch.empty(s), nonlinearity="relu", generator=g)
            for s in shapes]


@pytest.mark.parametrize("zero_output", [False, True])
def test_fixup_scales_branch_layers_and_zeroes_the_last(zero_output):
    """Every layer is He's draw times its Fixup factor: input 1, branch_inner B^(-1/2) (m = 2),
    branch_out 0, output 1 (0 with zero_output); biases 0."""
    net = filled("fixup", {"zero_output": zero_output}, learnable_scale=True)
    views = net.linears()
    factor = {"input": 1.0, "branch_inner": 4 ** -0.5, "branch_out": 0.0,
              "output": 0.0 if zero_output else 1.0}
    for k in range(2):
        draws = he_draws([tuple(v.weight.shape[1:]) for v in views], 3 + k)
        for v, draw in zip(views, draws, strict=True):
            torch.testing.assert_close(v.weight[k], draw * factor[v.role])
            assert not v.bias[k].any()
    assert (net.branch_scales() == 1).all()  # the paper's multiplier, at 1


def test_fixup_with_one_layer_branches_only_zeroes_them():
    net = filled("fixup", depth=6, branch_layers=1)
    views = net.linears()
    draws = he_draws([tuple(v.weight.shape[1:]) for v in views], 3)
    for v, draw in zip(views, draws, strict=True):
        expected = draw * 0 if v.role == "branch_out" else draw
        torch.testing.assert_close(v.weight[0], expected)


@pytest.mark.parametrize(("scheme", "params", "alpha"), [
    ("skipinit", {}, 0.0), ("skipinit", {"alpha": 0.1}, 0.1), ("rezero", {}, 0.0)])
def test_skipinit_and_rezero_set_alpha_and_draw_he(scheme, params, alpha):
    net = filled(scheme, params, learnable_scale=True, branch_scale=0.7)
    assert torch.equal(net.branch_scales().detach(), torch.full((2, 4), alpha))
    views = net.linears()
    draws = he_draws([tuple(v.weight.shape[1:]) for v in views], 3)
    for v, draw in zip(views, draws, strict=True):
        torch.testing.assert_close(v.weight[0], draw)


def test_plain_schemes_fill_a_residual_mlp_as_a_plain_one():
    """The same seed gives a resmlp every Linear layer an MLP of the same depth and width gets:
    schemes fill linears() in order, input projection and output layer included. zero_last
    zeroes the branches' last layers and nothing else; norms start at gamma 1, beta 0."""
    for scheme in ("xavier_uniform", "orthogonal", "torch_default"):
        res = filled(scheme, norm="layer")
        plain = build_model(validate({"model": {"depth": DEPTH, "width": WIDTH}}).model, 20, 4, 2)
        for k in range(2):
            initialize(plain, k, scheme, {}, torch.Generator().manual_seed(3 + k))
        for a, b in zip(res.linears(), plain.linears(), strict=True):
            assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
        for norm in res.norms():
            assert (norm.weight == 1).all() and (norm.bias == 0).all()
    zeroed, drawn = filled("xavier_uniform", zero_last=True), filled("xavier_uniform")
    for a, b in zip(zeroed.linears(), drawn.linears(), strict=True):
        assert torch.equal(a.weight, b.weight * (a.role != "branch_out"))


def test_residual_schemes_are_documented_with_their_papers():
    for name, paper in (("fixup", "Zhang, Dauphin & Ma 2019"), ("skipinit", "De & Smith 2020"),
                        ("rezero", "Bachlechner")):
        scheme = SCHEMES[name]
        assert paper in scheme.doc and scheme.formula and scheme.needs_branches
    assert not SCHEMES["he_normal"].needs_branches


@pytest.mark.parametrize(("overrides", "message"), [
    (["init.scheme=fixup"], "init.scheme: fixup is defined on residual branches and model.kind "
                            "mlp has none; use model.kind: resmlp"),
    (["init.zero_last=true"], "init.zero_last: model.kind mlp has no residual branches"),
    (["model.branch_scale=0.5"], "model.branch_scale: 0.5 applies to residual branches, and "
                                 "model.kind mlp has none"),
    (["model.kind=resmlp", "init.scheme=skipinit"],
     "model.learnable_scale: skipinit starts every branch multiplier alpha at 0"),
    (["model.kind=resmlp", "model.learnable_scale=true", "init.scheme=rezero",
      "init.zero_last=true"], "init: alpha = 0 and a zero last branch layer give each other "
                              "zero gradients (rezero with zero_last)"),
    (["model.kind=resmlp", "model.depth=7"], "model.depth: 7 does not fit a residual MLP with "
                                             "branch_layers 2"),
    (["model.kind=resmlp", "model.widths=[8,8,8,16,8]", "model.depth=6"],
     "model.widths: a residual MLP adds every block's output to one stream"),
    (["model.norm=batch", "train.batch_size=1"], "model.norm: batch needs train.batch_size >= 2"),
    (["model.dropout=1.0"], "model.dropout: Input should be less than 1"),
    (["model.norm=group"], "model.norm: 'group' is not one of"),
    (["model.kind=resmlp", "init.scheme=fixup", "init.params.zero_output=3"],
     "init.params.zero_output: expected true or false"),
])
def test_bad_combinations_fail_in_one_line_at_validation(overrides, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert "\n" not in str(e.value)
    # Blamed on the --set that set the key, or on the defaults (config._blame), then the message.
    where, _, rest = str(e.value).partition(": ")
    assert where in {"<defaults>", *(f"--set {o}" for o in overrides)}, str(e.value)
    assert rest.startswith(message), str(e.value)


def test_configs_without_the_new_keys_keep_their_hashes():
    """The hash (run directory names, sweep resume) of a config that leaves the new keys at
    their defaults is what it was before they existed (values computed on main before)."""
    assert load_config(None).content_hash().startswith("be0b5fb071495c50")
    tanh = validate({"model": {"depth": 30, "width": 512, "activation": "tanh"},
                     "init": {"scheme": "normal", "params": {"std": 0.05}}})
    assert tanh.content_hash().startswith("a831b72903b756bf")
    assert validate({"model": {"norm": "layer"}}).content_hash() != load_config(None) \
        .content_hash()


def test_repo_family_sweeps_validate():
    sweeps = Path(__file__).resolve().parents[3] / "configs" / "sweeps"
    from winit_cli.sweeps.spec import load_spec

    for name in ("bn_depth50.yaml", "resmlp100.yaml", "norm_rescue.yaml"):
        members = load_spec(sweeps / name).members()
        assert len(members) > 1 and math.isfinite(len(members))


@pytest.mark.parametrize(("model", "reason"), [
    ({}, None),
    ({"norm": "batch"}, "normalization or dropout layers"),
    ({"norm": "layer"}, "normalization or dropout layers"),
    ({"dropout": 0.2}, "normalization or dropout layers"),
    ({"kind": "resmlp"}, "model kind 'resmlp'"),
])
def test_jacobian_spectrum_only_for_plain_chains(model, reason):
    """record.jacobian takes the spectrum of a chain of W and phi' only: a norm, dropout or a
    residual stream would make it the spectrum of some other network, so those runs say why
    they have none instead of recording a wrong one."""
    from winit_cli.training.spectrum import spectrum_reason

    config = validate({"model": {"depth": 6, "width": 16, **model}})
    got = spectrum_reason(build_model(config.model, 20, 4), config.model.kind)
    assert got == reason if reason is None else got.startswith(reason)


def test_zero_last_zeroes_the_last_branch_layers_bias_too():
    """zero_last multiplies each block's last branch layer by 0: its drawn bias (0.1 here) as
    well as its weights; the input projection and the output layer keep theirs."""
    from winit_cli.config import ModelConfig

    model = build_model(ModelConfig(kind="resmlp", depth=4, width=8, branch_layers=1), 10, 3, 1)
    with torch.no_grad():
        initialize(model, 0, "normal", {"std": 0.1, "bias_value": 0.1},
                   torch.Generator().manual_seed(0), zero_last=True)
    for layer in model.linears():
        zeroed = layer.role == "branch_out"
        assert (layer.weight.detach() == 0).all().item() is zeroed, layer.role
        expected = torch.full_like(layer.bias.detach(), 0.0 if zeroed else 0.1)
        assert torch.equal(layer.bias.detach(), expected), layer.role
