"""The docs site's reference pages, written from the code so that they cannot drift from it: the
config keys from the pydantic schema (`config.Config`), the init schemes from their registry
(`inits.SCHEMES`). A page asks for one with a marker on a line of its own,

    <!-- winit:config-reference -->

and the MkDocs hook (docs/hooks/generate.py) replaces it with `GENERATORS[name]()`'s Markdown.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from winit_cli.app.schemes import scheme_rows
from winit_cli.config import Config
from winit_cli.datasets import DATASETS
from winit_cli.inits import SCHEMES
from winit_cli.inits.aliases import aliases_of
from winit_cli.models import MODELS

MARKER = re.compile(r"^<!-- winit:([a-z-]+) -->$", re.M)

# Keys whose values are names in a registry rather than a fixed list in the schema.
REGISTRY_KEYS: dict[str, Callable[[], list[str]]] = {
    "model.kind": lambda: list(MODELS),
    "data.dataset": lambda: list(DATASETS),
    "init.scheme": lambda: [*SCHEMES, "or an alias (see Init schemes)"],
}


def fill_markers(markdown: str) -> str:
    """`markdown` with every `<!-- winit:NAME -->` line replaced by its generated reference; an
    unknown NAME is an error (a mistyped marker would otherwise leave a page silently short)."""

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown docs marker winit:{name}; known: {', '.join(GENERATORS)}")
        return GENERATORS[name]().rstrip("\n")

    return MARKER.sub(replace, markdown)


# --- configs ------------------------------------------------------------------------------------


def config_reference() -> str:
    """Every key of `Config`, a table per section: type, default, allowed values, description."""
    top = [(name, f) for name, f in Config.model_fields.items() if not _section(f)]
    out = ["### Top level", "", *_table("", top)]
    for name, field in Config.model_fields.items():
        model = _section(field)
        if model is None:
            continue
        doc = " ".join((model.__doc__ or "").split())
        out += ["", f"### `{name}`", "", f"{doc}" if doc else field.description, "",
                *_table(f"{name}.", list(model.model_fields.items()))]
    return "\n".join(out) + "\n"


def config_keys(model: type[BaseModel] = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (sections included): what the reference must show."""
    keys = []
    for name, field in model.model_fields.items():
        keys.append(prefix + name)
        if (sub := _section(field)) is not None:
            keys += config_keys(sub, f"{prefix}{name}.")
    return keys


def _section(field: FieldInfo) -> type[BaseModel] | None:
    a = field.annotation
    return a if isinstance(a, type) and issubclass(a, BaseModel) else None


def _table(prefix: str, fields: list[tuple[str, FieldInfo]]) -> list[str]:
    rows = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    for name, field in fields:
        key = prefix + name
        kind, allowed = _describe_type(field.annotation, field.metadata)
        if key in REGISTRY_KEYS:
            allowed = ", ".join(f"`{v}`" if " " not in v else v for v in REGISTRY_KEYS[key]())
        cells = [f"`{key}`", kind, f"`{_default(field)}`", allowed or "-",
                 _escape(field.description or "")]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def _describe_type(annotation: Any, metadata: list) -> tuple[str, str]:
    """('integer', '> 0') for PositiveInt; ('string', '`relu`, `tanh`') for a Literal."""
    bounds = _bounds(metadata)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _describe_type(args[0], [*metadata, *args[1:]])
    if origin in (typing.Union, types.UnionType):
        parts = [_describe_type(a, metadata) for a in args if a is not type(None)]
        kind = " or ".join(p[0] for p in parts) + (" or null" if type(None) in args else "")
        return kind, "; ".join(p[1] for p in parts if p[1])
    if origin is Literal:
        kinds = sorted({_TYPE_NAMES.get(type(a), type(a).__name__) for a in args})
        return " or ".join(kinds), ", ".join(f"`{a}`" for a in args)
    if origin is list:
        item, allowed = _describe_type(args[0], [])
        return f"list of {item}", f"each {allowed}" if allowed else ""
    if origin is dict:
        return "mapping", bounds
    return _TYPE_NAMES.get(annotation, getattr(annotation, "__name__", str(annotation))), bounds


_TYPE_NAMES = {int: "integer", float: "number", bool: "boolean", str: "string", Path: "path"}
_BOUND_SYMBOLS = ((annotated_types.Gt, "gt", ">"), (annotated_types.Ge, "ge", ">="),
                  (annotated_types.Lt, "lt", "<"), (annotated_types.Le, "le", "<="))


