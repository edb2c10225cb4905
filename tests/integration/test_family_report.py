"""`winit report` over runs of several model families: each network is its own group (the
model_kind column carries norm, dropout and branch options), so recommendations never rank a
BatchNorm net against a plain one, and every family's theory reaches the tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from winit_cli.app.report import build_report
from winit_cli.config import load_config
from winit_cli.records.rows import model_label
from winit_cli.runner.group import load_splits, run_group


def _config(out: Path, scheme: str, *model: str):
    return load_config(None, [
        f"name={scheme}", f"init.scheme={scheme}", "model.depth=6", "model.width=32",
        "data.subset=600", "data.val_size=300", "train.steps=20", "record.every=5",
        "train.optimizer=momentum", "train.lr=0.05", f"output_dir={out}", *model])


@pytest.fixture(scope="module")
def report(tmp_path_factory, mnist_path: Path):
    root = tmp_path_factory.mktemp("families")
    plain = _config(root, "he_normal")
    splits = load_splits(plain, mnist_path)
    run_group([plain], splits)
    run_group([_config(root, s, "model.norm=batch") for s in ("he_normal", "normal")], splits)
    residual = ("model.kind=resmlp", "model.learnable_scale=true")
    run_group([_config(root, s, *residual) for s in ("he_normal", "skipinit")], splits)
    return root, build_report([root], out=tmp_path_factory.mktemp("out") / "report")


@pytest.mark.mnist
@pytest.mark.slow
def test_each_network_is_its_own_group(report):
    _, report = report
    table = pd.read_csv(report.out / "summary.csv")
    assert sorted(set(table.model_kind)) == ["mlp", "mlp+batchnorm", "resmlp(learnable alpha)"]
    assert not {"model_norm", "model_learnable_scale", "model_kind"} & {
        c for c in table.columns if c.startswith("model_") and c != "model_kind"}
    assert len(report.recommendations) == 3
    titles = [line.split(":**")[0] for line in report.recommendations]
    assert titles == ["**mnist, mlp relu, depth 6, width 32",
                      "**mnist, mlp+batchnorm relu, depth 6, width 32",
                      "**mnist, resmlp(learnable alpha) relu, depth 6, width 32"]


@pytest.mark.mnist
def test_family_theory_reaches_the_tables(report):
    root, report = report
    table = pd.read_csv(report.out / "summary.csv").set_index("scheme", drop=False)
    bn = table[table.model_kind == "mlp+batchnorm"]
    assert bn.theory_family.eq("batchnorm").all()
    assert bn.theory_statement.str.startswith("BatchNorm (Yang et al. 2019)").all()
    res = table[table.model_kind.str.startswith("resmlp")]
    assert res.theory_family.eq("residual").all()
    for _, run in res.iterrows():  # the stream's ratio, log10 ||dL/dh_0|| / ||dL/dh_B||
        layers = pd.read_csv(root / run.path / "layers.csv")
        stream = layers[layers.step == 0].stream_grad_norm.dropna().to_numpy()
        assert len(stream) == 3  # h_0 and two blocks
        assert run.log10_first_to_last_measured == pytest.approx(
            math.log10(stream[0] / stream[-1]), abs=1e-12)
    assert res.loc["skipinit"].log10_first_to_last_predicted == 0
    assert abs(res.loc["skipinit"].log10_first_to_last_measured) < 1e-6  # identity blocks


def test_model_label_reads_defaults_for_older_runs():
    assert model_label("mlp", {}) == "mlp"
    assert model_label("resmlp", {"model.branch_layers": 1, "model.branch_scale": 0.5,
                                  "model.norm": "layer", "model.dropout": 0.1}) == \
        "resmlp(k=1, alpha=0.5)+layernorm+dropout=0.1"
    assert model_label("mlp", {"model.norm": None}) == "mlp"
