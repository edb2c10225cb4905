"""The dataset registry: names, did-you-mean errors, consistent specs, and the config's
`data.dataset` validated against it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from typer.testing import CliRunner

from winit_cli.cli import app
from winit_cli.config import load_config
from winit_cli.datasets import DATASETS, get_dataset, known_datasets, register
from winit_cli.errors import ConfigError


def test_both_datasets_are_registered_with_their_own_folders() -> None:
    """mnist and fashion_mnist are registered, each with its own cache folder and constants."""
    assert known_datasets() == ["fashion_mnist", "mnist"]
    mnist, fashion = get_dataset("mnist"), get_dataset("fashion_mnist")
    assert (mnist.cache_folder, fashion.cache_folder) == ("mnist", "fashion-mnist")
    assert (mnist.mean, mnist.std) == (0.1307, 0.3081)
    assert (fashion.mean, fashion.std) == (0.2860, 0.3530)
    for spec in DATASETS.values():
        assert spec.input_size == 784 and spec.classes == 10
        assert all(m.startswith(("http://", "https://")) for m in spec.mirrors)
        assert len({f.payload_md5 for f in spec.files}) == 4


def test_unknown_name_lists_the_known_ones() -> None:
    """A typo gets a did-you-mean and the sorted list of known datasets, in one line."""
    with pytest.raises(ConfigError) as err:
        get_dataset("fashion-mnist")
    assert str(err.value) == ("data.dataset: unknown dataset 'fashion-mnist'; did you mean "
                              "'fashion_mnist'? known: fashion_mnist, mnist")
    with pytest.raises(ConfigError, match=r"unknown dataset 'cifar10'; known: fashion_mnist, "):
        get_dataset("cifar10")


def test_registering_a_name_twice_fails() -> None:
    """Two specs cannot share a name (a copy-pasted spec module would otherwise win silently)."""
    with pytest.raises(ValueError, match="registered twice"):
        register(get_dataset("mnist"))


def test_inconsistent_spec_fails_at_definition() -> None:
    """Image and label shapes that do not fit the declared image shape fail when defined."""
    mnist = get_dataset("mnist")
    with pytest.raises(ValueError, match="do not fit"):
        dataclasses.replace(mnist, name="mnist32", image_shape=(32, 32))
    with pytest.raises(ValueError, match="do not fit"):
        dataclasses.replace(mnist, test_labels=dataclasses.replace(mnist.test_labels,
                                                                   shape=(9999,)))


def test_config_accepts_registered_datasets() -> None:
    """data.dataset takes any registered name; mnist stays the default."""
    assert load_config(None).data.dataset == "mnist"
    assert load_config(None, ["data.dataset=fashion_mnist"]).data.dataset == "fashion_mnist"


def test_config_rejects_an_unknown_dataset(tmp_path: Path) -> None:
    """An unknown data.dataset is a one-line error naming the file, the key and the choices."""
    path = tmp_path / "c.yaml"
    path.write_text("data:\n  dataset: fashion\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value) == (f"{path}: data.dataset: unknown dataset 'fashion'; did you mean "
                              "'fashion_mnist'? known: fashion_mnist, mnist")


def test_cli_run_with_an_unknown_dataset_is_one_red_line(tmp_path: Path) -> None:
    """`winit run --set data.dataset=...` with a typo exits 2 with one line, before any data is
    read or any run directory made."""
    out = tmp_path / "out"
    quickstart = Path(__file__).resolve().parents[3] / "configs" / "quickstart.yaml"
    result = CliRunner().invoke(app, ["run", str(quickstart), "--set", "data.dataset=fashoin_mnist",
                                      "--set", f"output_dir={out}"], env={"COLUMNS": "200"})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output
    assert "data.dataset: unknown dataset 'fashoin_mnist'; did you mean 'fashion_mnist'?" \
        in lines[0]
    assert not out.exists()
