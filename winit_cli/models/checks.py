"""Config checks every model kind shares: what a kind cannot build is refused at validation,
in one line that says why (the kinds' `check_config` in models/registry.py calls these)."""

from __future__ import annotations

from typing import Any

from winit_cli.errors import ConfigError

# Residual-only keys and their defaults: a plain kind refuses any other value.
BRANCH_KEYS = {"branch_layers": 2, "branch_scale": 1.0, "learnable_scale": False}


def check_no_branches(config: Any) -> None:
    """A kind without residual branches takes none of the branch keys."""
    for key, default in BRANCH_KEYS.items():
        value = getattr(config.model, key)
        if value != default:
            raise ConfigError(
                f"model.{key}: {value!r} applies to residual branches, and model.kind "
                f"{config.model.kind} has none (use model.kind: resmlp)")


def check_common(config: Any) -> None:
    """What norm, dropout and the parametrization need, whatever the kind."""
    check_parametrization(config)
    if config.model.norm == "batch" and config.train.batch_size < 2:
        raise ConfigError(
            f"model.norm: batch needs train.batch_size >= 2 (got {config.train.batch_size}): "
            "BatchNorm normalizes each unit over the batch, so one example normalizes to 0 "
            "(mean-field theory needs >= 4 for a finite gradient rate)")


def check_residual_layout(config: Any) -> None:
    """depth = 2 + branch_layers x blocks, with at least one block, and one stream width."""
    m = config.model
    blocks, rest = divmod(m.depth - 2, m.branch_layers)
    if m.depth < 2 + m.branch_layers or rest:
        near = max(1, blocks) * m.branch_layers + 2
        raise ConfigError(
            f"model.depth: {m.depth} does not fit a residual MLP with branch_layers "
            f"{m.branch_layers}: depth counts Linear layers, input projection + "
            f"{m.branch_layers} per block + output = 2 + {m.branch_layers} x blocks "
            f"(e.g. {near} or {near + m.branch_layers})")
    if m.widths is not None and len(set(m.widths)) > 1:
        raise ConfigError(
            f"model.widths: a residual MLP adds every block's output to one stream, so its "
            f"hidden widths must be equal (got {m.widths}); use model.width")


PARAMETRIZED_KINDS = ("mlp", "resmlp")


def check_parametrization(config: Any) -> None:
    """ntk and mup exist for the mlp and resmlp kinds without normalization layers (a norm's
    gain has no width rule here). base_width is allowed with standard, where it changes
    nothing, so that one sweep can cross parametrizations at one base width."""
    m = config.model
    if m.parametrization == "standard":
        return
    if m.kind not in PARAMETRIZED_KINDS:
        raise ConfigError(f"model.parametrization: {m.parametrization} is built for model.kind "
                          f"{' and '.join(PARAMETRIZED_KINDS)}, not {m.kind}")
    if m.norm != "none":
        raise ConfigError(f"model.parametrization: {m.parametrization} with model.norm "
                          f"{m.norm} is not built (no width rule for the norm's gain); use "
                          "model.norm: none or model.parametrization: standard")
    if m.depth < 2:
        raise ConfigError(f"model.parametrization: {m.parametrization} needs a hidden layer "
                          "(model.depth >= 2): there is no width to scale")
