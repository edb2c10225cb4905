"""`winit schemes`: what each init scheme is and what it gives in theory, as rows to show.

chi* is sigma_w^2 E[phi'(sqrt(q*) z)^2] at the fixed point q* of the length map (reached from
q = 1) with the scheme's bias variance, for a square width x width layer, and xi = 1/|ln chi*|
its depth scale; None where the theory does not apply (the `note` says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from winit_cli.config import Activation
from winit_cli.diagnosis.predict import scheme_mean_field
from winit_cli.errors import ConfigError
from winit_cli.inits import SCHEMES, Scheme, activation_gain, get_scheme
from winit_cli.inits.aliases import aliases_of
from winit_cli.theory import depth_scale


@dataclass(frozen=True)
class SchemeRow:
    name: str
    summary: str
    doc: str
    formula: str
    params: str  # "name=default, ..." with automatic values spelled out
    not_taken: str  # the common parameters it ignores
    data_dependent: bool
    sigma_w2: float | None
    chi: float | None
    depth_scale: float | None  # xi = 1/|ln chi*| (inf at chi* = 1); None where chi is
    note: str  # why sigma_w2 or chi is missing
    aliases: tuple[str, ...] = ()  # other names accepted for it (inits/aliases.py)


def _params(scheme: Scheme, activation: str) -> str:
    auto = {"gain": f"auto ({activation_gain(activation):.3g})", "std": "auto"}
    return ", ".join(f"{k}={auto.get(k, 'None') if v is None else v}"
                     for k, v in scheme.defaults.items()) or "none"


def scheme_row(scheme: Scheme, activation: str, width: int) -> SchemeRow:
    mf = scheme_mean_field(scheme, activation, width)
    xi = depth_scale(mf.chi) if mf.chi is not None else None
    return SchemeRow(scheme.name, scheme.summary, scheme.doc, scheme.formula,
                     _params(scheme, activation), ", ".join(scheme.not_taken) or "-",
                     scheme.data_dependent, mf.sigma_w2, mf.chi, xi, mf.note,
                     tuple(aliases_of(scheme.name)))


def check_activation(activation: str) -> None:
    known = get_args(Activation)
    if activation not in known:
        raise ConfigError(f"--activation: {activation!r} is not one of {', '.join(known)}")


def scheme_rows(activation: str, width: int) -> list[SchemeRow]:
    return [scheme_row(s, activation, width) for s in SCHEMES.values()]


def scheme_detail(name: str, activation: str, width: int) -> SchemeRow:
    return scheme_row(get_scheme(name, where="winit schemes"), activation, width)
