"""Helpers shared by the lab's CLI tests (imported through conftest's sys.path entry)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent


def env() -> dict[str, str]:
    env = dict(os.environ)
    env["METALAB_PLUGINS"] = "fake_experiments"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), env.get("PYTHONPATH", "")]))
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def metalab(
    *args: str, check: bool = False, timeout: float = 300, extra_env: dict | None = None
) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "metalab.lab.cli", *args],
        env={**env(), **(extra_env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def rows(store: Path, experiment: str) -> list[tuple]:
    """Stored (seed, finished_at) rows; [] while the store's schema is still being created."""
    con = sqlite3.connect(store)
    try:
        if not con.execute("SELECT name FROM sqlite_master WHERE name='results'").fetchall():
            return []
        return con.execute(
            "SELECT seed, finished_at FROM results WHERE experiment=? ORDER BY seed", (experiment,)
        ).fetchall()
    finally:
        con.close()


def group(db: Path) -> tuple[str, str]:
    """(config_hash, code_version) of the first stored row."""
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT config_hash, code_version FROM results LIMIT 1").fetchone()
    finally:
        con.close()


def register_fakes() -> None:
    """Register the fixture experiments in this process (for in-process CLI calls)."""
    import fake_experiments

    from metalab.experiments import registry

    for exp in fake_experiments.EXPERIMENTS:
        registry.register(exp)


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``metalab ARGS`` in this process; returns (exit code, stdout, stderr)."""
    from metalab.lab.cli import main

    register_fakes()
    code = main(list(args))
    got = capsys.readouterr()
    return code, got.out, got.err


def prepare_and_claim(path: str) -> list[int]:
    """A separate process: create the store (maybe at the same moment as others) and lease up
    to 2 of seeds 0..7."""
    from metalab.lab.store import Store

    store = Store(path)
    store.prepare()
    # One owner per call, not per process: a pool may hand one worker two calls, and an owner
    # re-claiming renews its own leases (the test's flake: [0, 0, 0, 1, 1, 1, ...]).
    import uuid

    return store.claim("e", "h", "v", range(8), f"owner-{uuid.uuid4().hex}", 2, 60.0)
