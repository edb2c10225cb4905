"""Init schemes: empirical moments against each scheme's `variance` and the textbook formulas."""

from __future__ import annotations

import math

import pytest
import torch

from winit_cli.config import load_config
from winit_cli.errors import ConfigError
from winit_cli.inits import (
    SCHEMES,
    activation_gain,
    check_scheme,
    get_scheme,
    initialize,
    weight_decay,
)
from winit_cli.inits.aliases import ALIASES
from winit_cli.models.mlp import StackedMLP

FAN_IN, FAN_OUT = 512, 1024  # weight [fan_out, fan_in]: 524,288 draws
ACTIVATIONS = ("relu", "tanh", "leaky_relu", "selu", "gelu")

# torch.nn.init.calculate_gain's values, written out (ELU/GELU get ReLU's, as documented).
GAIN = {
    "relu": math.sqrt(2.0),
    "tanh": 5.0 / 3.0,
    "leaky_relu": math.sqrt(2.0 / (1 + 0.01**2)),
    "selu": 3.0 / 4.0,
    "gelu": math.sqrt(2.0),
    "elu": math.sqrt(2.0),
    "sigmoid": 1.0,
    "linear": 1.0,
}


def textbook(name: str, activation: str, mode: str = "fan_in", **p) -> tuple[float, float]:
    """(weight variance, bias variance) from the papers' formulas, independent of the package."""
    fan = FAN_IN if mode == "fan_in" else FAN_OUT
    if name in ("normal", "normal_l2"):
        return p.get("std", 0.01) ** 2, 0.0
    if name == "mean1_normal":
        return p.get("std", 1.0) ** 2, 0.0
    if name in ("xavier_uniform", "xavier_normal"):
        return p.get("gain", 1.0) ** 2 * 2.0 / (FAN_IN + FAN_OUT), 0.0
    if name in ("he_normal", "he_uniform"):
        gain = p.get("gain") or GAIN[activation]
        return gain**2 / fan, 0.0
    if name in ("fixup", "skipinit", "rezero"):  # each Linear drawn He normal; the per-role
        return GAIN[activation] ** 2 / FAN_IN, 0.0  # scaling and alpha: test_family_schemes.py
    if name == "torch_default":
        bound = 1.0 / math.sqrt(FAN_IN)  # U(-b, b) for weight and bias: variance b^2 / 3
        return bound**2 / 3.0, bound**2 / 3.0
    if name in ("lecun_normal", "lecun_uniform"):
        return p.get("gain", 1.0) ** 2 / fan, 0.0
    if name == "truncated_normal":  # Keras VarianceScaling: the target variance, after truncation
        return (p.get("gain") or GAIN[activation]) ** 2 / fan, 0.0
    if name == "orthogonal":  # ||W||_F^2 = gain^2 min(out, in) spread over out * in entries
        return (p.get("gain") or GAIN[activation]) ** 2 / max(FAN_IN, FAN_OUT), 0.0
    if name == "lsuv":  # before calibration: the orthonormal start, gain 1
        return 1.0 / max(FAN_IN, FAN_OUT), 0.0
    if name in ("zeros", "constant"):
        return 0.0, 0.0
    if name == "critical":  # chi = 1: He for the ReLU family, 1 for tanh with zero bias
        sigma_w2 = {"relu": 2.0, "tanh": 1.0, "leaky_relu": 2.0 / (1 + 0.01**2)}.get(activation)
        return (None if sigma_w2 is None else sigma_w2 / FAN_IN), p.get("sigma_b2", 0.0)
    if name == "mean_field":  # Poole et al. 2016's parametrisation, set directly
        return p.get("sigma_w2", 1.0) / FAN_IN, p.get("sigma_b2", 0.0)
    raise AssertionError(f"no textbook formula for {name}: add one to this test")


def expected_mean(name: str, **p) -> float:
    if name == "constant":
        return p.get("value", 0.01)
    return p.get("mean", 1.0) if name == "mean1_normal" else p.get("mean", 0.0)


