"""`winit compare schemes` option errors name the option the user typed."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from winit_cli.cli import app

pytestmark = pytest.mark.unit


def test_an_unknown_scheme_names_the_schemes_option(tmp_path):
    result = CliRunner().invoke(app, ["compare", "schemes", "--schemes", "he_normal,xavier_norml",
                                      "--dry-run", "--set", f"output_dir={tmp_path}"])
    assert result.exit_code == 2
    assert "--schemes: unknown scheme 'xavier_norml'" in result.output
    assert "did you mean 'xavier_normal'" in result.output
    assert not any(tmp_path.iterdir())  # nothing planned or written
