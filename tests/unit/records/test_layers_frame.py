"""layers.csv's frame (records/layers.py layers_frame) from records built by hand: one row per
record and layer, each layer with its own fans, a record with more layers than the one before
(a watched module that first ran later), and the epoch column NaN where a record has none."""

from __future__ import annotations

import math

import numpy as np

from winit_cli.records.layers import layers_frame


def test_rows_per_record_and_layer_with_each_layers_fans():
    values = [np.array([[1.0], [2.0]]), np.array([[3.0], [4.0], [5.0]])]
    frame = layers_frame([(0, None), (10, 1)], values, [(784, 64), (64, 32), (32, 10)], ["x"])
    assert frame.step.tolist() == [0, 0, 10, 10, 10]
    assert frame.layer.tolist() == [1, 2, 1, 2, 3]
    assert frame.fan_in.tolist() == [784, 64, 784, 64, 32]
    assert frame.fan_out.tolist() == [64, 32, 64, 32, 10]
    assert frame.x.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    epochs = frame.epoch.tolist()
    assert math.isnan(epochs[0]) and math.isnan(epochs[1]) and epochs[2:] == [1.0, 1.0, 1.0]


def test_epochs_stay_integers_where_every_record_has_one():
    frame = layers_frame([(0, 0), (10, 1)], [np.zeros((1, 1)), np.zeros((1, 1))], [(4, 2)],
                         ["x"])
    assert frame.epoch.tolist() == [0, 1] and frame.epoch.dtype.kind == "i"