def cases():
    for name, scheme in SCHEMES.items():
        for activation in ACTIVATIONS:
            modes = ("fan_in", "fan_out") if "mode" in scheme.defaults else (None,)
            for mode in modes:
                if name == "critical" and activation == "gelu":
                    continue  # GELU has no edge of chaos: rejected at validation (test below)
                yield pytest.param(name, activation, mode, id=f"{name}-{activation}-{mode}")


def fill(name: str, activation: str, seed: int = 0, rows: int = FAN_OUT, **params):
    weight, bias = torch.empty(rows, FAN_IN), torch.full((rows,), float("nan"))
    SCHEMES[name].fill(weight, bias, activation=activation,
                       generator=torch.Generator().manual_seed(seed), **params)
    return weight, bias


def test_critical_init_rejects_gelu_which_has_no_edge_of_chaos():
    with pytest.raises(ConfigError, match="critical"):
        check_scheme("critical", {}, "gelu")


def test_every_scheme_has_a_textbook_formula():
    # Guards the parametrization below: a new scheme must come with its formula here.
    for name in SCHEMES:
        textbook(name, "relu")


@pytest.mark.parametrize(("name", "activation", "mode"), list(cases()))
def test_moments_match_variance_and_textbook(name, activation, mode):
    scheme = SCHEMES[name]
    params = {} if mode is None else {"mode": mode}
    weight, bias = fill(name, activation, **params)
    w = weight.double()

    var_w, var_b = scheme.variance(FAN_IN, FAN_OUT, activation, **scheme.resolve(params))
    book_w, book_b = textbook(name, activation, mode or "fan_in")
    if book_w is not None:  # None: solved numerically (critical selu), no closed form to check
        assert var_w == pytest.approx(book_w, rel=1e-9)
    assert var_b == pytest.approx(book_b, rel=1e-9)

    n = w.numel()
    # The sample variance's relative standard error is sqrt(2/n) (normal) or less (uniform).
    assert w.var().item() == pytest.approx(var_w, rel=6 * math.sqrt(2 / n))
    mean = expected_mean(name)
    assert (mean == 0.0) == scheme.zero_mean
    assert w.mean().item() == pytest.approx(mean, abs=6 * math.sqrt(var_w / n) + 1e-7)
    if var_b == 0.0:
        assert torch.equal(bias, torch.zeros_like(bias))


@pytest.mark.parametrize("name", ["xavier_uniform", "he_uniform", "torch_default"])
def test_uniform_schemes_are_uniform_with_the_right_bound(name):
    weight, _ = fill(name, "relu")
    var_w = SCHEMES[name].variance(FAN_IN, FAN_OUT, "relu", **SCHEMES[name].resolve({}))[0]
    bound = math.sqrt(3 * var_w)  # U(-a, a) has variance a^2 / 3
    assert weight.abs().max().item() <= bound * (1 + 1e-6)
    assert weight.abs().max().item() > 0.999 * bound
    # A uniform's excess kurtosis is -1.2; a normal's is 0.
    w = weight.double().flatten()
    kurt = ((w - w.mean()) ** 4).mean() / w.var() ** 2 - 3
    assert kurt.item() == pytest.approx(-1.2, abs=0.05)


