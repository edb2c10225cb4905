"""`winit schemes` on the terminal: the table of every scheme, or one scheme's documentation,
from the rows app/schemes.py computed. At 80 columns the table shows each scheme's formula and
what theory gives it (σw², χ*, ξ); wide terminals add its summary and parameters."""

from __future__ import annotations

import math

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel

from winit_cli.views.tables import new_table, wide

LEGEND = ("σw² = fan_in Var(W); χ*: per-layer factor on the mean squared gradient at the fixed "
          "point (< 1: gradients vanish with depth, > 1: they explode); ξ = 1/|ln χ*|, the depth "
          "scale: theory expects nets much deeper than about 6ξ not to train; '-': theory does "
          "not apply (data-dependent or non-zero-mean weights) or there is no critical point. "
          "`winit schemes NAME` for a scheme's full docstring.")


def _number(x: float | None, note: str = "") -> str:
    if x is None:
        return f"[dim]- ({note})[/]" if note else "-"
    return "∞" if math.isinf(x) else f"{x:.4g}"


def scheme_detail(console: Console, row, activation: str, width: int) -> None:
    # Reflow each paragraph: the docstring's line breaks are for source files, not terminals.
    text = "\n\n".join(" ".join(part.split()) for part in row.doc.split("\n\n"))
    console.print(Panel(escape(text), title=f"[bold]{row.name}[/]", title_align="left",
                        expand=False), highlight=False)
    for label, value in (
        ("formula", escape(row.formula)),
        ("parameters", escape(row.params)),
        ("not taken", row.not_taken),
        ("also accepted as", ", ".join(row.aliases) or "-"),
        ("data-dependent", "yes" if row.data_dependent else "no"),
        (f"σw² ({activation}, width {width})", _number(row.sigma_w2, row.note)),
        ("χ* at the fixed point", _number(row.chi, row.note)),
        ("depth scale ξ = 1/|ln χ*|", _number(row.depth_scale, row.note)),
    ):
        console.print(f"[bold]{label}:[/] {value}", highlight=False)


def scheme_table(console: Console, rows, activation: str, width: int) -> None:
    is_wide = wide(console)
    text = [("summary", "text"), ("parameters (defaults)", "text")] if is_wide else []
    table = new_table(f"init schemes for a {width}x{width} {activation} layer",
                      [("scheme", "text"), ("formula", "text"), *text, ("σw²", "num"),
                       ("χ*", "num"), ("ξ", "num")], show_lines=is_wide)
    for r in rows:
        more = [escape(r.summary), escape(r.params)] if is_wide else []
        table.add_row(f"[bold]{r.name}[/]", escape(r.formula), *more,
                      _number(r.sigma_w2, "data" if r.data_dependent else ""), _number(r.chi),
                      _number(r.depth_scale))
    console.print(table)
    console.print(f"[dim]{escape(LEGEND)}[/]")
