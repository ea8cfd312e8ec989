"""Code version of an experiment: a hash of the source it depends on.

The store keys results by this version so that a change to an experiment, or to any metalab
module it imports (directly or transitively), makes the lab recompute its seeds, while a change
elsewhere in the library leaves them valid. The lab itself is not part of the hash: it does not
change what a seed computes.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache

import metalab


def _source_path(modname: str) -> str | None:
    try:
        spec = importlib.util.find_spec(modname)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return spec.origin


def _metalab_imports(path: str, modname: str) -> set[str]:
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read(), filename=path)
    found: set[str] = set()
    package = modname if path.endswith("__init__.py") else modname.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {
        m
        for m in found
        if m.startswith("metalab") and not m.startswith("metalab.lab") and _source_path(m)
    }


@cache
def code_version(*modnames: str) -> str:
    """``<package version>+<12 hex digits>`` over the sources ``modnames`` depend on."""
    seen: dict[str, str] = {}
    stack = list(modnames)
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        path = _source_path(m)
        if path is None:
            continue
        seen[m] = path
        stack.extend(_metalab_imports(path, m) - seen.keys())
    h = hashlib.sha256()
    for m in sorted(seen):
        h.update(m.encode())
        with open(seen[m], "rb") as fh:
            h.update(fh.read())
    return f"{metalab.__version__}+{h.hexdigest()[:12]}"
