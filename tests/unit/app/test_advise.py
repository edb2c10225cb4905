"""`winit advise`: theory's verdict per scheme for a config's network, with no data read; the
same numbers a run's record holds (predict_run), by the same verdict rule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from winit_cli import theory
from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.diagnosis import advise as advise_module
from winit_cli.diagnosis.advise import advise, step0_shapes
from winit_cli.diagnosis.predict import predict_run
from winit_cli.diagnosis.verdict import predicted_verdict

QUICKSTART = str(Path(__file__).resolve().parents[3] / "configs" / "quickstart.yaml")


def run_json(*args: str) -> dict:
    result = CliRunner().invoke(app, ["advise", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # stdout holds the document and nothing else


def by_scheme(doc: dict) -> dict[str, dict]:
    return {s["scheme"]: s for s in doc["schemes"]}


def test_depth_30_relu_he_is_healthy_and_xavier_vanishes():
    doc = run_json(QUICKSTART, "--set", "model.depth=30")
    rows = by_scheme(doc)
    assert rows["he_normal"]["verdict"] == "healthy"
    assert rows["he_normal"]["any_depth"] is True
    assert rows["xavier_normal"]["verdict"] == "vanishing"
    # ReLU under Glorot: chi = 1/2 per layer, 28 factors from layer 1 to 29
    assert rows["xavier_normal"]["log10_ratio"] == pytest.approx(0.5 * 28 * math.log10(0.5),
                                                                 abs=0.05)
    assert rows["xavier_normal"]["layer"] > 1
    assert doc["recommendation"] in {"he_normal", "he_uniform", "orthogonal", "critical",
                                     "truncated_normal"}
    assert doc["recommendation"] == "he_normal"  # the config's own scheme wins a tie


def test_the_ratio_and_verdict_are_those_of_a_runs_record():
    """advise's number is predict_run's predicted_log10_ratio on the same shapes, and its
    verdict the one predict_run writes into the run's theory block."""
    for sets in (["init.scheme=xavier_normal"], ["model.activation=tanh"],
                 ["model.norm=batch", "model.depth=20"],
                 ["model.kind=resmlp", "model.depth=22"], ["model.dropout=0.2"]):
        config = load_config(QUICKSTART, sets)
        _, summary = predict_run(config, step0_shapes(config), 1.0)
        (row,) = advise(config, [config.init.scheme]).schemes
        assert row.log10_ratio == pytest.approx(summary["predicted_log10_ratio"]), sets
        assert row.verdict == summary["predicted_verdict"], sets


def test_plain_relu_ratio_matches_the_closed_form():
    config = load_config(QUICKSTART, ["model.depth=12", "init.scheme=normal"])
    (row,) = advise(config, ["normal"]).schemes
    chi = 256 * 0.01**2 / 2  # sigma_w^2 / 2, with sigma_w^2 = fan_in std^2
    assert row.log10_ratio == pytest.approx(0.5 * 10 * math.log10(chi))
    assert row.verdict == "vanishing"
    assert row.trainable_depth == pytest.approx(6 / abs(math.log(chi)))


def test_no_prediction_says_why():
    rows = by_scheme(run_json("--schemes", "lsuv,mean1_normal,fixup,he_normal"))
    assert rows["lsuv"]["verdict"] == "no prediction" and "data" in rows["lsuv"]["reason"]
    assert "zero mean" in rows["mean1_normal"]["reason"]
    assert "residual" in rows["fixup"]["reason"]
    assert rows["he_normal"]["verdict"] == "healthy"


def test_families_get_their_theory():
    bn = by_scheme(run_json("--set", "model.norm=batch", "--set", "model.depth=50"))
    rate = theory.batchnorm.bn_gradient_rate("relu", 128)
    assert bn["he_normal"]["log10_ratio"] == pytest.approx(0.5 * math.log10(rate) * 48)
    assert bn["he_normal"]["verdict"] == "exploding"
    res = by_scheme(run_json("--set", "model.kind=resmlp", "--set", "model.depth=42"))
    assert res["he_normal"]["verdict"] == "exploding"  # the stream doubles E||g||^2 a block
    assert res["fixup"]["verdict"] == "healthy" and res["fixup"]["log10_ratio"] == 0


def test_bn_rate_rows_give_the_verdict_from_chi_alone():
    rows = pd.DataFrame({"predicted_chi": [100.0] * 3 + [math.nan] * 2},
                        index=pd.Index(range(1, 6), name="layer"))
    v = predicted_verdict(rows)
    # r_l = one decade per factor from l to 3: r_1 = 3 > 2 (the threshold), r_2 = 2 is not
    assert v.verdict == "exploding" and v.layer == 1 and v.log10_ratio_init == 3


