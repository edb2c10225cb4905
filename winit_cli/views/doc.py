"""A small document model for the report: headings, paragraphs, lists, images and tables,
written out as Markdown (report.md) and as one self-contained HTML page (report.html, images
embedded as data URIs, so the page can be mailed or archived alone)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path


class Doc:
    """A few block types, written out as Markdown and as self-contained HTML: headings ("h",
    level, text), paragraphs ("p"), lists ("ul"), figures ("img", path, alt text, caption),
    tables ("table", header, rows) and the contents ("toc": the level 2 and 3 headings after
    it, linked)."""

    def __init__(self) -> None:
        self.blocks: list[tuple] = []

    def add(self, kind: str, *content) -> None:
        self.blocks.append((kind, *content))

    def _headings(self) -> list[tuple[int, str, str]]:
        """(level, text, anchor) of the headings the contents list: levels 2 and 3."""
        seen: dict[str, int] = {}
        out = []
        for kind, *c in self.blocks:
            if kind == "h":
                anchor = _anchor(c[1], seen)
                if c[0] in (2, 3):
                    out.append((c[0], c[1], anchor))
        return out

    def _figures(self) -> dict[int, int]:
        """Figure numbers by block index."""
        return {i: n for n, i in enumerate(
            (i for i, b in enumerate(self.blocks) if b[0] == "img"), start=1)}

    def markdown(self) -> str:
        out = []
        numbers = self._figures()
        for i, (kind, *c) in enumerate(self.blocks):
            if kind == "h":
                out.append(f"{'#' * c[0]} {c[1]}")
            elif kind == "p":
                out.append(c[0])
            elif kind == "ul":
                out.append("\n".join(f"- {item}" for item in c[0]))
            elif kind == "toc":
                out.append("\n".join(f"{'  ' * (level - 2)}- [{text}](#{anchor})"
                                      for level, text, anchor in self._headings()))
            elif kind == "img":
                out.append(f"![{c[1]}]({c[0]})\n\n*Figure {numbers[i]}: {c[2]}*")
            elif kind == "table":
                cells = [[str(x).replace("|", "\\|") for x in row] for row in [c[0], *c[1]]]
                out += ["\n".join(["| " + " | ".join(cells[0]) + " |",
                                   "|" + "---|" * len(cells[0]),
                                   *("| " + " | ".join(r) + " |" for r in cells[1:])])]
        return "\n\n".join(out) + "\n"

    def html(self, base: Path) -> str:
        body = []
        seen: dict[str, int] = {}
        numbers = self._figures()
        for i, (kind, *c) in enumerate(self.blocks):
            if kind == "h":
                body.append(f'<h{c[0]} id="{_anchor(c[1], seen)}">{_inline(c[1])}</h{c[0]}>')
            elif kind == "p":
                body.append(f"<p>{_inline(c[0])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in c[0]) + "</ul>")
            elif kind == "toc":
                items = "".join(f'<li class="toc{level}"><a href="#{anchor}">{_inline(text)}</a>'
                                "</li>" for level, text, anchor in self._headings())
                body.append(f'<nav><p><strong>Contents</strong></p><ul>{items}</ul></nav>')
            elif kind == "img":
                data = base64.b64encode((base / c[0]).read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(c[1])}" title="click to enlarge" '
                            f'src="data:image/png;base64,{data}"><figcaption>Figure '
                            f"{numbers[i]}: {_inline(c[2])}</figcaption></figure>")
            elif kind == "table":
                numeric = [all(NUMBER.match(str(r[j])) or str(r[j]) == "-" for r in c[1])
                           for j in range(len(c[0]))]
                head = "".join(f'<th class="{_kind(n)}">{_breakable(str(x))}</th>'
                               for x, n in zip(c[0], numeric, strict=True))
                # cells repeat (statuses, verdicts, labels, seeds): each text is marked up once
                seen: dict[tuple[str, bool], str] = {}
                rows = "".join("<tr>" + "".join(
                    seen.get((x, n)) or seen.setdefault((x, n), _cell(x, n))
                    for x, n in zip(map(str, r), numeric, strict=True)) + "</tr>" for r in c[1])
                # A table wider than the page scrolls in its own box, never the page.
                body.append(f'<div class="wide"><table><thead><tr>{head}</tr></thead>'
                            f"<tbody>{rows}</tbody></table></div>")
        return HTML.format(body="\n".join(body))


def _anchor(text: str, seen: dict[str, int]) -> str:
    """A heading's id, as GitHub makes them (lower case, punctuation dropped, spaces to
    hyphens), numbered when repeated, so that report.md's contents links work there too."""
    slug = re.sub(r"[^\w\- ]", "", re.sub(r"[`*]", "", text).lower()).replace(" ", "-")
    n = seen.get(slug, 0)
    seen[slug] = n + 1
    return slug if n == 0 else f"{slug}-{n}"


