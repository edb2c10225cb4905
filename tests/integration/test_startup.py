"""Start-up: the commands that train nothing answer without importing torch (about 1.2 s of a
2 s start-up on the development machine): `winit --help`, and `winit advise`, whose config
validation and theory read the scheme, model and dataset registries without it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI in this interpreter, then reports whether torch was ever imported.
RUN_THEN_REPORT = """
import json, runpy, sys
sys.argv = ["winit", *sys.argv[1:]]
try:
    runpy.run_module("winit_cli", run_name="__main__")
except SystemExit as e:
    code = e.code
else:
    code = 0
print(json.dumps({"code": code, "torch": "torch" in sys.modules}), file=sys.stderr)
"""


def run_cli(*args: str) -> tuple[dict, str]:
    proc = subprocess.run([sys.executable, "-c", RUN_THEN_REPORT, *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env={"PYTHONPATH": str(REPO),
                                                                 "PATH": "/usr/bin:/bin"})
    return json.loads(proc.stderr.strip().splitlines()[-1]), proc.stdout


@pytest.mark.parametrize("args", [["--help"], ["advise", "--help"]])
def test_help_does_not_import_torch(args):
    report, out = run_cli(*args)
    assert report == {"code": 0, "torch": False}
    assert "Usage" in out


def test_advise_does_not_import_torch():
    report, out = run_cli("advise", "configs/quickstart.yaml", "--set", "model.depth=30",
                          "--json")
    assert report == {"code": 0, "torch": False}
    verdicts = {s["scheme"]: s["verdict"] for s in json.loads(out)["schemes"]}
    assert verdicts["he_normal"] == "healthy" and verdicts["xavier_normal"] == "vanishing"