def test_torch_default_bias_variance():
    # 8192 bias entries drawn U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    _, bias = fill("torch_default", "relu", rows=8192)
    var_b = SCHEMES["torch_default"].variance(FAN_IN, 8192, "relu")[1]
    assert var_b == pytest.approx(1 / (3 * FAN_IN))
    assert bias.double().var().item() == pytest.approx(var_b, rel=0.06)
    assert bias.abs().max().item() <= 1 / math.sqrt(FAN_IN)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("normal", {"std": 0.05, "mean": 0.0, "bias_value": 0.1}),
        ("normal_l2", {"std": 0.2, "l2": 0.01}),
        ("mean1_normal", {"std": 0.5}),
        ("xavier_normal", {"gain": 2.0}),
        ("xavier_uniform", {"gain": 0.5, "bias_value": -0.2}),
        ("he_normal", {"gain": 1.0, "mode": "fan_out"}),
        ("he_uniform", {"gain": 3.0}),
    ],
)
@pytest.mark.parametrize("activation", ["tanh", "gelu"])
def test_user_params_change_the_draw(name, params, activation):
    scheme = SCHEMES[name]
    weight, bias = fill(name, activation, **params)
    var_w, _ = scheme.variance(FAN_IN, FAN_OUT, activation, **scheme.resolve(params))
    book_w, _ = textbook(name, activation, **params)
    assert var_w == pytest.approx(book_w, rel=1e-9)
    assert weight.double().var().item() == pytest.approx(var_w, rel=0.01)
    assert weight.double().mean().item() == pytest.approx(
        expected_mean(name, **params), abs=6 * math.sqrt(var_w / weight.numel()))
    assert torch.all(bias == params.get("bias_value", 0.0))


def test_fill_through_the_model_builder():
    """initialize() fills every layer with its own fans (1024x512 here)."""
    model = StackedMLP([512, 1024, 512, 256], "relu", bias=True)
    initialize(model, 0, "he_normal", {}, torch.Generator().manual_seed(3))
    for w, b in zip(model.weights, model.biases, strict=True):
        fan_in = w.shape[2]
        assert w[0].double().var().item() == pytest.approx(2.0 / fan_in, rel=0.03)
        assert torch.all(b == 0)

    model = StackedMLP([512, 1024, 10], "tanh", bias=True)
    initialize(model, 0, "xavier_uniform", {}, torch.Generator().manual_seed(3))
    assert model.weights[0][0].double().var().item() == pytest.approx(2 / (512 + 1024), rel=0.01)


def test_weight_decay_only_from_normal_l2():
    assert weight_decay("normal_l2", {}) == pytest.approx(1e-3)
    assert weight_decay("normal_l2", {"l2": 0.05}) == pytest.approx(0.05)
    for name in SCHEMES:
        if name != "normal_l2":
            assert weight_decay(name, {}) == 0.0


# --- errors -------------------------------------------------------------------------------------


def test_unknown_scheme_lists_known_names_sorted():
    with pytest.raises(ConfigError) as err:
        get_scheme("glorious")
    message = str(err.value)
    assert "'glorious'" in message
    known, aliases = message.split("known: ")[1].split(" (aliases: ")
    assert known == ", ".join(sorted(SCHEMES))
    assert aliases == ", ".join(sorted(ALIASES)) + ")"
    assert "\n" not in message


@pytest.mark.parametrize("alias, name", [
    ("kaiming_normal", "he_normal"), ("kaiming_uniform", "he_uniform"), ("he", "he_normal"),
    ("glorot_normal", "xavier_normal"), ("glorot_uniform", "xavier_uniform"),
    ("xavier", "xavier_uniform"), ("lecun", "lecun_normal"), ("default", "torch_default"),
])
def test_aliases_resolve_and_the_config_records_the_registry_name(alias, name):
    """The names people type (Keras, PyTorch, papers) are accepted, and a run's config, hash
    and records carry the registry's name, so `kaiming_normal` and `he_normal` are one run."""
    assert get_scheme(alias) is SCHEMES[name]
    config = load_config(None, [f"init.scheme={alias}"])
    assert config.init.scheme == name
    assert config.content_hash() == load_config(None, [f"init.scheme={name}"]).content_hash()


@pytest.mark.parametrize("typed, meant", [
    ("kaiming_gaussian", "he_normal"), ("xavier_gaussian", "xavier_normal"),
    ("kaiming_normal_", "he_normal"), ("nn.init.orthogonal_", "orthogonal"),
    ("Glorot-Uniform", "xavier_uniform"), ("he_init", "he_normal"),
    ("msra_uniform", "he_uniform"), ("xavier_normel", "xavier_normal"),
])
def test_suggestions_go_by_meaning_before_spelling(typed, meant):
    """An unknown name is read for what it means (kaiming = he, gaussian = normal) before it is
    matched by spelling, which once offered mean1_normal, the exploding case, for kaiming_normal."""
    with pytest.raises(ConfigError, match=f"did you mean '{meant}'"):
        get_scheme(typed)