# A number (with sign, exponent, percent, +- spread): kept on one line. Other cells (run ids,
# labels) break only between words and after _ - / (never inside a word: "xavier_nor mal"),
# so that a long run id wraps without pushing the table past the page.
NUMBER = re.compile(r"^[+-]?[0-9.,]+(e[+-]?[0-9]+)?%?( ± [0-9.]+)?%?$")


def _kind(numeric: bool) -> str:
    return "num" if numeric else "text"


def _cell(text: str, numeric: bool) -> str:
    return f'<td class="{_kind(numeric)}">{_breakable(text) if not numeric else _inline(text)}</td>'


def _breakable(text: str) -> str:
    """Inline text with a line-break opportunity after each _ - / inside a word."""
    return re.sub(r"(?<=[A-Za-z0-9][_/-])(?=[A-Za-z0-9])", "<wbr>", _inline(text))


# *italic*: an asterisk that opens one follows a space (or the start) and a closing one is
# followed by one, so that chi* in "chi* = 1" is the quantity's name, not markup.
ITALIC = re.compile(r"(?<![\w*])\*(?=\S)([^*]+?)(?<=\S)\*(?![\w*])")


# What _inline changes: HTML's special characters and the markup below. A text without any (most
# cells of a runs table: 10,000 rows are 100,000 cells) is returned as it is.
_MARKED = re.compile(r"[&<>\"'`*^]")


def _inline(text: str) -> str:
    if not _MARKED.search(text):
        return text
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = ITALIC.sub(r"<em>\1</em>", text)
    # 10^-0.22 as a power that never breaks across lines
    return re.sub(r"10\^([+-]?[0-9]+(?:\.[0-9]+)?|x)", r'<span class="pow">10<sup>\1</sup></span>',
                  text)


# Figures are shown at the column's width; a click shows one at full size (scrolling in a
# window of its own over the page), another click or Escape closes it.
HTML = """<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>winit report</title><style>
body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
line-height:1.45;color:#222;overflow-wrap:break-word}} img{{max-width:100%;height:auto}}
code{{background:#f3f3f3;padding:0 .2em}} .pow{{white-space:nowrap}} figure{{margin:1em 0}}
figure img{{cursor:zoom-in}} figcaption{{font-size:.9em;color:#444;margin-top:.3em}}
figure.full{{position:fixed;inset:0;margin:0;background:#fff;overflow:auto;z-index:10;
padding:1em}} figure.full img{{max-width:none;cursor:zoom-out}}
nav ul{{columns:2 24em;padding-left:1.2em}} nav .toc3{{margin-left:1.2em;font-size:.9em}}
.wide{{max-width:100%;overflow-x:auto}} table{{border-collapse:collapse;font-size:.85em}}
td,th{{border:1px solid #ccc;padding:.2em .5em;overflow-wrap:normal;word-break:normal;
vertical-align:top}} th{{background:#f3f3f3}} .text{{text-align:left}}
.num{{text-align:right}} td.num{{white-space:nowrap}}
@media (max-width:900px){{table{{font-size:.75em}} td,th{{padding:.2em .3em}}}}
</style></head><body>
{body}
<script>
addEventListener('click', e => {{
  const f = e.target.closest('figure');
  if (f) f.classList.toggle('full');
}});
addEventListener('keydown', e => {{
  if (e.key === 'Escape') document.querySelectorAll('figure.full')
    .forEach(f => f.classList.remove('full'));
}});
</script>
</body></html>
"""
