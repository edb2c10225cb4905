"""A small document model for the report: headings, paragraphs, lists, images and tables,
written out as Markdown (report.md) and as one self-contained HTML page (report.html, images
embedded as data URIs, so the page can be mailed or archived alone)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


class Doc:
    """A few block types, written out as Markdown and as self-contained HTML."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def add(self, kind: str, *content) -> None:
        self.blocks.append((kind, *content))

    def markdown(self) -> str:
        out = []
        for kind, *c in self.blocks:
            if kind == "h":
                out.append(f"{'#' * c[0]} {c[1]}")
            elif kind == "p":
                out.append(c[0])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in c[0]))
            elif kind == "img":
                out.append(f"![{c[1]}]({c[0]})")
            elif kind == "table":
                cells = [[str(x).replace("|", "\\|") for x in row] for row in [c[0], *c[1]]]
                out += ["\n".join(["| " + " | ".join(cells[0]) + " |",
                                   "|" + "---|" * len(cells[0]),
                                   *("| " + " | ".join(r) + " |" for r in cells[1:])])]
        return "\n\n".join(out) + "\n"

    def html(self, base: Path) -> str:
        body = []
        for kind, *c in self.blocks:
            if kind == "h":
                body.append(f"<h{c[0]}>{_inline(c[1])}</h{c[0]}>")
            elif kind == "p":
                body.append(f"<p>{_inline(c[0])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in c[0]) + "</ul>")
            elif kind == "img":
                data = base64.b64encode((base / c[0]).read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(c[1])}" '
                            f'src="data:image/png;base64,{data}"></figure>')
            elif kind == "table":
                head = "".join(f"<th>{html.escape(str(x))}</th>" for x in c[0])
                rows = "".join("<tr>" + "".join(_cell(str(x)) for x in r) + "</tr>"
                               for r in c[1])
                # A table wider than the page scrolls in its own box, never the page.
                body.append(f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
                            f"<tbody>{rows}</tbody></table></div>")
        return HTML.format(body="\n".join(body))


# A number (with sign, exponent, percent, +- spread): kept on one line; any other cell (paths,
# labels) may break anywhere, so that a long run id does not push the table past the page.
NUMBER = re.compile(r"^[+-]?[0-9.,]+(e[+-]?[0-9]+)?%?( ± [0-9.]+)?%?$")


def _cell(text: str) -> str:
    return f'<td class="{"num" if NUMBER.match(text) else "text"}">{_inline(text)}</td>'


def _inline(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"\*([^*]+)\*", r"<em>\1</em>", text)
    # 10^-0.22 as a power that never breaks across lines
    return re.sub(r"10\^([+-]?[0-9]+(?:\.[0-9]+)?|x)", r'<span class="pow">10<sup>\1</sup></span>',
                  text)


HTML = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>winit report</title><style>
body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222;overflow-wrap:break-word}} img{{max-width:100%;height:auto}}
code{{background:#f3f3f3;padding:0 .2em}} .pow{{white-space:nowrap}} figure{{margin:1em 0}}
.wide{{max-width:100%;overflow-x:auto}} table{{border-collapse:collapse;font-size:.85em}}
td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:right}}
th{{background:#f3f3f3;overflow-wrap:normal}} td.text{{text-align:left;overflow-wrap:anywhere}}
td.num{{white-space:nowrap;overflow-wrap:normal}}
@media (max-width:900px){{table{{font-size:.75em}} td,th{{padding:.2em .3em}}}}
</style></head><body>
{body}
</body></html>
"""
