"""Config: schema validation, one-line errors naming file and key path, --set overrides, hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from winit_cli.config import Config, dump_yaml, load_config
from winit_cli.errors import ConfigError
from winit_cli.inits import SCHEMES

REPO = Path(__file__).resolve().parents[3]
CONFIGS = sorted((REPO / "configs").glob("*.yaml")) + sorted(
    (REPO / "configs" / "schemes").glob("*.yaml"))
SWEEPS = sorted((REPO / "configs" / "sweeps").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(path: Path | None, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as err:
        load_config(path, list(overrides))
    message = str(err.value)
    assert "\n" not in message, f"error must be one line: {message!r}"
    return message


def test_repo_has_configs():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_repo_configs_validate(path: Path):
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.init.scheme in SCHEMES
    assert len(config.model.hidden_widths()) == config.model.depth - 1


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_repo_sweeps_expand_to_valid_configs(path: Path):
    from winit_cli.sweeps.spec import load_spec

    members = load_spec(path).members()
    assert len({c.content_hash() for c in members}) == len(members) > 1


def test_one_config_per_scheme_users_come_for():
    names = {p.stem for p in CONFIGS}
    assert {"normal", "xavier_uniform", "he_normal", "mean1_normal", "normal_l2"} <= names


def test_quickstart_values():
    config = load_config(REPO / "configs" / "quickstart.yaml")
    assert (config.name, config.model.depth, config.model.width) == ("quickstart", 10, 256)
    assert (config.model.activation, config.init.scheme) == ("relu", "he_normal")
    assert config.train.optimizer == "momentum"
    assert config.record.every == 10


def test_defaults_without_a_file():
    config = load_config(None)
    assert config == Config()
    assert config.train.flush_subnormals is True


# --- unknown keys -------------------------------------------------------------------------------


def test_unknown_key_did_you_mean(tmp_path: Path):
    path = write(tmp_path, "model:\n  depht: 30\n")
    assert error_of(path) == f"{path}: model.depht: unknown key (did you mean 'depth'?)"


def test_unknown_top_level_key_did_you_mean(tmp_path: Path):
    path = write(tmp_path, "modle:\n  depth: 3\n")
    message = error_of(path)
    assert message.startswith(f"{path}: modle: unknown key")
    assert "did you mean 'model'" in message


def test_unknown_key_without_close_match_lists_known_keys(tmp_path: Path):
    path = write(tmp_path, "train:\n  zzzzzz: 1\n")
    message = error_of(path)
    assert message.startswith(f"{path}: train.zzzzzz: unknown key (known keys: ")
    for key in ("batch_size", "epochs", "lr", "optimizer", "seed", "steps"):
        assert key in message


# --- types and ranges ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("yaml_text", "key_path"),
    [
        ("model:\n  depth: abc\n", "model.depth"),
        ("model:\n  depth: 2.5\n", "model.depth"),
        ("model:\n  activation: swish\n", "model.activation"),
        ("train:\n  optimizer: rmsprop\n", "train.optimizer"),
        ("train:\n  lr: fast\n", "train.lr"),
        ("model: 3\n", "model"),
        ("init:\n  params: 3\n", "init.params"),
        ("name: two words\n", "name"),
    ],
)
def test_wrong_type(tmp_path: Path, yaml_text: str, key_path: str):
    path = write(tmp_path, yaml_text)
    assert error_of(path).startswith(f"{path}: {key_path}: ")


@pytest.mark.parametrize(
    ("yaml_text", "key_path", "shown"),
    [
        ("model:\n  depth: 0\n", "model.depth", "(got 0)"),
        ("model:\n  width: -4\n", "model.width", "(got -4)"),
        ("train:\n  lr: -0.1\n", "train.lr", "(got -0.1)"),
        ("train:\n  lr: 0\n", "train.lr", "(got 0)"),
        ("train:\n  momentum: 1.0\n", "train.momentum", "(got 1.0)"),
        ("train:\n  batch_size: 0\n", "train.batch_size", "(got 0)"),
        ("data:\n  val_size: 60000\n", "data.val_size", "(got 60000)"),
        ("record:\n  every: 0\n", "record.every", "(got 0)"),
        ("diagnose:\n  vanish_decades: 0\n", "diagnose.vanish_decades", "(got 0)"),
    ],
)
def test_out_of_range(tmp_path: Path, yaml_text: str, key_path: str, shown: str):
    path = write(tmp_path, yaml_text)
    message = error_of(path)
    assert message.startswith(f"{path}: {key_path}: ")
    assert message.endswith(shown)


def test_widths_length_mismatch(tmp_path: Path):
    path = write(tmp_path, "model:\n  depth: 4\n  widths: [64, 32]\n")
    message = error_of(path)
    assert message.startswith(f"{path}: model: ")
    assert "widths has 2 entries but depth 4 needs 3" in message


def test_widths_matching_depth(tmp_path: Path):
    path = write(tmp_path, "model:\n  depth: 4\n  widths: [64, 32, 16]\n")
    assert load_config(path).model.hidden_widths() == [64, 32, 16]
    assert load_config(None, ["model.depth=3", "model.width=7"]).model.hidden_widths() == [7, 7]


def test_unknown_scheme_in_file(tmp_path: Path):
    path = write(tmp_path, "init:\n  scheme: glorious\n")
    message = error_of(path)
    assert message.startswith(f"{path}: init.scheme: unknown scheme 'glorious'")
    assert "known: " + ", ".join(sorted(SCHEMES)) + " (aliases: " in message


def test_unknown_scheme_param_in_file(tmp_path: Path):
    path = write(tmp_path, "init:\n  scheme: xavier_normal\n  params:\n    mode: fan_in\n")
    message = error_of(path)
    assert message.startswith(f"{path}: init.params.mode: ")
    assert "bias_value, gain" in message


# --- YAML itself --------------------------------------------------------------------------------


def test_invalid_yaml_names_file_and_line(tmp_path: Path):
    path = write(tmp_path, "model:\n  depth: 3\n  width: [1, 2\n")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "invalid YAML" in message
    assert " line " in message


def test_top_level_must_be_a_mapping(tmp_path: Path):
    path = write(tmp_path, "- 1\n- 2\n")
    assert "expected a mapping" in error_of(path)


def test_missing_file(tmp_path: Path):
    message = error_of(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in message and "cannot read" in message


def test_an_empty_mapping_gives_defaults(tmp_path: Path):
    """`{}` asks for the defaults on purpose; an empty file is refused (test_faults_values)."""
    assert load_config(write(tmp_path, "{}\n")) == Config()


def test_exponent_floats_are_numbers(tmp_path: Path):
    # PyYAML (YAML 1.1) reads `1e-2` as a string; a config must read it as the number it is.
    path = write(tmp_path,
                 "init:\n  scheme: normal\n  params:\n    std: 1e-2\ntrain:\n  lr: 5e-3\n")
    config = load_config(path)
    assert config.init.params == {"std": 0.01}
    assert config.train.lr == 0.005


# --- --set overrides ----------------------------------------------------------------------------


def test_set_overrides(tmp_path: Path):
    path = REPO / "configs" / "quickstart.yaml"
    config = load_config(path, ["model.depth=30", "train.lr=1e-3", "init.scheme=normal",
                                "init.params.std=1e-2", "model.bias=false", "name=other"])
    assert config.model.depth == 30
    assert config.train.lr == pytest.approx(1e-3)
    assert isinstance(config.train.lr, float)
    assert config.init.scheme == "normal" and config.init.params == {"std": 0.01}
    assert config.model.bias is False
    assert config.name == "other"
    # untouched values still come from the file
    assert config.model.width == 256 and config.train.optimizer == "momentum"


def test_set_list_value():
    config = load_config(None, ["model.depth=3", "model.widths=[8, 4]"])
    assert config.model.widths == [8, 4]


def test_set_unknown_key_did_you_mean():
    """A bad key given with --set is blamed on that option, not on the file."""
    assert error_of(None, ["model.depht=30"]) == (
        "--set model.depht=30: model.depht: unknown key (did you mean 'depth'?)"
    )


def test_set_nested_unknown_key():
    message = error_of(None, ["model.foo.bar=1"])
    assert message.startswith("--set model.foo.bar=1: model.foo: unknown key")


def test_set_into_a_value_is_an_error(tmp_path: Path):
    path = write(tmp_path, "train:\n  lr: 0.1\n")
    assert "lr is not a section" in error_of(path, ["train.lr.x=1"])


@pytest.mark.parametrize("item", ["model.depth", "=3", "  =3"])
def test_set_malformed(item: str):
    assert "expected key.path=value" in error_of(None, [item])


def test_set_out_of_range():
    assert error_of(None, ["train.lr=-1"]).startswith("--set train.lr=-1: train.lr: ")
    assert error_of(None, ["model.depth=0"]).startswith("--set model.depth=0: model.depth: ")


# --- identity -----------------------------------------------------------------------------------


def test_content_hash_ignores_name_output_dir_and_data_dir():
    base = load_config(None)
    same = load_config(None, ["name=another", "output_dir=/tmp/elsewhere", "data.dir=/x/y"])
    assert base.content_hash() == same.content_hash()
    assert len(base.content_hash()) == 64


@pytest.mark.parametrize(
    "override",
    ["model.depth=11", "train.seed=1", "init.scheme=xavier_normal", "train.lr=0.02",
     "data.subset=100", "init.params.gain=2", "data.dataset=fashion_mnist"],
)
def test_content_hash_changes_with_what_is_computed(override: str):
    assert load_config(None).content_hash() != load_config(None, [override]).content_hash()


def test_dump_yaml_round_trips(tmp_path: Path):
    config = load_config(None, ["model.depth=3", "model.widths=[8, 4]", "train.lr=1e-5",
                                "init.scheme=normal", "init.params.std=1e-7", "name=rt"])
    again = load_config(write(tmp_path, dump_yaml(config)))
    assert again == config
    assert again.content_hash() == config.content_hash()


def test_every_layer_of_the_stack_knows_the_same_activations():
    """The schema, the model builder and the theory each list the activations: keep them equal."""
    from typing import get_args

    from winit_cli.config import Activation
    from winit_cli.models import ACTIVATIONS
    from winit_cli.theory import ACTIVATIONS as THEORY

    assert set(get_args(Activation)) == set(ACTIVATIONS) == set(THEORY)


@pytest.mark.parametrize("given", ["Relu", "RELU", "relu"])
def test_activation_names_are_case_folded(given):
    """`--set model.activation=Relu` is relu: every activation name is lower case."""
    config = load_config(None, [f"model.activation={given}", "model.norm=Batch"])
    assert config.model.activation == "relu" and config.model.norm == "batch"
