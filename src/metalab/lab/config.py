"""Config overrides: parse ``field=value`` strings, validate them against the dataclass, hash.

Every error is a :class:`ConfigError` whose message names the field and what is allowed; the
CLI turns it into exit code 2 before anything is computed or written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from metalab.experiments.base import config_types


class ConfigError(ValueError):
    """A bad experiment name, preset, field, type or value."""


INT_MIN, INT_MAX = -(2**31), 2**31 - 1  # int fields become int32 arrays under jax


def _describe(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _parse_scalar(text: str, tp: Any, field: str) -> Any:
    if tp is bool:
        low = text.strip().lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{field}: expected a bool (true/false), got {text!r}")
    if tp is int:
        try:
            v = int(text.strip())
        except ValueError:
            raise ConfigError(
                f"{field}: expected an integer (digits only, e.g. 100), got {text!r}"
            ) from None
        if not INT_MIN <= v <= INT_MAX:
            raise ConfigError(f"{field}: got {v}; an int field must fit in 32 bits")
        return v
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"{field}: expected a float, got {text!r}") from None
    if tp is str:
        return text
    raise ConfigError(f"{field}: overrides of type {_describe(tp)} are not supported")


def parse_value(text: str, tp: Any, field: str) -> Any:
    """Parse one override value for a field of type ``tp`` (int, float, bool, str, tuples,
    ``X | None``)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if text.strip().lower() == "none" and len(args) < len(typing.get_args(tp)):
            return None
        errors = []
        for a in args:
            try:
                return parse_value(text, a, field)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError("; ".join(errors))
    if origin is tuple:
        args = typing.get_args(tp)
        items = [s for s in text.strip().strip("()[]").split(",") if s.strip() != ""]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_scalar(s.strip(), args[0], field) for s in items)
        if len(items) != len(args):
            raise ConfigError(f"{field}: expected {len(args)} comma-separated values, got {text!r}")
        return tuple(_parse_scalar(s.strip(), a, field) for s, a in zip(items, args, strict=True))
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        for a in allowed:
            if str(a) == text:
                return a
        raise ConfigError(f"{field}: got {text!r}; allowed: {', '.join(map(str, allowed))}")
    return _parse_scalar(text, tp, field)


def check_field(field: dataclasses.Field, value: Any) -> None:
    """Check ``value`` against the field's declared range, choices, finiteness, path and
    validator."""
    meta = field.metadata
    if isinstance(value, tuple) and not value and field.default != ():
        raise ConfigError(f"{field.name}: got an empty list; give at least one value")
    values = value if isinstance(value, tuple) else (value,)
    if not meta.get("allow_nonfinite"):
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{field.name}: got {v!r}; must be a finite number")
    choices = meta.get("choices")
    if choices is not None:
        for v in values:
            if v not in choices:
                raise ConfigError(
                    f"{field.name}: got {v!r}; allowed: {', '.join(map(str, choices))}"
                )
    lo, hi = meta.get("lo"), meta.get("hi")
    for v in values:
        if v is None or isinstance(v, str | bool):
            continue
        if lo is not None and v < lo:
            raise ConfigError(f"{field.name}: got {v!r}; must be >= {lo}" + _range(lo, hi))
        if hi is not None and v > hi:
            raise ConfigError(f"{field.name}: got {v!r}; must be <= {hi}" + _range(lo, hi))
    if meta.get("path"):
        for v in values:
            if v is not None and not Path(str(v)).expanduser().is_file():
                raise ConfigError(f"{field.name}: no file at {str(v)!r}; give an existing file")
    validator = meta.get("validator")
    if validator is not None:
        try:
            validator(value)
        except (ValueError, TypeError, OSError) as e:
            raise ConfigError(f"{field.name}: {e}") from None


def _range(lo: Any, hi: Any) -> str:
    return f" (allowed range [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}])"


def apply_overrides(config: Any, overrides: Sequence[str]) -> Any:
    """Return a copy of ``config`` with ``field=value`` overrides applied and validated."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    types_ = config_types(type(config))
    changes: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form field=value")
        name, text = item.split("=", 1)
        name = name.strip()
        if name not in fields:
            raise ConfigError(f"unknown config field {name!r}; fields: {', '.join(sorted(fields))}")
        value = parse_value(text, types_[name], name)
        check_field(fields[name], value)
        changes[name] = value
    return dataclasses.replace(config, **changes) if changes else config


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


def config_hash(config: Any) -> str:
    """A stable 16-hex-digit hash of the config's class name and field values."""
    payload = json.dumps(
        {"cls": type(config).__qualname__, "fields": config_to_dict(config)},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def describe_fields(config: Any) -> list[tuple[str, str, str, str]]:
    """``(name, type, value, doc + allowed)`` rows for help output and reports."""
    types_ = config_types(type(config))
    rows = []
    for f in dataclasses.fields(config):
        meta = f.metadata
        allowed = ""
        if meta.get("choices"):
            allowed = f" [choices: {', '.join(map(str, meta['choices']))}]"
        elif meta.get("lo") is not None or meta.get("hi") is not None:
            allowed = _range(meta.get("lo"), meta.get("hi"))
        rows.append(
            (
                f.name,
                _describe(types_[f.name]),
                repr(getattr(config, f.name)),
                meta.get("doc", "") + allowed,
            )
        )
    return rows
