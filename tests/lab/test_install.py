"""The README's main-job command installs every package that an experiment's run imports.

Reads the main-job command from README.md (the extras it installs), resolves the declared
dependencies of the package plus those extras in ``pyproject.toml`` (and, transitively, of the
installed distributions they require), then walks the source of every experiment module and of
every metalab module it imports (imports inside functions included) and checks that each
third-party import is provided by one of those distributions. A run that needs a package the
main-job command does not install (``libpysal`` for spacegan once did) fails here, in CI, rather
than on a user's fresh machine.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import importlib.util
import re
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import metalab.experiments as experiments_pkg

ROOT = Path(__file__).resolve().parents[2]


def _readme_command(marker: str) -> str:
    for line in (ROOT / "README.md").read_text().splitlines():
        if "pip install" in line and marker in line:
            return line.strip()
    raise AssertionError(f"README.md has no install command containing {marker!r}")


def _extras(command: str) -> list[str]:
    m = re.search(r"pip install -e \"?\.\[([^\]]*)\]", command)
    return [e.strip() for e in m.group(1).split(",")] if m else []


def _declared(extras: list[str]) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    optional = project.get("optional-dependencies", {})
    for e in extras:
        assert e in optional, f"README installs extra {e!r}, which pyproject.toml lacks"
        reqs += optional[e]
    return {canonicalize_name(Requirement(r).name) for r in reqs}


def _closure(names: set[str]) -> set[str]:
    """Distributions installed with ``names`` (their unconditional requirements, recursively)."""
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for r in requires:
            req = Requirement(r)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            stack.append(canonicalize_name(req.name))
    return seen


@cache
def _providers() -> dict[str, set[str]]:
    return {
        mod: {canonicalize_name(d) for d in dists}
        for mod, dists in md.packages_distributions().items()
    }


def _imports(path: Path, modname: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = modname if path.name == "__init__.py" else modname.rpartition(".")[0]
    found = set()
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
    return found


def _third_party(modname: str) -> dict[str, str]:
    """Top-level third-party imports reachable from ``modname`` -> the metalab module that
    imports it."""
    out: dict[str, str] = {}
    seen: set[str] = set()
    stack = [modname]
    while stack:
        m = stack.pop()
        if m in seen:
            continue
        seen.add(m)
        spec = importlib.util.find_spec(m)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        for imp in _imports(Path(spec.origin), m):
            top = imp.split(".")[0]
            if top == "metalab":
                try:
                    if importlib.util.find_spec(imp) is not None:
                        stack.append(imp)
                except (ImportError, ValueError):
                    pass  # ``from metalab.x import name``: name is not a module
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                out.setdefault(top, m)
    return out


def _experiment_modules() -> list[str]:
    import pkgutil

    skip = {"base", "registry", "stats_helpers"}
    return [
        f"{experiments_pkg.__name__}.{i.name}"
        for i in pkgutil.iter_modules(experiments_pkg.__path__)
        if not i.name.startswith("_") and i.name not in skip
    ]


MAIN_JOB = _readme_command("metalab reproduce")
INSTALLED = _closure(_declared(_extras(MAIN_JOB)))


def test_main_job_command_installs_the_extras_it_needs():
    assert "metalab reproduce" in MAIN_JOB
    assert {"ray", "atari"} <= set(_extras(MAIN_JOB)), MAIN_JOB


@pytest.mark.parametrize("module", _experiment_modules() + ["metalab.lab.cli"])
def test_every_import_is_installed_by_the_main_job(module):
    missing = []
    for top, where in sorted(_third_party(module).items()):
        dists = _providers().get(top, set())
        if not dists & INSTALLED:
            missing.append(f"{top} (imported by {where}; provided by {sorted(dists) or '?'})")
    assert not missing, (
        f"{module} needs packages the README's main-job command ({MAIN_JOB}) does not "
        f"install: {', '.join(missing)}; add them to the dependencies or to an extra it installs"
    )
