"""`winit advise` against measurement: theory's predicted verdict (no data read) beside the
verdict measured at step 0 on real MNIST, over the main schemes x relu/tanh x depths 5..50 plus
BatchNorm and residual nets, at width 128 and one seed. Agreement must be at least 95%; the
table is printed (pytest -s). About a minute of CPU: one step per run, same-shape runs trained
as one stacked model."""

from __future__ import annotations

import pandas as pd
import pytest

from winit_cli.config import load_config
from winit_cli.diagnosis.advise import advise
from winit_cli.diagnosis.verdict import diagnose, measured_first_to_last_hidden
from winit_cli.runner.group import load_splits, train_records

pytestmark = [pytest.mark.mnist, pytest.mark.slow]

SCHEMES = ["he_normal", "xavier_normal", "normal", "lecun_normal", "orthogonal"]
PLAIN = [[f"model.activation={a}", f"model.depth={d}"]
         for a in ("relu", "tanh") for d in (5, 10, 20, 50)]
BATCHNORM = [[f"model.activation={a}", f"model.depth={d}", "model.norm=batch"]
             for a in ("relu", "tanh") for d in (10, 50)]
RESIDUAL = [[f"model.activation={a}", f"model.depth={d}", "model.kind=resmlp"]
            for a in ("relu", "tanh") for d in (12, 42)]
GROUPS = ([(s, SCHEMES) for s in PLAIN] + [(s, SCHEMES[:2]) for s in BATCHNORM]
          + [(s, ["he_normal", "xavier_normal", "normal", "fixup"]) for s in RESIDUAL])
BASE = ["model.width=128", "train.steps=1", "train.batch_size=128", "data.subset=256",
        "data.val_size=256", "record.every=1", "train.threads=1"]


def measured_step0(groups, mnist_path) -> pd.DataFrame:
    splits = None
    rows = []
    for sets, schemes in groups:
        configs = [load_config(None, [*BASE, *sets, f"init.scheme={s}", f"data.dir={mnist_path}"])
                   for s in schemes]
        splits = splits or load_splits(configs[0])
        for config, result in zip(configs, train_records(configs, splits), strict=True):
            step0 = result.layers[result.layers.step == 0]
            measured = diagnose(step0, vanish_decades=config.diagnose.vanish_decades,
                                explode_decades=config.diagnose.explode_decades)
            (predicted,) = advise(config, [config.init.scheme]).schemes
            rows.append({"net": " ".join(s.split("=")[1] for s in sets),
                         "scheme": config.init.scheme, "predicted": predicted.verdict,
                         "measured": measured.verdict,
                         "ratio_predicted": predicted.log10_ratio,
                         "ratio_measured": measured_first_to_last_hidden(step0),
                         "record_predicted": result.record.theory.predicted_verdict})
    return pd.DataFrame(rows)


def test_advise_agrees_with_step0_measurement(mnist_path):
    table = measured_step0(GROUPS, mnist_path)
    table["agree"] = table.predicted == table.measured
    with pd.option_context("display.width", 140, "display.max_rows", 200):
        print(table.round(2).to_string())
    agreement = table.agree.mean()
    print(f"agreement: {table.agree.sum()}/{len(table)} = {agreement:.1%}")
    assert agreement >= 0.95, table[~table.agree]
    # a run's record holds the same prediction (from the data's own m_0, 0.99999725)
    assert (table.record_predicted == table.predicted).all()


@pytest.mark.parametrize("scheme, verdict", [("he_normal", "healthy"),
                                             ("xavier_normal", "vanishing")])
def test_quickstart_at_depth_30_is_as_measured(mnist_path, scheme, verdict):
    config = load_config("configs/quickstart.yaml", [
        "model.depth=30", f"init.scheme={scheme}", "train.steps=1", "data.subset=256",
        f"data.dir={mnist_path}", "train.threads=1"])
    (predicted,) = advise(config, [scheme]).schemes
    (result,) = train_records([config], load_splits(config))
    assert predicted.verdict == verdict
    assert result.record.verdict.verdict == verdict
