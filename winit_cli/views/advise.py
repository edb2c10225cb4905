"""`winit advise` on the terminal: one row per scheme (predicted verdict, first-to-last dz ratio,
chi, trainable depth), the reasons theory gives no prediction, and the recommendation. Drawn
from a diagnosis.advise.Advice; fits 80 columns."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape

from winit_cli.views.tables import new_table

STYLE = {"healthy": "green", "vanishing": "yellow", "exploding": "red", "no prediction": "dim"}
LEGEND = ("dz 1/L-1: predicted log10 ||dL/dz_1|| / ||dL/dz_(L-1)|| (a run's measured "
          "log10_first_to_last; the residual stream's for resmlp); from: the layer where the "
          "predicted vanishing or explosion starts; χ: per-layer factor on the mean squared "
          "gradient deep in the net (per block for resmlp, Yang et al.'s rate under BatchNorm); "
          "6ξc: theory's trainable depth (∞: any); verdicts use the config's diagnose "
          "thresholds ({vanish:g} and {explode:g} decades), as a run's do; input second "
          "moment {m0:g} (standardized data).")


def _num(x: float | None, fmt: str = "{:.3g}") -> str:
    if x is None or x != x:  # None or NaN
        return "-"
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return fmt.format(x)


def advice_table(console: Console, advice) -> None:
    table = new_table(f"{advice.network}: theory at init",
                      [("scheme", "text"), ("verdict", "text"), ("dz 1/L-1", "num"),
                       ("from", "num"), ("χ", "num"), ("6ξc", "num")])
    reasons: dict[str, list[str]] = {}
    for a in advice.schemes:
        if not a.predicts:
            reasons.setdefault(a.reason, []).append(a.scheme)
        mark = "  ←" if a.scheme == advice.recommendation else ""
        table.add_row(f"[bold]{escape(a.scheme)}[/]{mark}",
                      f"[{STYLE.get(a.verdict, 'default')}]{a.verdict}[/]",
                      _num(a.log10_ratio, "{:+.2f}"), _num(a.layer, "{}"), _num(a.chi),
                      _num(a.trainable_depth, "{:.0f}"))
    console.print(table)
    legend = LEGEND.format(vanish=advice.vanish_decades, explode=advice.explode_decades,
                           m0=advice.input_second_moment)
    console.print(f"[dim]{escape(legend)}[/]")
    for reason, names in reasons.items():
        console.print(f"[dim]no prediction for {escape(', '.join(names))}: {escape(reason)}[/]",
                      highlight=False)
    if advice.recommendation is None:
        console.print(f"recommendation: none ({escape(advice.reason)})", highlight=False)
    else:
        console.print(f"recommendation: [bold green]{escape(advice.recommendation)}[/]: "
                      f"{escape(advice.reason)}", highlight=False)


MODULE_LEGEND = ("fwd: E[z_l^2] / E[z^2] of the layer feeding it (the input x for the first), "
                 "1 = neither grows nor shrinks; dz: log10 ||dL/dz_l|| / ||dL/dz_L|| in "
                 "decades; dead / sat: units off for the whole batch / within 0.01 of an "
                 "asymptote; one forward and backward pass at init, nothing trained.")


def _pct(x: float) -> str:
    return "-" if x is None or x != x else f"{100 * x:.0f}%"


def module_advice(advice):
    """`winit.advise`'s table and verdict as a rich renderable (a watcher.advise.ModuleAdvice:
    its `table` and verdict); with fix_init's `*_before` columns, before and after."""
    from rich.console import Group
    from rich.text import Text

    t = advice.table
    fixed = "forward_gain_before" in t
    columns = [("#", "num"), ("layer", "text")] + (
        [("fwd\nbefore", "num"), ("fwd", "num"), ("dz\nbefore", "num"), ("dz", "num"),
         ("scale", "num")] if fixed else
        [("shape", "text"), ("fwd", "num"), ("dz", "num"), ("dead", "num"), ("sat", "num")]
    ) + [("flags", "text")]
    table = new_table("winit.fix_init: before and after" if fixed else "winit.advise at init",
                      columns)
    for r in t.itertuples():
        middle = ([_num(r.forward_gain_before), _num(r.forward_gain),
                   _num(r.backward_log10_before, "{:+.2f}"), _num(r.backward_log10, "{:+.2f}"),
                   _num(r.scale)] if fixed else
                  [f"{r.fan_in}→{r.fan_out}", _num(r.forward_gain),
                   _num(r.backward_log10, "{:+.2f}"), _pct(r.dead_fraction),
                   _pct(r.saturated_fraction)])
        table.add_row(str(r.layer), escape(r.name), *middle, escape(r.flagged))
    style = STYLE.get(advice.verdict, "default")
    lines = [table, Text(MODULE_LEGEND, style="dim"),
             Text.from_markup(f"verdict: [{style}]{escape(advice.describe())}[/]")]
    if advice.not_recorded:
        lines.append(Text("not recorded: " + "; ".join(advice.not_recorded), style="dim"))
    return Group(*lines)
