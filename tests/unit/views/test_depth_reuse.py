"""The figures across depths (dz ratio and accuracy against depth) are kept from one report to
the next like a group's (records/reuse.FigureCache): the same aggregate rows give the files of
the report that drew them, byte for byte, without drawing; a changed number draws anew."""

from __future__ import annotations

import pandas as pd
import pytest

from winit_cli.records.reuse import FigureCache
from winit_cli.views import figures
from winit_cli.views.plots import Output

pytestmark = pytest.mark.unit


def _aggregate(accuracy: float = 0.9, members: int = 0) -> pd.DataFrame:
    rows = [{"dataset": "mnist", "model_kind": "mlp", "activation": "tanh", "width": 64,
             "depth": depth, "scheme": scheme, "members": [members + n],
             "log10_first_to_last_measured_mean": -0.1 * depth,
             "log10_first_to_last_measured_std": 0.02,
             "log10_first_to_last_predicted_mean": -0.11 * depth,
             "test_accuracy_mean": accuracy - depth / 100, "test_accuracy_std": 0.01}
            for n, (depth, scheme) in enumerate([(d, s) for d in (3, 6, 12)
                                                 for s in ("he_normal", "orthogonal")])]
    frame = pd.DataFrame(rows)
    frame["depth"] = frame["depth"].astype("Int64")
    return frame


def _draw(tmp_path, name, aggregate, cache, drawn):
    out = tmp_path / name
    (out / "plots").mkdir(parents=True)
    made: dict = {}
    labels = {i: scheme for i, scheme in enumerate(aggregate.scheme)}
    colors = {"he_normal": "#1f77b4", "orthogonal": "#d62728"}
    figures._depth_figures(out, aggregate, labels, colors, Output(), made, cache)
    files = {p.name: p.read_bytes() for p in (out / "plots").iterdir()}
    return made[None], files


def test_the_same_rows_reuse_the_figures_and_a_changed_one_draws_them(tmp_path, monkeypatch):
    drawn = []
    for name in ("dz_ratio_vs_depth", "accuracy_vs_depth"):
        real = getattr(figures, name)
        monkeypatch.setattr(figures, name,
                            lambda *a, name=name, real=real: drawn.append(name) or real(*a))
    cache = FigureCache(tmp_path / "cache", {})
    first, first_files = _draw(tmp_path, "first", _aggregate(), cache, drawn)
    assert sorted(drawn) == ["accuracy_vs_depth", "dz_ratio_vs_depth"]
    assert sorted(first_files) == ["accuracy_vs_depth.png", "dz_ratio_vs_depth.png"]

    drawn.clear()  # the same numbers (other row labels: members are not what is drawn)
    again, again_files = _draw(tmp_path, "again", _aggregate(members=50), cache, drawn)
    assert drawn == [] and again == first and again_files == first_files

    changed, changed_files = _draw(tmp_path, "changed", _aggregate(accuracy=0.8), cache, drawn)
    assert sorted(drawn) == ["accuracy_vs_depth", "dz_ratio_vs_depth"] and changed == first
    assert changed_files["accuracy_vs_depth.png"] != first_files["accuracy_vs_depth.png"]


def test_without_a_cache_they_are_drawn_each_time(tmp_path):
    made, files = _draw(tmp_path, "plain", _aggregate(), None, [])
    assert [alt for alt, _ in made] == ["dz ratio at init vs depth: measured, and theory's "
                                        "prediction", "test accuracy vs depth"]
    assert all(files.values())