def test_unknown_scheme_suggests_close_name():
    with pytest.raises(ConfigError, match="did you mean 'he_normal'"):
        check_scheme("he_normel", {}, "relu")


def test_unknown_param_lists_accepted_params():
    with pytest.raises(ConfigError) as err:
        check_scheme("he_normal", {"std": 0.1}, "relu")
    message = str(err.value)
    assert "init.params.std" in message
    assert "bias_value, gain, mode" in message
    with pytest.raises(ConfigError, match=r"it takes: none"):
        check_scheme("torch_default", {"gain": 1.0}, "relu")


@pytest.mark.parametrize(
    ("name", "params", "fragment"),
    [
        ("normal", {"std": "big"}, "init.params.std: expected a number"),
        ("normal", {"std": True}, "init.params.std: expected a number"),
        ("he_normal", {"gain": "x"}, "init.params.gain: expected a number"),
        ("he_normal", {"mode": "fan_up"}, "init.params.mode: 'fan_up' is not one of"),
        ("he_uniform", {"mode": 3}, "init.params.mode"),
        ("normal", {"std": -0.1}, "init.params.std: must be >= 0"),
        ("normal_l2", {"l2": -1.0}, "init.params.l2: must be >= 0"),
    ],
)
def test_wrong_param_type_or_value(name, params, fragment):
    with pytest.raises(ConfigError) as err:
        check_scheme(name, params, "relu")
    assert fragment in str(err.value)


def test_valid_params_pass():
    check_scheme("he_normal", {"mode": "fan_out", "gain": 2}, "relu")
    check_scheme("he_normal", {"gain": None}, "relu")
    check_scheme("normal_l2", {"std": 0.1, "l2": 0, "mean": 0.5, "bias_value": 1}, "tanh")


# --- reproducibility ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(set(SCHEMES) - {"zeros", "constant"}))
def test_same_seed_same_weights(name):
    a, ab = fill(name, "tanh", seed=7, rows=64)
    b, bb = fill(name, "tanh", seed=7, rows=64)
    c, _ = fill(name, "tanh", seed=8, rows=64)
    assert torch.equal(a, b) and torch.equal(ab, bb)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["he_normal", "torch_default", "xavier_uniform"])
def test_member_k_equals_single_model_with_its_seed(name):
    hidden, seeds = [48, 32], [11, 22, 33]
    stacked = StackedMLP([20, *hidden, 10], "relu", bias=True, members=len(seeds))
    for k, seed in enumerate(seeds):
        initialize(stacked, k, name, {}, torch.Generator().manual_seed(seed))
    for k, seed in enumerate(seeds):
        single = StackedMLP([20, *hidden, 10], "relu", bias=True, members=1)
        initialize(single, 0, name, {}, torch.Generator().manual_seed(seed))
        for ws, w1 in zip(stacked.weights, single.weights, strict=True):
            assert torch.equal(ws[k], w1[0])
        for bs, b1 in zip(stacked.biases, single.biases, strict=True):
            assert torch.equal(bs[k], b1[0])
    assert not torch.equal(stacked.weights[0][0], stacked.weights[0][1])


@pytest.mark.parametrize("activation", sorted(GAIN))
def test_activation_gain_is_torchs_calculate_gain(activation):
    """The registry's gains are written out (read without torch); torch's own function agrees,
    ELU and GELU aside (ReLU's, as documented)."""
    torch_name = {"elu": "relu", "gelu": "relu"}.get(activation, activation)
    assert activation_gain(activation) == pytest.approx(
        torch.nn.init.calculate_gain(torch_name), rel=1e-15)
