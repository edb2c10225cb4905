"""Experiment configuration: a YAML file validated by a schema, plus dotted `--set` overrides.

Every error names the file and the key path and says what would be valid, in one line:

    configs/x.yaml: model.depht: unknown key (did you mean 'depth'?)
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from winit_cli.errors import ConfigError, clip, shorten
from winit_cli.yamlfile import Refused, describe_error, load_yaml, read_yaml

__all__ = ["Config", "load_config", "load_yaml", "validate", "apply_override", "dig", "dump_yaml"]

Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid", "elu", "selu", "gelu", "linear"]
PositiveInt = Annotated[int, Field(gt=0)]


class Section(BaseModel):
    # Every float finite: `lr: .inf` or `std: .nan` would pass `gt=0` and fail mid-training.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class ModelConfig(Section):
    """The network: an MLP (or residual MLP) whose input size and classes come from the dataset."""

    kind: str = Field("mlp", description="model kind, a name in models.MODELS")
    depth: PositiveInt = Field(10, description="number of Linear layers (hidden layers + output)")
    width: PositiveInt = Field(256, description="units in every hidden layer")
    widths: list[PositiveInt] | None = Field(
        None, description="per-hidden-layer widths (depth - 1 of them); overrides width"
    )
    activation: Activation = Field("relu", description="phi, between every two Linear layers")
    bias: bool = Field(True, description="Linear layers have a bias")
    norm: Literal["none", "batch", "layer"] = Field(
        "none", description="normalization after every hidden Linear layer: Linear -> norm -> phi"
    )
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout rate on hidden activations")
    branch_layers: Literal[1, 2] = Field(
        2, description="resmlp: Linear layers per residual branch (depth = 2 + this x blocks)"
    )
    branch_scale: float = Field(1.0, description="resmlp: alpha in h_b = h_{b-1} + alpha F_b")
    learnable_scale: bool = Field(False, description="resmlp: train alpha (one per block)")
    parametrization: Literal["standard", "ntk", "mup"] = Field(
        "standard", description="how init, an output multiplier and per-layer learning rates "
                                "scale with width (mlp, resmlp): standard, ntk or mup (Yang et "
                                "al. 2021); all three agree at model.base_width")
    base_width: PositiveInt | None = Field(
        None, description="ntk, mup: the width at which the parametrization is the standard "
                          "one (its learning rate transfers from there; default: the first hidden "
                          "layer's width, model.width or model.widths[0]); "
                          "standard ignores it")

    @field_validator("activation", "norm", mode="before")
    @classmethod
    def _case_folded(cls, value: Any) -> Any:
        """`Relu`, `TANH`: names are matched whatever their case (they are all lower case)."""
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _widths_match_depth(self) -> ModelConfig:
        if self.widths is not None and len(self.widths) != self.depth - 1:
            raise ValueError(
                f"widths has {len(self.widths)} entries but depth {self.depth} needs "
                f"{self.depth - 1} (one per hidden layer)"
            )
        return self

    def hidden_widths(self) -> list[int]:
        return list(self.widths) if self.widths is not None else [self.width] * (self.depth - 1)


class InitConfig(Section):
    """How the weights start: a scheme from the registry and its parameters."""

    scheme: str = Field("he_normal", description="init scheme, a name in inits.SCHEMES or an "
                                                 "alias of one (kaiming_normal: he_normal)")
    params: dict[str, Any] = Field(
        default_factory=dict, description="the scheme's parameters (`winit schemes NAME` lists "
                                          "them with their defaults)")
    zero_last: bool = Field(
        False, description="resmlp: zero-initialise the last Linear layer of every branch"
    )


# Keys added after configs were first hashed: left out of the hash at their defaults, so that a
# config that does not use them keeps its hash (and its sweep's resume) from before they existed.
_LATER_DEFAULTS = {
    "model": {k: ModelConfig.model_fields[k].default
              for k in ("norm", "dropout", "branch_layers", "branch_scale", "learnable_scale",
                        "parametrization", "base_width")},
    "init": {"zero_last": InitConfig.model_fields["zero_last"].default},
    "record": {"coord": False}}
# The same as dotted keys: what a run's config.yaml from before these keys means by them.
LATER_DEFAULTS = {f"{section}.{k}": v for section, d in _LATER_DEFAULTS.items()
                  for k, v in d.items()}


class TrainConfig(Section):
    """The training budget and optimizer."""

    epochs: PositiveInt = Field(1, description="passes over the training split")
    steps: PositiveInt | None = Field(None, description="optimizer steps; overrides epochs")
    batch_size: PositiveInt = Field(128, description="examples per step")
    optimizer: Literal["sgd", "momentum", "adam"] = Field(
        "sgd", description="sgd, SGD with momentum (train.momentum), or Adam")
    lr: float = Field(0.01, gt=0, description="learning rate")
    momentum: float = Field(0.9, ge=0, lt=1, description="momentum of the momentum optimizer")
    weight_decay: float = Field(0.0, ge=0, description="L2 coefficient added to every weight "
                                                       "gradient (a scheme's l2 adds to it)")
    seed: int = Field(0, description="seeds the init, the batches and dropout")
    device: Literal["cpu", "cuda", "auto"] = Field(
        "cpu", description="where to train (auto: cuda if available)")
    flush_subnormals: bool = Field(
        True, description="flush subnormal floats to zero on CPU (10x faster in vanishing regimes)"
    )
    threads: PositiveInt | Literal["auto"] = Field(
        "auto", description="CPU threads: auto (the CPUs free, re-checked while training) or a "
                            "number (runs match bit for bit only at the same number)"
    )


class DataConfig(Section):
    """The dataset, held in memory, with a fixed validation split."""

    dataset: str = Field("mnist", description="a registered dataset, e.g. mnist or fashion_mnist")
    dir: Path | None = Field(
        None, description="folder holding the dataset's four IDX files (looked in first)"
    )
    val_size: int = Field(5000, ge=0, le=59_000, description="training examples held out")
    subset: PositiveInt | None = Field(None, description="use only this many training examples")


class RecordConfig(Section):
    """What is recorded, and how often (step 0 and the last step always)."""

    every: PositiveInt = Field(10, description="record layer statistics every N steps")
    eval_every: PositiveInt | None = Field(
        None, description="evaluate on the validation split every N steps (default: each epoch)"
    )
    checkpoint_seconds: float = Field(
        30.0, ge=0, description="rewrite the CSVs at most this often while training (0: every "
                                "step); a crash loses at most this much"
    )
    jacobian: bool = Field(
        False, description="at step 0, record the singular values of dz_{L-1}/dz_1 (spectrum.csv)"
    )
    jacobian_inputs: PositiveInt = Field(16, description="training inputs the Jacobian is taken at")
    tensorboard: bool = Field(
        False, description="also write TensorBoard event files into the run folder while "
                           "training (needs: pip install 'winit[tensorboard]')"
    )
    coord: bool = Field(
        False, description="also record each layer's coordinate size, mean |z_l| over batch "
                           "and units (the mup package's l1; logits for the output layer), "
                           "as layers.csv's coord column (winit widths turns it on)"
    )
    histograms: bool = Field(
        False, description="also write histograms of each layer's weights and gradients at "
                           "recorded steps to histograms.csv (log10 |x| bins)"
    )


class DiagnoseConfig(Section):
    """The verdict's thresholds (see the verdict in "What is recorded")."""

    vanish_decades: float = Field(
        2.0, gt=0, le=100, description="dL/dz shrinking by more than 10^this from output to a layer"
    )
    explode_decades: float = Field(
        2.0, gt=0, le=100, description="dL/dz growing by more than 10^this from output to a layer"
    )


