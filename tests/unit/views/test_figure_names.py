"""Figure names stay bounded and distinct whatever a group key holds (a watched run's class,
layer list and optimizer settings made a 281-character name the filesystem refused)."""

from __future__ import annotations

from winit_cli.views.figures import MAX_SLUG, _slug


def test_a_short_key_reads_as_before():
    assert _slug(("mnist", "mlp", "relu", 8, 64)) == "mnist_mlp_relu_d8_w64"


def test_a_long_key_is_cut_and_hashed_distinctly():
    layers = ",".join(f"features.{i}: Conv2d" for i in range(20))
    a = _slug(("mnist", "Net", "unknown", 6, 32, layers, "SGD lr=0.01"))
    b = _slug(("mnist", "Net", "unknown", 6, 32, layers, "SGD lr=0.02"))
    assert len(a) == len(b) == MAX_SLUG and a != b
    assert a.startswith("mnist_Net_unknown_d6_w32_")
