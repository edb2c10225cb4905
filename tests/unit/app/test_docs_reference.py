"""The docs site: its configs and schemes pages are written from the code (winit_cli/app/
reference.py, through the MkDocs hook docs/hooks/generate.py) and name every config key and every
scheme; every script-written block has its markers in exactly one page, where
scripts/docblocks.py finds it; every page of the nav exists."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from winit_cli.app.reference import (
    GENERATORS,
    config_keys,
    config_reference,
    fill_markers,
    scheme_reference,
)
from winit_cli.config import Config
from winit_cli.inits import SCHEMES
from winit_cli.inits.aliases import ALIASES

REPO = Path(__file__).resolve().parents[3]
DOCS = REPO / "docs"
sys.path.insert(0, str(REPO / "scripts"))

import docblocks  # noqa: E402


def _fields(model: type[BaseModel] = Config, prefix: str = ""):
    for name, field in model.model_fields.items():
        yield prefix + name, field
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from _fields(annotation, f"{prefix}{name}.")


def test_every_config_field_has_a_description():
    """The reference shows each key's description: a key without one would be a bare row."""
    missing = [key for key, field in _fields() if not (field.description or "").strip()]
    assert not missing, f"add Field(description=...) in winit_cli/config.py for: {missing}"


def test_the_config_reference_names_every_key_with_its_default_and_description():
    text = config_reference()
    keys = config_keys()
    assert {"record.jacobian", "record.jacobian_inputs", "train.threads"} <= set(keys)
    for key, field in _fields():
        section = isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
        if section:
            assert f"### `{key}`" in text, key
            continue
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
        words = re.sub(r"\\(.)", r"\1", row)  # the reference escapes _ * [ ] for Markdown
        assert field.description in words, key
        default = field.get_default(call_default_factory=True)
        if isinstance(default, int | float) and not isinstance(default, bool):
            assert f"`{default}`" in row, key


def test_the_config_reference_lists_allowed_values():
    text = config_reference()
    activation = next(line for line in text.splitlines() if line.startswith("| `model.activation`"))
    for name in ("relu", "tanh", "gelu", "linear"):
        assert f"`{name}`" in activation
    scheme = next(line for line in text.splitlines() if line.startswith("| `init.scheme`"))
    assert all(f"`{name}`" in scheme for name in SCHEMES)
    depth = next(line for line in text.splitlines() if line.startswith("| `model.depth`"))
    assert "> 0" in depth


def test_the_scheme_reference_documents_every_scheme():
    """Each registered scheme: a section, its formula, every parameter with its default, every
    alias, and its docstring's first paragraph; a row in the summary table."""
    text = scheme_reference()
    for name, scheme in SCHEMES.items():
        assert f"| [`{name}`](#{name.replace('_', '-')}) |" in text, name
        start = text.index(f"### `{name}`")
        section = text[start:text.find("\n### ", start + 1)]
        assert f"`{scheme.formula}`" in section, name
        for param in scheme.defaults:
            assert f"`{param}` = `" in section, (name, param)
        first = " ".join(scheme.doc.split("\n\n")[0].split())
        assert first in re.sub(r"\\(.)", r"\1", section), name
    for alias, target in ALIASES.items():
        start = text.index(f"### `{target}`")
        assert f"`{alias}`" in text[start:text.find("\n### ", start + 1)], alias


def test_markers_are_replaced_and_an_unknown_one_is_refused():
    page = "# Configs\n\n<!-- winit:config-reference -->\n\nafter\n"
    filled = fill_markers(page)
    assert "<!-- winit:" not in filled and "| `model.depth` |" in filled
    assert filled.endswith("\n\nafter\n")
    with pytest.raises(ValueError, match="winit:config-refrence"):
        fill_markers("<!-- winit:config-refrence -->\n")


def test_each_generated_reference_has_its_page():
    found = {name: [p.name for p in DOCS.glob("*.md")
                    if f"<!-- winit:{name} -->" in p.read_text()] for name in GENERATORS}
    assert found == {"config-reference": ["configs.md"], "schemes-reference": ["schemes.md"]}


def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs" and config["hooks"] == ["docs/hooks/generate.py"]
    pages = [next(iter(entry.values())) for entry in config["nav"]]
    assert all((DOCS / page).is_file() for page in pages), pages
    assert sorted(pages) == sorted(p.name for p in DOCS.glob("*.md"))


# Blocks written by scripts other than readme_results.py (tests/test_readme_results.py has its).
SCRIPT_BLOCKS = {
    "scripts/planted_bugs.py": [docblocks.results_markers("planted")],
    "scripts/mutation.py": [docblocks.results_markers("mutation")],
    "benchmarks/bench_train.py": [("<!-- bench_train:start -->", "<!-- bench_train:end -->")],
    "benchmarks/bench_cli.py": [("<!-- bench_cli:start -->", "<!-- bench_cli:end -->")],
    "benchmarks/bench_watch.py": [(f"<!-- bench_watch:{d}:start -->",
                                   f"<!-- bench_watch:{d}:end -->") for d in ("cpu", "cuda")],
}


@pytest.mark.parametrize("script", SCRIPT_BLOCKS)
def test_every_script_written_block_is_in_exactly_one_page(script):
    for start, end in SCRIPT_BLOCKS[script]:
        assert docblocks.page_of(start, end).parent == DOCS, start


def test_a_block_is_rewritten_in_the_page_that_holds_it(tmp_path: Path):
    """Only what lies between the markers changes, in whichever page holds them; a block in no
    page, or in two, is refused before anything is written."""
    (tmp_path / "a.md").write_text("# A\n\nbefore\n<!-- results:x -->\nold\nlines\n"
                                   "<!-- /results:x -->\n\nafter\n")
    (tmp_path / "b.md").write_text("# B\n")
    page = docblocks.rewrite_block(*docblocks.results_markers("x"), "new\n", docs=tmp_path)
    assert page == tmp_path / "a.md"
    assert page.read_text() == ("# A\n\nbefore\n<!-- results:x -->\nnew\n<!-- /results:x -->\n"
                                "\nafter\n")
    assert (tmp_path / "b.md").read_text() == "# B\n"
    with pytest.raises(SystemExit, match="no page"):
        docblocks.page_of(*docblocks.results_markers("y"), docs=tmp_path)
    (tmp_path / "c.md").write_text("<!-- results:x -->\n<!-- /results:x -->\n")
    with pytest.raises(SystemExit, match=r"a\.md, .*c\.md"):
        docblocks.rewrite_block(*docblocks.results_markers("x"), "z", docs=tmp_path)