class Config(Section):
    """One experiment: every key has a default, so a YAML file sets only what it changes."""

    name: str = Field("run", pattern=r"^[A-Za-z0-9_.-]+$",
                      description="the run's name, part of its folder's name")
    model: ModelConfig = Field(default_factory=ModelConfig, description="the network")
    init: InitConfig = Field(default_factory=InitConfig, description="the init scheme")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the training")
    data: DataConfig = Field(default_factory=DataConfig, description="the data")
    record: RecordConfig = Field(default_factory=RecordConfig, description="what is recorded")
    diagnose: DiagnoseConfig = Field(default_factory=DiagnoseConfig,
                                     description="the verdict's thresholds")
    output_dir: Path = Field(Path("results"), description="run folders go under this folder")

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def content_hash(self) -> str:
        """`content_hash` of the config, less what never changes a number it records."""
        d = self.to_dict()
        d["data"].pop("dir")
        d["record"].pop("checkpoint_seconds")  # when files are saved, not what is computed
        if not d["record"]["jacobian"]:  # keeps the hashes of runs made before the option
            d["record"].pop("jacobian")
            d["record"].pop("jacobian_inputs")
        d["train"].pop("threads")  # how fast, not what (to float rounding)
        d["record"].pop("tensorboard")  # another copy of what is recorded
        d["record"].pop("histograms")  # more of what is measured, never different numbers
        for section, defaults in _LATER_DEFAULTS.items():
            for key, default in defaults.items():
                if d[section].get(key) == default:
                    d[section].pop(key)
        return content_hash(d)


