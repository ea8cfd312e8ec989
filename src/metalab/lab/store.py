"""The run store: an embedded SQLite database of finished seeds and verdicts.

Tables:

* ``results``: one row per (experiment, config hash, seed, code version) with the seed's
  metrics (a compressed ``.npz`` blob of every array), its wall time and when it finished.
  The primary key makes a second insert of the same seed a no-op, so two processes running the
  same command never duplicate a row.
* ``invocations``: one row per ``metalab run`` (experiment, preset, config JSON, seeds asked,
  executor, started/finished) so reports know which config group is the latest.
* ``verdicts``: the verdict computed for a config group, as JSON.

Every write is one short transaction in WAL mode; a crash or ``kill -9`` loses at most the
seeds in flight, never a finished one, and never leaves a half-written row.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_STORE = Path("metalab-runs") / "store.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    experiment   TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    code_version TEXT NOT NULL,
    metrics      BLOB NOT NULL,
    wall_seconds REAL NOT NULL,
    finished_at  REAL NOT NULL,
    PRIMARY KEY (experiment, config_hash, seed, code_version)
);
CREATE TABLE IF NOT EXISTS invocations (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    experiment   TEXT NOT NULL,
    preset       TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    config_json  TEXT NOT NULL,
    code_version TEXT NOT NULL,
    seeds        INTEGER NOT NULL,
    executor     TEXT NOT NULL,
    started_at   REAL NOT NULL,
    finished_at  REAL,
    compile_seconds REAL,
    run_seconds  REAL
);
CREATE TABLE IF NOT EXISTS verdicts (
    experiment   TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    code_version TEXT NOT NULL,
    seeds        INTEGER NOT NULL,
    verdict_json TEXT NOT NULL,
    computed_at  REAL NOT NULL,
    PRIMARY KEY (experiment, config_hash, code_version, seeds)
);
"""


def encode_metrics(metrics: Mapping[str, Any]) -> bytes:
    """Serialise a metrics dict to a compressed npz blob (no pickles)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in metrics.items()})
    return buf.getvalue()


def decode_metrics(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@dataclass(frozen=True)
class Invocation:
    id: int
    experiment: str
    preset: str
    config_hash: str
    config: dict[str, Any]
    code_version: str
    seeds: int
    executor: str
    started_at: float
    finished_at: float | None
    compile_seconds: float | None
    run_seconds: float | None


class Store:
    """A handle on one SQLite run store (created on first use)."""

    def __init__(self, path: str | Path = DEFAULT_STORE) -> None:
        self.path = Path(path)

    @contextmanager
    def _connect(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("PRAGMA busy_timeout=60000")
            con.executescript(_SCHEMA)
            yield con
        finally:
            con.close()

    @contextmanager
    def _transaction(self):
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # -- results ---------------------------------------------------------------------------
    def finished_seeds(self, experiment: str, config_hash: str, code_version: str) -> set[int]:
        if not self.path.exists():
            return set()
        with self._connect() as con:
            rows = con.execute(
                "SELECT seed FROM results WHERE experiment=? AND config_hash=? AND code_version=?",
                (experiment, config_hash, code_version),
            ).fetchall()
        return {int(r[0]) for r in rows}

    def put_results(
        self,
        experiment: str,
        config_hash: str,
        code_version: str,
        seeds_metrics: Iterable[tuple[int, Mapping[str, Any], float]],
    ) -> int:
        """Insert finished seeds in one transaction; returns how many rows were new."""
        now = time.time()
        rows = [
            (experiment, config_hash, int(s), code_version, encode_metrics(m), float(w), now)
            for s, m, w in seeds_metrics
        ]
        with self._transaction() as con:
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            return con.total_changes - before

    def get_results(
        self,
        experiment: str,
        config_hash: str,
        code_version: str,
        seeds: Iterable[int] | None = None,
    ) -> dict[int, dict[str, np.ndarray]]:
        """Metrics of finished seeds, by seed (all seeds if ``seeds`` is None)."""
        if not self.path.exists():
            return {}
        with self._connect() as con:
            rows = con.execute(
                "SELECT seed, metrics FROM results WHERE experiment=? AND config_hash=? "
                "AND code_version=? ORDER BY seed",
                (experiment, config_hash, code_version),
            ).fetchall()
        wanted = None if seeds is None else set(seeds)
        return {int(s): decode_metrics(b) for s, b in rows if wanted is None or int(s) in wanted}

    def result_rows(self, experiment: str | None = None) -> list[tuple[str, str, int, str, float]]:
        """``(experiment, config_hash, seed, code_version, finished_at)`` of every stored seed."""
        if not self.path.exists():
            return []
        q = "SELECT experiment, config_hash, seed, code_version, finished_at FROM results"
        args: tuple = ()
        if experiment is not None:
            q += " WHERE experiment=?"
            args = (experiment,)
        with self._connect() as con:
            return [tuple(r) for r in con.execute(q + " ORDER BY experiment, seed", args)]

    # -- invocations -------------------------------------------------------------------------
    def start_invocation(
        self,
        experiment: str,
        preset: str,
        config_hash: str,
        config: Mapping[str, Any],
        code_version: str,
        seeds: int,
        executor: str,
    ) -> int:
        with self._transaction() as con:
            cur = con.execute(
                "INSERT INTO invocations (experiment, preset, config_hash, config_json, "
                "code_version, seeds, executor, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    experiment,
                    preset,
                    config_hash,
                    json.dumps(config, sort_keys=True),
                    code_version,
                    seeds,
                    executor,
                    time.time(),
                ),
            )
            return int(cur.lastrowid)

    def finish_invocation(self, inv_id: int, compile_s: float, run_s: float) -> None:
        with self._transaction() as con:
            con.execute(
                "UPDATE invocations SET finished_at=?, compile_seconds=?, run_seconds=? WHERE id=?",
                (time.time(), compile_s, run_s, inv_id),
            )

    def latest_invocations(self, finished_only: bool = True) -> dict[str, Invocation]:
        """The most recent (finished) invocation of each experiment."""
        if not self.path.exists():
            return {}
        cond = "WHERE finished_at IS NOT NULL" if finished_only else ""
        with self._connect() as con:
            rows = con.execute(
                f"SELECT * FROM invocations {cond} ORDER BY id"  # noqa: S608 (constant)
            ).fetchall()
        out: dict[str, Invocation] = {}
        for r in rows:
            inv = Invocation(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:])
            out[inv.experiment] = inv
        return out

    # -- verdicts ----------------------------------------------------------------------------
    def put_verdict(
        self, experiment: str, config_hash: str, code_version: str, seeds: int, verdict: dict
    ) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO verdicts VALUES (?, ?, ?, ?, ?, ?)",
                (experiment, config_hash, code_version, seeds, json.dumps(verdict), time.time()),
            )

    def latest_verdicts(self) -> dict[str, dict[str, Any]]:
        """The most recently computed verdict of each experiment (as stored JSON)."""
        if not self.path.exists():
            return {}
        with self._connect() as con:
            rows = con.execute(
                "SELECT experiment, verdict_json FROM verdicts ORDER BY computed_at"
            ).fetchall()
        return {e: json.loads(v) for e, v in rows}
