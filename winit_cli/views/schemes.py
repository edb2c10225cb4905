"""`winit schemes` on the terminal: the table of every scheme, or one scheme's documentation,
from the rows app/schemes.py computed."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table


def _number(x: float | None, note: str = "") -> str:
    if x is None:
        return f"[dim]- ({note})[/]" if note else "-"
    return f"{x:.4g}"


def scheme_detail(console: Console, row, activation: str, width: int) -> None:
    # Reflow each paragraph: the docstring's line breaks are for source files, not terminals.
    text = "\n\n".join(" ".join(part.split()) for part in row.doc.split("\n\n"))
    console.print(Panel(escape(text), title=f"[bold]{row.name}[/]", title_align="left",
                        expand=False), highlight=False)
    for label, value in (
        ("formula", escape(row.formula)),
        ("parameters", escape(row.params)),
        ("not taken", row.not_taken),
        ("data-dependent", "yes" if row.data_dependent else "no"),
        (f"σw² ({activation}, width {width})", _number(row.sigma_w2, row.note)),
        ("χ* at the fixed point", _number(row.chi, row.note)),
    ):
        console.print(f"[bold]{label}:[/] {value}", highlight=False)


def scheme_table(console: Console, rows, activation: str, width: int) -> None:
    table = Table(title=f"init schemes: σw² = fan_in Var(W) and χ* for a {width}x{width} "
                        f"{activation} layer (`winit schemes NAME` for the full docstring)",
                  show_lines=True)
    table.add_column("scheme", style="bold", no_wrap=True)
    table.add_column("summary / [dim]formula[/]", ratio=3)
    table.add_column("parameters (defaults) / [dim]not taken[/]", ratio=2)
    table.add_column("σw²", justify="right", no_wrap=True)
    table.add_column("χ*", justify="right", no_wrap=True)
    for r in rows:
        table.add_row(r.name, f"{escape(r.summary)}\n[dim]{escape(r.formula)}[/]",
                      f"{escape(r.params)}\n[dim]not: {r.not_taken}[/]",
                      _number(r.sigma_w2, "data" if r.data_dependent else ""), _number(r.chi))
    console.print(table)
    console.print("[dim]χ* < 1: gradients vanish with depth; > 1: they explode; '-': theory does "
                  "not apply (data-dependent or non-zero-mean weights) or there is no critical "
                  "point.[/]")
