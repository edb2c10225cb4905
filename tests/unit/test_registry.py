"""The registry helper (`winit_cli.registry`) and the registries built with it: an unknown name
fails in one line with the sorted known names, a name registers once, a test's own entry leaves
when its block ends, and entries keep the order they were registered in."""

from __future__ import annotations

import pytest

from winit_cli.datasets import DATASETS
from winit_cli.errors import ConfigError
from winit_cli.inits import SCHEMES
from winit_cli.measure.quantities import QUANTITIES
from winit_cli.models import MODELS
from winit_cli.registry import Registry
from winit_cli.sweeps.executors import EXECUTORS, ExecutorOptions, make_executor


def fruit() -> Registry[int]:
    registry: Registry[int] = Registry("fruit")
    for value, name in enumerate(("pear", "apple", "quince")):
        registry.add(name, value)
    return registry


def test_unknown_name_lists_the_known_names_sorted() -> None:
    with pytest.raises(ConfigError) as err:
        fruit().lookup("aple", where="basket.fruit")
    assert str(err.value) == ("basket.fruit: unknown fruit 'aple'; did you mean 'apple'? "
                              "known: apple, pear, quince")
    with pytest.raises(ConfigError, match=r"^--fruit: unknown fruit 'kiwi'; known: apple, "):
        fruit().lookup("kiwi", where="--fruit")


def test_a_long_unknown_name_is_shortened() -> None:
    """A megabyte of YAML in a name is quoted as a clipped value, never whole."""
    with pytest.raises(ConfigError) as err:
        fruit().lookup("x" * 20_000, where="basket.fruit")
    assert "(20,002 chars)" in str(err.value) and len(str(err.value)) < 200


def test_unknown_takes_a_registrys_own_suggestion_and_note() -> None:
    """A registry with more to say (the schemes' aliases, a suggestion by meaning) uses the same
    message."""
    err = fruit().unknown("malus", "basket.fruit", "apple", also="aliases: malus_domestica")
    assert str(err) == ("basket.fruit: unknown fruit 'malus'; did you mean 'apple'? "
                        "known: apple, pear, quince (aliases: malus_domestica)")


def test_a_name_registers_once() -> None:
    """A copy-pasted entry fails at import instead of replacing the first without a word."""
    registry = fruit()
    with pytest.raises(ValueError, match="fruit 'apple' is registered twice"):
        registry.add("apple", 99)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("pear")(99)
    assert registry["apple"] == 1 and registry["pear"] == 0


def test_the_decorator_registers_and_returns_what_it_decorates() -> None:
    registry: Registry[type] = Registry("shape")

    @registry.register("square")
    class Square:
        pass

    assert registry["square"] is Square and registry.lookup("square", "x") is Square


def test_a_temporary_entry_leaves_when_its_block_ends() -> None:
    """What a test registers (a quantity, a model kind) is gone afterwards, even on failure, and
    the order of the rest is untouched."""
    registry = fruit()
    with registry.temporarily("fig", 7) as entry:
        assert entry == 7 and registry["fig"] == 7 and list(registry)[-1] == "fig"
    assert "fig" not in registry and list(registry) == ["pear", "apple", "quince"]
    with pytest.raises(RuntimeError), registry.temporarily("fig", 7):
        raise RuntimeError
    assert "fig" not in registry
    with pytest.raises(ValueError, match="registered twice"), registry.temporarily("pear", 7):
        pass
    assert registry["pear"] == 0  # a refused temporary entry removes nothing


def test_a_registry_reads_as_a_mapping_in_registration_order() -> None:
    """The order entries were registered in is the order users see (`winit schemes`) and files
    keep (layers.csv's columns), so iteration must not sort."""
    registry = fruit()
    assert list(registry) == ["pear", "apple", "quince"]
    assert list(registry.items()) == [("pear", 0), ("apple", 1), ("quince", 2)]
    assert list(registry.values()) == [0, 1, 2] and len(registry) == 3
    assert "apple" in registry and "kiwi" not in registry and registry.get("kiwi") is None
    assert {**registry} == {"pear": 0, "apple": 1, "quince": 2}
    assert registry.remove("apple") == 1 and list(registry) == ["pear", "quince"]


@pytest.mark.parametrize("registry", [SCHEMES, DATASETS, MODELS, EXECUTORS, QUANTITIES],
                         ids=["schemes", "datasets", "models", "executors", "quantities"])
def test_the_registries_are_built_with_the_helper(registry) -> None:
    assert isinstance(registry, Registry) and len(registry) > 0


def test_unknown_executor_lists_the_known_ones() -> None:
    """(The other registries' messages are tested beside them: test_inits, test_models,
    test_datasets_registry.)"""
    with pytest.raises(ConfigError) as err:
        make_executor("rey", ExecutorOptions())
    assert str(err.value) == ("--executor: unknown executor 'rey'; did you mean 'ray'? "
                              f"known: {', '.join(sorted(EXECUTORS))}")
    assert sorted(EXECUTORS) == ["local", "ray"]
