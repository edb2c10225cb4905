"""The scheme aliases against what the docs promise: the table below is copied from the
documentation (docs/schemes.md's "Names and aliases" and inits/aliases.py's docstring), and a
config, `winit schemes NAME` and the docs' prose must each agree with it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.inits import SCHEMES
from winit_cli.inits.aliases import ALIASES

DOCUMENTED = {
    "he": "he_normal", "kaiming": "he_normal", "kaiming_normal": "he_normal",
    "msra": "he_normal", "kaiming_uniform": "he_uniform",
    "xavier": "xavier_uniform", "glorot": "xavier_uniform", "glorot_uniform": "xavier_uniform",
    "glorot_normal": "xavier_normal", "lecun": "lecun_normal",
    "default": "torch_default", "pytorch": "torch_default", "torch": "torch_default",
}
SCHEMES_PAGE = Path(__file__).resolve().parents[3] / "docs" / "schemes.md"


def test_the_alias_table_is_the_documented_one():
    assert ALIASES == DOCUMENTED
    assert set(DOCUMENTED.values()) <= set(SCHEMES)


def test_the_schemes_page_prose_says_what_the_table_says():
    """"`he`, `kaiming`, `kaiming_normal` and `msra` are `he_normal`; ...": every alias named in
    the prose maps to the scheme named after it."""
    section = SCHEMES_PAGE.read_text().split("## Names and aliases", 1)[1].split("\n## ", 1)[0]
    clauses = re.findall(r"((?:`\w+`(?:,| and)?\s+)+)are\s+`(\w+)`", section)
    said = {alias: target for names, target in clauses
            for alias in re.findall(r"`(\w+)`", names)}
    assert len(said) >= 7
    assert said == {alias: DOCUMENTED[alias] for alias in said}


@pytest.mark.parametrize(("alias", "scheme"), sorted(DOCUMENTED.items()))
def test_a_config_records_an_alias_under_its_scheme(alias, scheme):
    assert load_config(None, [f"init.scheme={alias}"]).init.scheme == scheme


@pytest.mark.parametrize("scheme", sorted(set(DOCUMENTED.values())))
def test_winit_schemes_lists_the_documented_aliases(scheme):
    result = CliRunner().invoke(app, ["schemes", scheme], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(line for line in result.output.splitlines()
                if line.startswith("also accepted as:"))
    listed = [a.strip() for a in line.removeprefix("also accepted as:").split(",")]
    assert listed == sorted(a for a, s in DOCUMENTED.items() if s == scheme)


def test_a_name_is_read_by_its_words_before_its_spelling():
    """MSRA-Gaussian: msra is He, gaussian is normal, so he_normal, though no spelling is close
    to it."""
    from winit_cli.inits import SCHEMES
    from winit_cli.inits.aliases import suggest

    assert suggest("MSRA-Gaussian", list(SCHEMES)) == "he_normal"


def test_the_aliases_of_a_name_built_at_run_time():
    """A scheme's name read from a file is a new string, equal to the registry's, not the same
    object."""
    from winit_cli.inits.aliases import aliases_of

    name = "".join(["he_", "normal"])
    assert aliases_of(name) == ["he", "kaiming", "kaiming_normal", "msra"]
