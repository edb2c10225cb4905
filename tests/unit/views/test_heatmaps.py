"""The heatmaps show the verdict: a moderate vanishing band stays visible beside a run whose
ratios span tens of decades, and the verdict's threshold is drawn where the ratio crosses it.
Every expected number is worked out here from the hand-built norms, not read from winit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh

from winit_cli.views.heatmaps import Panel, gradient_heatmaps

pytestmark = pytest.mark.unit


def _layers(log10_norms: list[float], steps=(0, 10, 20), names=None,
            norm_after=()) -> pd.DataFrame:
    """layers.csv rows: ||dL/dz_l|| = 10^log10_norms[l-1] at every step; a norm layer (empty
    act_grad_norm) after each layer number in `norm_after`."""
    rows = []
    for step in steps:
        number = 0
        for i, v in enumerate(log10_norms, start=1):
            number += 1
            rows.append({"step": step, "layer": number, "act_grad_norm": 10.0 ** v,
                         "name": names[i - 1] if names else None})
            if i in norm_after:
                number += 1
                rows.append({"step": step, "layer": number, "act_grad_norm": np.nan,
                             "name": f"bn{i}"})
    return pd.DataFrame(rows)


def _meshes(fig) -> list[QuadMesh]:
    """The panels' meshes (the colour bar, the last axes, draws one too)."""
    return [c for ax in fig.axes[:-1] for c in ax.collections if isinstance(c, QuadMesh)]


def test_the_scale_is_clipped_so_a_moderate_band_shows():
    """Xavier-like (-2.7 decades at the input side) beside normal-like (-18 decades): the scale
    ends at twice the 2-decade threshold, not at 18, so -2.7 is 68% of the way to full blue."""
    xavier = [-2.7, -2.0, -1.0, 0.0]
    normal = [-18.0, -12.0, -6.0, 0.0]
    fig = gradient_heatmaps([Panel("xavier", _layers(xavier)), Panel("normal", _layers(normal))],
                            "t")
    meshes = _meshes(fig)
    assert [m.norm.vmin for m in meshes] == [-4.0, -4.0]
    assert [m.norm.vmax for m in meshes] == [4.0, 4.0]
    # the drawn values are the ratios to the last layer, input side in the first row
    drawn = np.asarray(meshes[0].get_array()).reshape(4, 3)
    np.testing.assert_allclose(drawn[:, 0], np.array(xavier) - xavier[-1], atol=1e-9)
    assert abs(meshes[0].norm(drawn[0, 0]) - (0.5 - 2.7 / 8)) < 1e-9
    assert "-2.7 to +0.0" in fig.axes[0].get_title()
    assert "-18.0 to +0.0" in fig.axes[1].get_title()


def test_the_threshold_contour_crosses_where_the_ratio_does():
    """Ratios -3, -1, 0 by layer (the same at each step): the -2 contour lies halfway between
    layers 1 and 2, where linear interpolation puts -2."""
    fig = gradient_heatmaps([Panel("p", _layers([-3.0, -1.0, 0.0]), (2.0, 2.0))], "t")
    contour = next(c for c in fig.axes[0].collections if not isinstance(c, QuadMesh))
    assert list(contour.levels) == [-2.0, 2.0]
    assert not any(len(seg) for seg in contour.allsegs[1])  # +2 is never reached
    ys = np.concatenate([seg[:, 1] for seg in contour.allsegs[0]])
    np.testing.assert_allclose(ys, 1.5, atol=1e-9)


def test_a_small_range_keeps_the_threshold_on_the_scale():
    fig = gradient_heatmaps([Panel("p", _layers([-0.3, 0.0]))], "t")
    assert _meshes(fig)[0].norm.vmax == 2.0


def test_norm_layers_are_left_out_and_modules_named():
    """A watched CNN's BatchNorm rows have no dL/dz: the panel has its 3 Conv/Linear rows,
    ticked with their module names."""
    names = ["features.0", "features.4", "classifier.1"]
    fig = gradient_heatmaps([Panel("p", _layers([-1.0, -0.5, 0.0], names=names,
                                                norm_after=(1, 2)))], "t")
    assert _meshes(fig)[0].get_array().size == 3 * 3
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names


def test_colour_bar_ticks_are_whole_decades():
    fig = gradient_heatmaps([Panel("p", _layers([-3.0, -1.0, 0.0]))], "t")
    bar = fig.axes[-1]
    ticks = bar.get_yticks()
    assert len(ticks) and np.allclose(ticks, np.round(ticks))


def test_the_contour_is_mentioned_only_where_drawn():
    flat = gradient_heatmaps([Panel("p", _layers([-0.4, -0.2, 0.0]))], "t")
    assert "dashed" not in flat._suptitle.get_text()
    steep = gradient_heatmaps([Panel("p", _layers([-3.0, -1.0, 0.0]))], "t")
    assert "dashed: the verdict's thresholds" in steep._suptitle.get_text()
