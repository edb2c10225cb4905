"""The per-layer quantities figure's colour bar: layers are whole numbers (no tick at 2.5), and
a watched run's layers are its module names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from winit_cli.views.quantities import quantities_over_time

pytestmark = pytest.mark.unit


def _layers(depth: int, names: list[str] | None = None) -> pd.DataFrame:
    rows = [{"step": s, "layer": l, "act_grad_norm": 10.0 ** -l, "weight_grad_norm": 1.0 + l,
             **({"name": names[l - 1]} if names else {})}
            for s in (0, 10) for l in range(1, depth + 1)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("depth", [3, 8, 30])
def test_ticks_are_whole_layers(depth):
    bar = quantities_over_time(_layers(depth), "t").axes[-1]
    ticks = [t for t in bar.get_yticks() if 1 <= t <= depth]
    assert ticks and np.allclose(ticks, np.round(ticks)), ticks


def test_a_watched_run_shows_module_names():
    names = ["features.0", "features.1", "classifier.1"]
    bar = quantities_over_time(_layers(3, names), "t").axes[-1]
    assert [t.get_text() for t in bar.get_yticklabels()] == names
