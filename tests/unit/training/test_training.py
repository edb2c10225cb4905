"""The training loop's contract with its callers: members trained together share SHARED_KEYS."""

from __future__ import annotations

import pytest

from winit_cli.config import validate
from winit_cli.errors import ConfigError
from winit_cli.training.loop import SHARED_KEYS, check_shared, train


def config(name: str, **sections):
    return validate({"name": name, **sections})


@pytest.mark.parametrize(("other", "key"), [
    ({"model": {"depth": 4}}, "model.depth"),
    ({"model": {"kind": "mlp", "activation": "tanh"}}, "model.activation"),
    ({"train": {"lr": 0.1}, "data": {"subset": 100}}, "train.lr"),  # the first that differs
    ({"data": {"subset": 100}, "record": {"every": 5}}, "data.subset"),
    ({"record": {"every": 5}}, "record.every"),
])
def test_members_that_differ_in_a_shared_key_are_refused(other, key):
    with pytest.raises(ConfigError) as e:
        check_shared([config("a"), config("a2"), config("b", **other)])
    assert str(e.value).startswith(f"{key}: configs 'a' and 'b' differ, but members trained "
                                   f"together must share {', '.join(SHARED_KEYS)}")


def test_what_members_may_differ_in():
    """Scheme, its parameters, seed and weight decay are per member."""
    check_shared([config("a"), config("b", init={"scheme": "normal", "params": {"std": 0.1}},
                                      train={"seed": 3, "weight_decay": 1e-4})])


def test_train_checks_before_it_touches_data():
    """train() itself refuses a mixed group (the splits are never read: None will do)."""
    with pytest.raises(ConfigError, match=r"^model\.width: "):
        train([config("a"), config("b", model={"width": 8})], splits=None)