def test_nothing_healthy_is_said():
    doc = run_json(QUICKSTART, "--set", "model.depth=30", "--schemes", "normal,xavier_normal")
    assert "no scheme is predicted healthy" in doc["reason"]
    assert doc["recommendation"] == "xavier_normal"  # the smaller |ratio|: -4.2 vs -26.5


def test_no_data_is_read(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("advise read the dataset")

    monkeypatch.setattr("winit_cli.datasets.load_dataset", refuse)
    monkeypatch.setattr("winit_cli.runner.group.load_dataset", refuse, raising=False)
    assert advise_module.STANDARDIZED_SECOND_MOMENT == 1.0
    assert run_json("--schemes", "he_normal")["input_second_moment"] == 1.0


def test_the_table_fits_80_columns():
    result = CliRunner().invoke(app, ["advise", QUICKSTART], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "recommendation: he_normal" in result.output


def test_user_errors_are_one_red_line():
    result = CliRunner().invoke(app, ["advise", "--schemes", "nope"])
    assert result.exit_code == 2
    assert "unknown scheme 'nope'" in result.output
    result = CliRunner().invoke(app, ["advise", "--set", "model.depht=3"])
    assert result.exit_code == 2 and "did you mean 'depth'" in result.output


def test_step0_shapes_are_the_linear_layers_fans():
    """MNIST's 784 inputs and 10 classes, depth 3 at width 64: by hand, 784 -> 64 -> 64 -> 10,
    each layer's fan_in its input width and fan_out its output width."""
    from winit_cli.diagnosis.advise import step0_shapes

    shapes = step0_shapes(load_config(None, ["model.depth=3", "model.width=64"]))
    assert shapes.fan_in.tolist() == [784, 64, 64]
    assert shapes.fan_out.tolist() == [64, 64, 10]
    assert shapes.layer.tolist() == [1, 2, 3] and (shapes.step == 0).all()


@pytest.mark.parametrize(("bias", "words"), [("true", "3-layer relu mlp, width 64"),
                                             ("false", "3-layer relu mlp, width 64, no bias")])
def test_the_network_is_named_with_its_bias(bias, words):
    from winit_cli.diagnosis.advise import network_words

    config = load_config(None, ["model.depth=3", "model.width=64", "model.activation=relu",
                                f"model.bias={bias}"])
    assert network_words(config) == words


def test_the_recommendation_says_how_far_from_healthy():
    """Depth 12, width 256, ReLU. He: chi = 1, critical, so xi_c is infinite and the reach any
    depth. normal with std 1: chi = 256 x 1 / 2 = 128 per layer, 10 factors from layer 1 to 11:
    +5 log10 128 = +10.54 decades, exploding, the only scheme asked about and none healthy."""
    healthy = advise(load_config(QUICKSTART, ["model.depth=12"]), ["he_normal"])
    assert healthy.recommendation == "he_normal"
    assert "trainable at any depth (xi_c infinite: critical)" in healthy.reason
    config = load_config(QUICKSTART, ["model.depth=12", "init.scheme=normal",
                                      "init.params.std=1.0"])
    exploding = advise(config, ["normal"])
    assert exploding.reason == (f"no scheme is predicted healthy at depth 12; normal comes "
                                f"closest (exploding, {5 * math.log10(128):+.2f} decades first "
                                "to last)")


def test_all_zero_weights_vanish_completely():
    """zeros: chi = 0, every gradient below the output layer exactly 0, so the ratio is
    log10 0 = -inf (not +inf, not undefined) and the verdict vanishing."""
    (row,) = advise(load_config(QUICKSTART, ["model.depth=12"]), ["zeros"]).schemes
    assert row.verdict == "vanishing"
    assert row.log10_ratio == -math.inf


def test_a_family_theorys_refusal_is_passed_on():
    """BatchNorm on batches of 3: the rate is infinite below a batch of 4 (E[1/chi^2_(B-1)]
    diverges); the theory's own reason reaches the advice, not a generic one."""
    config = load_config(QUICKSTART, ["model.depth=6", "model.norm=batch",
                                      "train.batch_size=3"])
    (row,) = advise(config, ["he_normal"]).schemes
    assert row.verdict == "no prediction" and "batch size 3" in row.reason
