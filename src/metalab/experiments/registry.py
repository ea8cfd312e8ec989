"""Collects every experiment module's ``EXPERIMENT`` by name.

Experiment modules live in :mod:`metalab.experiments` (one module per reproduction) and are
discovered automatically, so adding a reproduction never edits a shared list. Extra modules
(e.g. a user's own experiments, or test fixtures) are imported from the comma-separated
environment variable ``METALAB_PLUGINS``.

A module that fails to import (a missing optional extra, say) does not break the others: it
is recorded in :func:`unavailable` with the reason, and ``metalab list`` shows it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil

from metalab.experiments.base import Experiment

_SKIP = {"base", "registry", "stats_helpers"}
_REGISTRY: dict[str, Experiment] = {}
_UNAVAILABLE: dict[str, str] = {}
_MODULES: dict[str, str] = {}
_LOADED = False


def register(exp: Experiment) -> Experiment:
    """Register an experiment (idempotent for the same object); returns it."""
    old = _REGISTRY.get(exp.name)
    if old is not None and old is not exp and old.run is not exp.run:
        raise ValueError(f"experiment name {exp.name!r} is registered twice")
    _REGISTRY[exp.name] = exp
    return exp


def _import(modname: str) -> None:
    try:
        mod = importlib.import_module(modname)
    except ImportError as e:  # an optional extra is not installed
        _UNAVAILABLE[modname.rsplit(".", 1)[-1]] = f"{type(e).__name__}: {e}"
        return
    exp = getattr(mod, "EXPERIMENT", None)
    found = [exp] if isinstance(exp, Experiment) else []
    found += list(getattr(mod, "EXPERIMENTS", ()))
    for e in found:
        register(e)
        _MODULES[e.name] = modname


def load_all() -> dict[str, Experiment]:
    """Import every experiment module once; return the registry (name -> Experiment)."""
    global _LOADED
    if not _LOADED:
        import metalab.experiments as pkg

        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            if info.name.startswith("_") or info.name in _SKIP:
                continue
            _import(f"{pkg.__name__}.{info.name}")
        for modname in filter(None, os.environ.get("METALAB_PLUGINS", "").split(",")):
            _import(modname.strip())
        _LOADED = True
    return dict(sorted(_REGISTRY.items()))


def get(name: str) -> Experiment:
    """Look up one experiment; a KeyError names the registered ones.

    Tries the conventional module first (``"optimistic-mg"`` lives in ``optimistic_mg.py``)
    so that running one experiment does not import every other one.
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    modname = name.replace("-", "_")
    if modname.isidentifier() and modname not in _SKIP and not _LOADED:
        import metalab.experiments as pkg

        if importlib.util.find_spec(f"{pkg.__name__}.{modname}") is not None:
            _import(f"{pkg.__name__}.{modname}")
            if name in _REGISTRY:
                return _REGISTRY[name]
    reg = load_all()
    if name not in reg:
        allowed = ", ".join(reg) or "(none)"
        raise KeyError(f"unknown experiment {name!r}; registered: {allowed}")
    return reg[name]


def unavailable() -> dict[str, str]:
    """Experiment modules that could not be imported, with the reason."""
    load_all()
    return dict(_UNAVAILABLE)


def modules_of(name: str) -> tuple[str, ...]:
    """Modules whose source defines experiment ``name`` (its module and its ``run``'s)."""
    exp = get(name)
    mods = {exp.run.__module__, exp.verdict.__module__}
    if name in _MODULES:
        mods.add(_MODULES[name])
    return tuple(sorted(mods))