def content_hash(config: dict[str, Any]) -> str:
    """Identifies a run by what it computes, for CLI runs (`Config.content_hash`) and watched
    ones alike: a hash of its config, less its name and output folder (which change nothing)."""
    what = {k: v for k, v in config.items() if k not in ("name", "output_dir")}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def load_config(path: Path | None, overrides: list[str] = ()) -> Config:
    """Read `path` (or the defaults when None), apply `key.path=value` overrides, validate."""
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path), "config")
        if raw is None:  # an empty file (or only comments): most likely not the file meant
            raise ConfigError(f"{source}: empty; a config sets what it changes from the "
                              "defaults (write {} to train the defaults on purpose)")
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a mapping of sections at the top level")
    for item in overrides:
        apply_override(raw, item)
    return validate(raw, source, list(overrides))


def validate(raw: dict[str, Any], source: str = "<config>", overrides: list[str] = ()) -> Config:
    """`raw` as a Config, or a one-line ConfigError naming where the bad value came from: the
    `--set` option that set that key if there is one, else `source`."""
    try:
        config = Config.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = _blame([str(p) for p in first["loc"]], source, overrides)
        raise ConfigError(f"{where}: {describe(first)}") from None
    # Dataset names, model kinds, scheme names and parameters are checked against the registries,
    # which own them; a scheme alias (kaiming_normal) is recorded under the registry's name.
    from winit_cli.datasets import get_dataset
    from winit_cli.inits import check_init_for_model, check_scheme, get_scheme
    from winit_cli.models import get_model_kind

    if config.record.tensorboard and importlib.util.find_spec("tensorboard") is None:
        where = _blame(["record", "tensorboard"], source, overrides)
        raise ConfigError(f"{where}: record.tensorboard needs the tensorboard package: "
                          "pip install 'winit[tensorboard]'")
    try:
        get_dataset(config.data.dataset)
        get_model_kind(config.model.kind).check_config(config)
        check_scheme(config.init.scheme, config.init.params, config.model.activation)
        config.init.scheme = get_scheme(config.init.scheme).name
        check_init_for_model(config)
    except ConfigError as e:
        key = str(e).partition(":")[0]  # the registries' messages start with the key path
        loc = key.split(".") if key in _dotted_keys(Config) or key.startswith("init.") \
            else ["init", "scheme"]
        raise ConfigError(f"{_blame(loc, source, overrides)}: {e}") from None
    return config


def _dotted_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(prefix + name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= _dotted_keys(field.annotation, f"{prefix}{name}.")
    return keys


def _blame(loc: list[str], source: str, overrides: list[str]) -> str:
    """The last `--set` whose key is `loc` or contains it or lies inside it, else `source`."""
    for item in reversed(overrides):
        parts = item.partition("=")[0].strip().split(".")
        n = min(len(parts), len(loc))
        if parts[:n] == loc[:n]:
            return f"--set {clip(item)}"
    return source


def apply_override(raw: dict[str, Any], item: str) -> None:
    """`model.depth=30` sets raw['model']['depth'] = 30; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {shorten(item)}: expected key.path=value, e.g. model.depth=30")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {shorten(item)}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = load_yaml(value) if value.strip() else None
    except Refused as e:
        raise ConfigError(f"--set {key.strip()}: {describe_error(e)}") from None
    except yaml.YAMLError:
        node[parts[-1]] = value  # not YAML: the text itself (a name, a path)


def dig(raw: dict[str, Any], key: str) -> Any:
    """raw['model']['depth'] for `model.depth`, in a config as a dict (`Config.to_dict`)."""
    for part in key.split("."):
        if not isinstance(raw, dict) or part not in raw:
            raise ConfigError(f"{key}: no such config key")
        raw = raw[part]
    return raw


def describe(error: dict[str, Any]) -> str:
    """One line for a pydantic error: the dotted key path and what is wrong."""
    loc = [str(p) for p in error["loc"]]
    path = ".".join(loc) or "(top level)"
    if error["type"] == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else f" (known keys: {', '.join(known)})"
        return f"{path}: unknown key{hint}"
    if error["type"] == "literal_error":
        return f"{path}: {shorten(error['input'])} is not one of {error['ctx']['expected']}"
    message = error["msg"].removeprefix("Value error, ")
    if "input" in error and error["type"] != "missing" and not isinstance(error["input"], dict):
        return f"{path}: {message} (got {shorten(error['input'])})"
    return f"{path}: {message}"


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(part)
        annotation = field.annotation if field else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def dump_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
