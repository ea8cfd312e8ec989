"""Override parsing and validation against config dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from metalab.experiments.base import file_or, param
from metalab.lab.config import ConfigError, apply_overrides, config_hash, describe_fields


@dataclass(frozen=True)
class Cfg:
    n: int = param(3, "an int", lo=1, hi=10)
    x: float = param(0.5, "a float", lo=0.0)
    flag: bool = param(False, "a bool")
    name: str = param("a", "a choice", choices=("a", "b"))
    sizes: tuple[int, ...] = param((1, 2), "a tuple", lo=1)
    pair: tuple[float, float] = param((0.0, 1.0), "a fixed pair")
    maybe: int | None = param(None, "an optional int")
    kind: Literal["x", "y"] = param("x", "a literal")
    weights: str = param("les", "named weights or a file", validator=file_or("les", suffix=".npz"))
    data: str | None = param(None, "a data file", path=True)
    wild: float = param(0.0, "accepts inf", allow_nonfinite=True)


def test_parses_every_supported_type():
    c = apply_overrides(
        Cfg(),
        [
            "n=7",
            "x=1e-3",
            "flag=true",
            "name=b",
            "sizes=4,5,6",
            "pair=(2, 3.5)",
            "maybe=4",
            "kind=y",
        ],
    )
    assert c == Cfg(
        n=7, x=1e-3, flag=True, name="b", sizes=(4, 5, 6), pair=(2.0, 3.5), maybe=4, kind="y"
    )
    assert apply_overrides(c, ["maybe=none"]).maybe is None


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("n=11", "n: got 11; must be <= 10"),
        ("n=2.5", "n: expected an integer"),
        ("n=4.0", "n: expected an integer"),
        ("n=1e30", "n: expected an integer"),
        ("maybe=100000000000000000000", "maybe: got 100000000000000000000; an int field must"),
        ("x=nan", "x: got nan; must be a finite number"),
        ("x=inf", "x: got inf; must be a finite number"),
        ("x=1e400", "x: got inf; must be a finite number"),
        ("sizes=", "sizes: got an empty list"),
        ("pair=1,nan", "pair: got nan; must be a finite number"),
        ("weights=no/such/file", "weights: got 'no/such/file': no file at 'no/such/file.npz'"),
        ("data=no/such/file.csv", "data: no file at 'no/such/file.csv'"),
        ("x=-1", "x: got -1.0; must be >= 0.0"),
        ("flag=maybe", "flag: expected a bool"),
        ("name=c", "name: got 'c'; allowed: a, b"),
        ("sizes=1,0", "sizes: got 0; must be >= 1"),
        ("pair=1,2,3", "pair: expected 2 comma-separated values"),
        ("kind=z", "kind: got 'z'; allowed: x, y"),
        ("nope=1", "unknown config field 'nope'; fields: data, flag, kind, maybe, n, name, pair"),
        ("n", "not of the form field=value"),
    ],
)
def test_bad_overrides_name_the_field_and_allowed_values(override, message):
    with pytest.raises(ConfigError) as e:
        apply_overrides(Cfg(), [override])
    assert message in str(e.value)


def test_declared_nonfinite_empty_defaults_and_existing_paths_are_accepted(tmp_path):
    f = tmp_path / "w.npz"
    f.write_bytes(b"")
    c = apply_overrides(Cfg(), ["wild=inf", f"weights={tmp_path / 'w'}", f"data={f}"])
    assert c.wild == float("inf") and c.data == str(f)
    assert apply_overrides(Cfg(), ["weights=les"]).weights == "les"


def test_hash_is_stable_and_sensitive():
    assert config_hash(Cfg()) == config_hash(Cfg())
    assert config_hash(Cfg()) != config_hash(Cfg(n=4))
    assert len(config_hash(Cfg())) == 16


def test_describe_fields_shows_docs_and_ranges():
    rows = {r[0]: r for r in describe_fields(Cfg())}
    assert "allowed range [1, 10]" in rows["n"][3]
    assert "choices: a, b" in rows["name"][3]


def test_param_rejects_mutable_defaults():
    with pytest.raises(TypeError, match="immutable"):
        param([1, 2], "a list")