def _bounds(metadata: list) -> str:
    found = []
    for item in metadata:
        found += [f"{symbol} {getattr(item, attr)}" for cls, attr, symbol in _BOUND_SYMBOLS
                  if isinstance(item, cls)]
        if getattr(item, "pattern", None):
            found.append(f"matches `{item.pattern}`")
        if isinstance(item, FieldInfo):  # Annotated[int, Field(gt=0)] nested in a union
            found.append(_bounds(item.metadata))
    return ", ".join(f for f in found if f)


def _default(field: FieldInfo) -> str:
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(a section)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "{}" if value == {} else str(value)


# --- schemes ------------------------------------------------------------------------------------


def scheme_reference(width: int = 256) -> str:
    """Every registered scheme: a summary table with what theory gives it for ReLU and tanh, then
    one section each with its formula, parameters and defaults, aliases and docstring."""
    rows = {a: {r.name: r for r in scheme_rows(a, width)} for a in ("relu", "tanh")}
    out = ["| scheme | formula | σw², χ*, ξ (ReLU) | σw², χ*, ξ (tanh) |", "|---|---|---|---|"]
    for name, scheme in SCHEMES.items():
        out.append(f"| [`{name}`](#{name.replace('_', '-')}) | {_code(scheme.formula)} | "
                   f"{_theory(rows['relu'][name])} | {_theory(rows['tanh'][name])} |")
    out += ["", f"σw² = fan_in Var(W) for a {width}x{width} layer; χ* the per-layer factor on the "
            "mean squared gradient at the length map's fixed point (below 1: gradients vanish "
            "with depth, above 1: they explode); ξ = 1/|ln χ*| the depth scale; '-' where the "
            "theory does not apply, with the reason."]
    for name, scheme in SCHEMES.items():
        out += ["", *_scheme_section(name, scheme)]
    return "\n".join(out) + "\n"


def _scheme_section(name: str, scheme) -> list[str]:
    paragraphs = [" ".join(p.split()) for p in scheme.doc.split("\n\n")]
    example = [p for p in paragraphs if p.startswith("Example:")]
    body = [p for p in paragraphs if not p.startswith("Example:")]
    params = ", ".join(f"`{k}` = `{_param_default(k, v)}`" for k, v in scheme.defaults.items())
    facts = [f"**formula**: {_code(scheme.formula)}",
             f"**parameters** (`init.params`, with defaults): {params or 'none'}",
             f"**also accepted as**: {', '.join(f'`{a}`' for a in aliases_of(name)) or '-'}"]
    if scheme.needs_branches:
        facts.append("**model**: `resmlp` only (defined on residual branches)")
    if scheme.data_dependent:
        facts.append("**data-dependent**: the weights are calibrated on a training batch")
    lines = [f"### `{name}` {{#{name.replace('_', '-')}}}", "", _escape(body[0]), "",
             *(f"- {f}" for f in facts), ""]
    lines += [_escape(p) + "\n" for p in body[1:]]
    lines += [_escape(p.replace("``", "`")) for p in example]
    return lines


def _param_default(key: str, value: Any) -> str:
    if value is None:
        return "auto (from the activation)" if key == "gain" else "auto"
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _theory(row) -> str:
    if row.sigma_w2 is None or row.chi is None:
        return f"- ({row.note})" if row.note else "-"
    xi = "∞" if row.depth_scale == float("inf") else f"{row.depth_scale:.3g}"
    return f"{row.sigma_w2:.3g}, {row.chi:.3g}, {xi}"


def _code(text: str) -> str:
    return f"`{text}`" if text else "-"


# Markdown would read `*` and `_` in plain-text formulas (fan_in * std^2 * E) as emphasis, and
# `<` as HTML: escaped outside code spans.
_CODE_SPAN = re.compile(r"(``.+?``|`[^`]+`)")


def _escape(text: str) -> str:
    parts = _CODE_SPAN.split(text)
    return "".join(p if i % 2 else re.sub(r"([*_<\[\]])", r"\\\1", p)
                   for i, p in enumerate(parts))


GENERATORS: dict[str, Callable[[], str]] = {
    "config-reference": config_reference,
    "schemes-reference": scheme_reference,
}
