"""Hostile and broken input: YAML files (tests/corpus/yaml), special files, non-finite and
insane numbers, values given with --set. Each is refused before anything runs, with one line
on stderr that names the file or the --set option, and no output folder is created."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from cli_text import QUICKSTART, printed_lines
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.errors import ConfigError
from winit_cli.sweeps.spec import load_spec
from winit_cli.yamlfile import MAX_BYTES, MAX_NODES, load_yaml, read_yaml

CORPUS = Path(__file__).parents[2] / "corpus" / "yaml"


def refused(args: list[str], tmp_path: Path, *fragments: str) -> str:
    """Run the CLI; it must exit 2 with one error line holding `fragments`, create no output
    folder and print no traceback."""
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*args, "--set", f"output_dir={out}"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = printed_lines(result.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists()
    return lines[0]


# --- the corpus: each file, what the one line must say -----------------------------------------

CASES = {
    "duplicate_section.yaml": ("line 6", "duplicate key 'train'", "first on line 4"),
    "duplicate_key.yaml": ("line 5", "duplicate key 'depth'", "first on line 3"),
    "alias_bomb.yaml": ("expands to more than",),
    "alias_bomb_in_params.yaml": ("expands to more than",),
    "recursive_alias.yaml": ("refers to the node that contains it",),
    "deep_nesting.yaml": ("nested",),
    "not_utf8.yaml": ("not UTF-8", "0xe9"),
    "binary.yaml": ("not UTF-8",),
    "top_level_list.yaml": ("expected a mapping",),
    "inf_lr.yaml": ("train.lr", "finite"),
    "nan_std.yaml": ("init.params.std", "finite"),
    "long_value.yaml": ("init.scheme", "unknown scheme", "20,002 chars"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_corpus_config_is_refused_in_one_line(name, tmp_path):
    """Every hostile or broken config in the corpus: exit 2, one line naming the file."""
    path = CORPUS / name
    line = refused(["run", str(path)], tmp_path, str(path), *CASES[name])
    # values are shortened, never printed whole (the rest is the lists of known schemes)
    assert len(line) < 600 and "x" * 200 not in line


def test_every_corpus_file_has_a_case():
    """A file added to the corpus without an expected message would test nothing."""
    sweeps = {"sweep_bomb_base.yaml", "sweep_inline_bomb.yaml"}
    assert {p.name for p in CORPUS.glob("*.yaml")} == set(CASES) | sweeps


def test_pyyaml_really_drops_the_first_duplicate_section():
    """The premise of refusing duplicates: plain safe_load keeps only the second `train:`."""
    text = (CORPUS / "duplicate_section.yaml").read_text()
    assert yaml.safe_load(text)["train"] == {"steps": 4}  # lr 0.5 silently gone


def test_alias_bomb_is_refused_before_it_is_expanded():
    """The bomb is measured on the node graph: refused at once, without building 10^8 strings
    (a plain safe_load builds shared references, but anything that walks them explodes)."""
    with pytest.raises(yaml.YAMLError, match=f"more than {MAX_NODES:,}"):
        load_yaml((CORPUS / "alias_bomb.yaml").read_text())
    # Aliases that expand to a sane size stay allowed (anchors are a real YAML feature).
    text = "base: &b {depth: 3, width: 8}\nmodel:\n  <<: *b\n  width: 16\n"
    assert load_yaml(text)["model"] == {"depth": 3, "width": 16}


@pytest.mark.parametrize("name", ["sweep_bomb_base.yaml", "sweep_inline_bomb.yaml"])
def test_sweep_with_a_bomb_is_refused_even_for_a_dry_run(name, tmp_path):
    """An alias bomb in a sweep's base (a file it names, or inline) stops `compare --dry-run`
    at once: the spec is read through the same bounded loader."""
    refused(["compare", "schemes", "--sweep", str(CORPUS / name), "--dry-run"], tmp_path,
            "expands to more than")


def test_special_files_are_refused(tmp_path):
    """/dev/zero and a FIFO would be read forever (the FIFO test runs in a thread so a
    regression hangs only until the join times out, not the suite)."""
    refused(["run", "/dev/zero"], tmp_path, "/dev/zero", "(a device)")
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    outcome: list = []
    worker = threading.Thread(target=lambda: outcome.append(_error(fifo)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert outcome and "(a FIFO)" in outcome[0]


def _error(path: Path) -> str:
    try:
        read_yaml(path, "config")
    except ConfigError as e:
        return str(e)
    return "read"


def test_oversized_config_is_refused(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "# padding\n" * (MAX_BYTES // 10 + 1))
    refused(["run", str(big)], tmp_path, str(big), f"at most {MAX_BYTES:,}")


def test_sweep_file_rules_match_config_rules(tmp_path):
    """The sweep reader is the config reader: duplicates and bad bytes fail the same way."""
    dup = tmp_path / "sweep.yaml"
    dup.write_text("name: s\ngrid:\n  model.depth: [3]\ngrid:\n  model.depth: [4]\n")
    with pytest.raises(ConfigError, match="duplicate key 'grid'"):
        load_spec(dup)
    dup.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_spec(dup)
    dup.write_text("name: s\nseeds: 1000000000000\n")  # would be list(range(10^12))
    with pytest.raises(ConfigError, match="seeds must be"):
        load_spec(dup)


# --- numbers: finite and sane before anything runs ----------------------------------------------

QUICK = str(QUICKSTART)


@pytest.mark.parametrize(("override", "fragments"), [
    ("train.lr=.inf", ("train.lr", "finite")),
    ("train.lr=.nan", ("train.lr", "finite")),
    ("train.weight_decay=.inf", ("train.weight_decay", "finite")),
    ("train.momentum=.nan", ("train.momentum", "finite")),
    ("record.checkpoint_seconds=.inf", ("record.checkpoint_seconds", "finite")),
    ("diagnose.vanish_decades=1e308", ("diagnose.vanish_decades", "100")),
    ("init.params.gain=-1", ("init.params.gain", "> 0")),
    ("init.params.gain=.nan", ("init.params.gain", "finite")),
])
def test_insane_numbers_are_refused_and_blamed_on_set(override, fragments, tmp_path):
    """Every float in the schema and in scheme parameters: finite and in range, checked at
    validation; the message blames the --set option that gave it, not the file."""
    refused(["run", QUICK, "--set", override], tmp_path, f"--set {override}", *fragments)


@pytest.mark.parametrize("std", [".inf", ".nan", "1e300", "-1"])
def test_normal_std_must_be_finite_and_sane(std, tmp_path):
    refused(["run", QUICK, "--set", "init.scheme=normal", "--set", f"init.params.std={std}"],
            tmp_path, "init.params.std")


def test_gelu_with_a_huge_std_never_starts(tmp_path):
    """Once left on "running" after its files were saved: now refused before any folder."""
    refused(["run", QUICK, "--set", "model.activation=gelu", "--set", "init.scheme=normal",
             "--set", "init.params.std=1e99"], tmp_path, "init.params.std", "1e+06")


def test_set_errors_blame_the_option_and_file_errors_the_file(tmp_path):
    """The same bad key: from --set it names the option, from the file it names the file."""
    refused(["run", QUICK, "--set", "model.depht=3"], tmp_path, "--set model.depht=3",
            "did you mean 'depth'")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  depht: 3\n")
    line = refused(["run", str(bad), "--set", "model.width=8"], tmp_path, str(bad))
    assert "--set" not in line


def test_alias_bomb_in_a_set_value_is_refused(tmp_path):
    """--set values are YAML too, read by the same bounded loader (10^7 values here)."""
    levels = ", ".join(f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 7))
    bomb = f"{{l0: &l0 [1,1,1,1,1,1,1,1,1,1], {levels}}}"
    refused(["run", QUICK, "--set", f"init.params={bomb}"], tmp_path, "--set init.params",
            "expands to more than")


@pytest.mark.integration
def test_reading_a_bomb_takes_no_memory():
    """In a fresh interpreter: reading the corpus bomb leaves peak memory (VmHWM: ru_maxrss
    would include the forked pytest) far below what its expansion would take (10^8 references:
    gigabytes)."""
    code = ("from winit_cli.yamlfile import read_yaml\n"
            "from winit_cli.errors import ConfigError\n"
            f"try:\n    read_yaml({str(CORPUS / 'alias_bomb.yaml')!r})\n"
            "except ConfigError as e:\n    print(e)\n"
            "print(next(line.split()[1] for line in open('/proc/self/status')\n"
            "           if line.startswith('VmHWM')))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    message, peak_kb = proc.stdout.strip().splitlines()
    assert "expands to more than" in message
    assert int(peak_kb) < 100_000  # under 100 MB
