"""The run store: an embedded SQLite database of finished seeds and verdicts.

Tables:

* ``results``: one row per (experiment, config hash, seed, code version) with the seed's
  metrics (a compressed ``.npz`` blob of every array), its wall time and when it finished.
  The primary key makes a second insert of the same seed a no-op, so two processes running the
  same command never duplicate a row.
* ``invocations``: one row per ``metalab run`` (experiment, preset, config JSON, seeds asked,
  executor, started/finished, status ``running|finished|interrupted|failed``; ``died`` when
  the recorded process on this host no longer exists) so reports know
  which config group is the latest.
* ``verdicts``: the verdict computed for a config group, as JSON, with the hash of the rules
  it was judged by.
* ``leases``: which process is computing which seed, until when. A process claims seeds before
  computing them and renews its leases while it works; a lease whose holder died expires (at
  once when the holder was a process on this host, else after its time-to-live), so two
  processes on one store split the seeds instead of both computing all of them.

Safety: a store is recognised by its SQLite ``application_id`` (or, for stores written before
it was set, by its tables). A file that is not a metalab store is never modified, whatever the
command; read-only commands (``list``, ``report``, ``runs list``, :func:`metalab.lab.load`) open
the file read-only. Every write is one short transaction in WAL mode; a crash or ``kill -9``
loses at most the seeds in flight, never a finished one, and never leaves a half-written row.
A row whose metrics blob cannot be decoded is named (experiment, seed, code version), left out
of results, and recomputed by the next run.
"""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_STORE = Path("metalab-runs") / "store.sqlite"
APPLICATION_ID = 0x4D4C4142  # "MLAB"
SCHEMA_VERSION = 2
HOST = socket.gethostname()

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
    run_seconds  REAL,
    status       TEXT,
    host         TEXT,
    pid          INTEGER
);
CREATE TABLE IF NOT EXISTS verdicts (
    experiment   TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    code_version TEXT NOT NULL,
    seeds        INTEGER NOT NULL,
    verdict_json TEXT NOT NULL,
    computed_at  REAL NOT NULL,
    rules_hash   TEXT,
    PRIMARY KEY (experiment, config_hash, code_version, seeds)
);
CREATE TABLE IF NOT EXISTS leases (
    experiment   TEXT NOT NULL,
    config_hash  TEXT NOT NULL,
    code_version TEXT NOT NULL,
    seed         INTEGER NOT NULL,
    owner        TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    expires_at   REAL NOT NULL,
    PRIMARY KEY (experiment, config_hash, code_version, seed)
);
"""
# Columns added after the first release (a store written before gets them on first write).
_MIGRATIONS = (
    ("invocations", "status", "ALTER TABLE invocations ADD COLUMN status TEXT"),
    ("verdicts", "rules_hash", "ALTER TABLE verdicts ADD COLUMN rules_hash TEXT"),
    ("invocations", "host", "ALTER TABLE invocations ADD COLUMN host TEXT"),
    ("invocations", "pid", "ALTER TABLE invocations ADD COLUMN pid INTEGER"),
)
_METALAB_TABLES = {
    "results": {"experiment", "config_hash", "seed", "code_version", "metrics"},
    "invocations": {"experiment", "preset", "config_hash", "config_json", "code_version"},
    "verdicts": {"experiment", "config_hash", "code_version", "verdict_json"},
}
_INV_COLUMNS = (
    "id, experiment, preset, config_hash, config_json, code_version, seeds, executor, "
    "started_at, finished_at, compile_seconds, run_seconds"
)
_INV_LATER_COLUMNS = ("status", "host", "pid")  # read as NULL from a store that predates them


class StoreError(Exception):
    """The store cannot be used: one line saying what is wrong and what to do."""


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
    status: str = "finished"


@dataclass(frozen=True)
class CorruptRow:
    """A stored seed whose metrics cannot be read back."""

    experiment: str
    config_hash: str
    seed: int
    code_version: str
    error: str

    def __str__(self) -> str:
        return (
            f"{self.experiment} seed {self.seed} (config {self.config_hash}, code version "
            f"{self.code_version}): unreadable metrics ({self.error})"
        )


@dataclass(frozen=True)
class Group:
    """One config group of stored seeds (``metalab runs``)."""

    experiment: str
    config_hash: str
    code_version: str
    seeds: int
    preset: str
    asked: int
    verdict: str
    last_finished: float
    status: str


def _alive(host: str, pid: int) -> bool:
    if host != HOST:
        return True  # cannot tell: the lease's time-to-live decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe_sqlite_error(path: Path, e: Exception) -> str:
    msg = str(e)
    if "disk is full" in msg or "database or disk is full" in msg:
        return (
            f"the disk holding the run store {path} is full; free space or pass another "
            "--store (finished seeds are kept)"
        )
    if "readonly" in msg or "read-only" in msg or "unable to open" in msg:
        return f"cannot write the run store {path} ({msg}); pass a writable --store path"
    if "not a database" in msg or "malformed" in msg:
        return (
            f"--store {path} is not a SQLite database (not a metalab run store); metalab leaves "
            "it alone: pass another --store path"
        )
    return f"run store {path}: {msg}"


class Store:
    """A handle on one SQLite run store.

    ``readonly=True`` opens the file read-only (and never creates it). A writable store is
    created on first write; an existing file is checked to be a metalab store first.
    """

    def __init__(self, path: str | Path = DEFAULT_STORE, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._checked = False
        self._prepared = False

    # -- opening -------------------------------------------------------------------------------
    def exists(self) -> bool:
        return self.path.is_file() and self.path.stat().st_size > 0

    def check(self) -> None:
        """Raise :class:`StoreError` unless the path is usable as a metalab store (a missing
        file is fine for a writable store: it is created on first write). Writes nothing."""
        if self._checked:
            return
        p = self.path
        if p.is_dir():
            raise StoreError(
                f"--store {p} is a directory; pass a file path such as {p / 'store.sqlite'}"
            )
        if p.exists() and not p.is_file():
            raise StoreError(f"--store {p} is not a regular file; pass a file path")
        if not self.exists():
            if self.readonly:
                self._checked = True
                return
            parent = p.parent
            while not parent.exists() and parent != parent.parent:
                parent = parent.parent
            if not parent.is_dir():
                raise StoreError(f"--store {p}: {parent} is not a directory; pass another path")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise StoreError(f"--store {p}: cannot write in {parent}; pass a writable path")
            self._checked = True
            return
        try:
            con = sqlite3.connect(self._ro_uri(), uri=True, timeout=60.0)
        except sqlite3.Error as e:
            raise StoreError(_describe_sqlite_error(p, e)) from None
        try:
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
            version = con.execute("PRAGMA user_version").fetchone()[0]
            tables = {
                r[0]: {c[1] for c in con.execute(f"PRAGMA table_info('{r[0]}')")}
                for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
        except sqlite3.DatabaseError as e:
            raise StoreError(_describe_sqlite_error(p, e)) from None
        finally:
            con.close()
        # A store written before the application id (metalab's tables), or an empty database
        # (no tables: nothing to damage; also another metalab process creating it right now).
        legacy = app_id == 0 and (
            not tables
            or all(t in tables and cols <= tables[t] for t, cols in _METALAB_TABLES.items())
        )
        if app_id != APPLICATION_ID and not legacy:
            raise StoreError(
                f"--store {p} is a SQLite database but not a metalab run store (tables: "
                f"{', '.join(sorted(tables)) or 'none'}); metalab leaves it alone: pass another "
                "--store path"
            )
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"--store {p} was written by a newer metalab (schema {version} > "
                f"{SCHEMA_VERSION}); upgrade metalab or pass another --store"
            )
        self._checked = True

    def prepare(self) -> None:
        """Create (or migrate) the store now, so an unwritable location fails before any
        compute; raises :class:`StoreError`."""
        with self._connect(write=True):
            pass

    def _ro_uri(self) -> str:
        return self.path.resolve().as_uri() + "?mode=ro"

    @contextmanager
    def _connect(self, write: bool = False):
        self.check()
        if self.readonly or not write:
            if not self.exists():
                raise FileNotFoundError(self.path)
            try:
                con = sqlite3.connect(self._ro_uri(), uri=True, timeout=60.0)
                con.execute("PRAGMA busy_timeout=60000")
            except sqlite3.Error as e:
                raise StoreError(_describe_sqlite_error(self.path, e)) from None
            try:
                yield con
            except sqlite3.OperationalError as e:
                raise StoreError(_describe_sqlite_error(self.path, e)) from None
            finally:
                con.close()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreError(_describe_sqlite_error(self.path, e)) from None
        try:
            con.execute("PRAGMA busy_timeout=60000")
            if not self._prepared:
                con.execute("PRAGMA journal_mode=WAL")
                # One transaction, so that processes creating the store at once do not race.
                con.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        con.execute(stmt)
                    for table, column, sql in _MIGRATIONS:
                        cols = {c[1] for c in con.execute(f"PRAGMA table_info('{table}')")}
                        if column not in cols:
                            con.execute(sql)
                    con.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
                self._prepared = True
            con.execute("PRAGMA synchronous=NORMAL")
            yield con
        except sqlite3.OperationalError as e:
            raise StoreError(_describe_sqlite_error(self.path, e)) from None
        finally:
            con.close()

    @contextmanager
    def _transaction(self):
        if self.readonly:
            raise StoreError(f"run store {self.path} was opened read-only")
        with self._connect(write=True) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _read(self, sql: str, args: tuple = ()) -> list[tuple]:
        """Rows of a query; [] for a store not created yet."""
        if not self.exists():
            self.check()
            return []
        with self._connect() as con:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master")}
            needed = {"results", "invocations", "verdicts", "leases"} & set(sql.split())
            if not needed <= tables:
                return []
            return [tuple(r) for r in con.execute(sql, args).fetchall()]

    def _columns(self, table: str) -> set[str]:
        if not self.exists():
            return set()
        with self._connect() as con:
            return {c[1] for c in con.execute(f"PRAGMA table_info('{table}')")}

    # -- results ---------------------------------------------------------------------------
    def finished_seeds(self, experiment: str, config_hash: str, code_version: str) -> set[int]:
        rows = self._read(
            "SELECT seed FROM results WHERE experiment=? AND config_hash=? AND code_version=?",
            (experiment, config_hash, code_version),
        )
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
        if not rows:
            return 0
        with self._transaction() as con:
            before = con.total_changes
            con.executemany("INSERT OR IGNORE INTO results VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            return con.total_changes - before

    def scan_results(
        self,
        experiment: str,
        config_hash: str,
        code_version: str,
        seeds: Iterable[int] | None = None,
    ) -> tuple[dict[int, dict[str, np.ndarray]], list[CorruptRow]]:
        """Readable metrics by seed, and the rows that could not be decoded."""
        rows = self._read(
            "SELECT seed, metrics FROM results WHERE experiment=? AND config_hash=? "
            "AND code_version=? ORDER BY seed",
            (experiment, config_hash, code_version),
        )
        wanted = None if seeds is None else set(seeds)
        good: dict[int, dict[str, np.ndarray]] = {}
        bad: list[CorruptRow] = []
        for s, blob in rows:
            if wanted is not None and int(s) not in wanted:
                continue
            try:
                good[int(s)] = decode_metrics(blob)
            except Exception as e:  # zip, zlib, format errors: the blob is damaged
                bad.append(
                    CorruptRow(experiment, config_hash, int(s), code_version, type(e).__name__)
                )
        return good, bad

    def get_results(
        self,
        experiment: str,
        config_hash: str,
        code_version: str,
        seeds: Iterable[int] | None = None,
    ) -> dict[int, dict[str, np.ndarray]]:
        """Metrics of finished, readable seeds, by seed (all seeds if ``seeds`` is None)."""
        return self.scan_results(experiment, config_hash, code_version, seeds)[0]

    def wall_seconds(self, experiment: str, config_hash: str | None = None) -> list[float]:
        """Stored per-seed wall times of an experiment (for estimates)."""
        q = "SELECT wall_seconds FROM results WHERE experiment=?"
        args: tuple = (experiment,)
        if config_hash is not None:
            q += " AND config_hash=?"
            args += (config_hash,)
        return [float(r[0]) for r in self._read(q, args)]

    def result_rows(self, experiment: str | None = None) -> list[tuple[str, str, int, str, float]]:
        """``(experiment, config_hash, seed, code_version, finished_at)`` of every stored seed."""
        q = "SELECT experiment, config_hash, seed, code_version, finished_at FROM results"
        args: tuple = ()
        if experiment is not None:
            q += " WHERE experiment=?"
            args = (experiment,)
        return self._read(q + " ORDER BY experiment, seed", args)

    def delete_rows(self, rows: Iterable[CorruptRow | tuple[str, str, int, str]]) -> int:
        keys = [
            (r.experiment, r.config_hash, r.seed, r.code_version)
            if isinstance(r, CorruptRow)
            else tuple(r)
            for r in rows
        ]
        if not keys:
            return 0
        with self._transaction() as con:
            before = con.total_changes
            con.executemany(
                "DELETE FROM results WHERE experiment=? AND config_hash=? AND seed=? "
                "AND code_version=?",
                keys,
            )
            return con.total_changes - before

    # -- leases --------------------------------------------------------------------------------
    def claim(
        self,
        experiment: str,
        config_hash: str,
        code_version: str,
        seeds: Iterable[int],
        owner: str,
        limit: int,
        ttl: float,
    ) -> list[int]:
        """Lease up to ``limit`` of ``seeds`` that are neither stored nor leased by a live
        process; returns them (renewing this owner's own leases among them)."""
        seeds = [int(s) for s in seeds]
        now = time.time()
        group = (experiment, config_hash, code_version)
        with self._transaction() as con:
            held = {}
            for seed, who, host, pid, exp_at in con.execute(
                "SELECT seed, owner, host, pid, expires_at FROM leases WHERE experiment=? "
                "AND config_hash=? AND code_version=?",
                group,
            ):
                if who != owner and exp_at > now and _alive(host, pid):
                    held[int(seed)] = who
            done = {
                int(r[0])
                for r in con.execute(
                    "SELECT seed FROM results WHERE experiment=? AND config_hash=? "
                    "AND code_version=?",
                    group,
                )
            }
            take = [s for s in seeds if s not in done and s not in held][: max(0, limit)]
            con.executemany(
                "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(*group, s, owner, HOST, os.getpid(), now + ttl) for s in take],
            )
        return take

    def leased_elsewhere(
        self, experiment: str, config_hash: str, code_version: str, owner: str
    ) -> set[int]:
        """Seeds of the group leased by other live processes."""
        now = time.time()
        rows = self._read(
            "SELECT seed, owner, host, pid, expires_at FROM leases WHERE experiment=? "
            "AND config_hash=? AND code_version=?",
            (experiment, config_hash, code_version),
        )
        return {
            int(s)
            for s, who, host, pid, t in rows
            if who != owner and t > now and _alive(host, pid)
        }

    def renew(self, owner: str, ttl: float) -> None:
        with self._transaction() as con:
            con.execute("UPDATE leases SET expires_at=? WHERE owner=?", (time.time() + ttl, owner))

    def release(self, owner: str, seeds: Iterable[int] | None = None) -> None:
        with self._transaction() as con:
            if seeds is None:
                con.execute("DELETE FROM leases WHERE owner=?", (owner,))
            else:
                con.executemany(
                    "DELETE FROM leases WHERE owner=? AND seed=?",
                    [(owner, int(s)) for s in seeds],
                )

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
                "code_version, seeds, executor, started_at, status, host, pid) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                (
                    experiment,
                    preset,
                    config_hash,
                    json.dumps(config, sort_keys=True),
                    code_version,
                    seeds,
                    executor,
                    time.time(),
                    HOST,
                    os.getpid(),
                ),
            )
            return int(cur.lastrowid)

    def finish_invocation(
        self, inv_id: int, compile_s: float, run_s: float, status: str = "finished"
    ) -> None:
        with self._transaction() as con:
            con.execute(
                "UPDATE invocations SET finished_at=?, compile_seconds=?, run_seconds=?, "
                "status=? WHERE id=?",
                (time.time(), compile_s, run_s, status, inv_id),
            )

    def invocations(self) -> list[Invocation]:
        have = self._columns("invocations")
        later = ", ".join(c if c in have else "NULL" for c in _INV_LATER_COLUMNS)
        cols = f"{_INV_COLUMNS}, {later}"
        out = []
        for r in self._read(f"SELECT {cols} FROM invocations ORDER BY id"):
            status = r[12] or ("finished" if r[9] is not None else "running")
            if status == "running" and r[13] and r[14] and not _alive(r[13], int(r[14])):
                status = "died"  # killed (e.g. kill -9) or crashed without marking its end
            out.append(Invocation(r[0], r[1], r[2], r[3], json.loads(r[4]), *r[5:12], status))
        return out

    def latest_invocations(self, finished_only: bool = True) -> dict[str, Invocation]:
        """The most recent (finished) invocation of each experiment."""
        out: dict[str, Invocation] = {}
        for inv in self.invocations():
            if finished_only and inv.status != "finished":
                continue
            out[inv.experiment] = inv
        return out

    # -- verdicts ----------------------------------------------------------------------------
    def put_verdict(
        self, experiment: str, config_hash: str, code_version: str, seeds: int, verdict: dict
    ) -> None:
        with self._transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO verdicts (experiment, config_hash, code_version, seeds, "
                "verdict_json, computed_at, rules_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    experiment,
                    config_hash,
                    code_version,
                    seeds,
                    json.dumps(verdict),
                    time.time(),
                    verdict.get("rules_hash", ""),
                ),
            )

    def verdicts(self, experiment: str | None = None) -> list[dict[str, Any]]:
        """Every stored verdict (oldest first) with its group keys."""
        q = (
            "SELECT experiment, config_hash, code_version, seeds, verdict_json, computed_at "
            "FROM verdicts"
        )
        args: tuple = ()
        if experiment is not None:
            q += " WHERE experiment=?"
            args = (experiment,)
        out = []
        for e, h, v, n, js, t in self._read(q + " ORDER BY computed_at", args):
            d = json.loads(js)
            out.append(
                {
                    "experiment": e,
                    "config_hash": h,
                    "code_version": v,
                    "seeds": n,
                    "verdict": d,
                    "rules_hash": d.get("rules_hash", ""),
                    "computed_at": t,
                }
            )
        return out

    def latest_verdicts(self) -> dict[str, dict[str, Any]]:
        """The most recently computed verdict of each experiment (as stored JSON)."""
        return {v["experiment"]: v["verdict"] for v in self.verdicts()}

    def rules_changed(
        self, experiment: str, config_hash: str, rules_hash: str
    ) -> dict[str, Any] | None:
        """An earlier verdict of the same experiment and config judged by other rules."""
        if not rules_hash:
            return None
        for v in reversed(self.verdicts(experiment)):
            if v["config_hash"] == config_hash and v["rules_hash"] not in ("", rules_hash):
                return v
        return None

    # -- management (``metalab runs``) -------------------------------------------------------
    def groups(self) -> list[Group]:
        rows = self._read(
            "SELECT experiment, config_hash, code_version, COUNT(*), MAX(finished_at) "
            "FROM results GROUP BY experiment, config_hash, code_version "
            "ORDER BY experiment, MAX(finished_at)"
        )
        invs: dict[tuple, Invocation] = {}
        for inv in self.invocations():
            invs[(inv.experiment, inv.config_hash, inv.code_version)] = inv
        verdicts: dict[tuple, dict] = {}
        for v in self.verdicts():
            verdicts[(v["experiment"], v["config_hash"], v["code_version"])] = v
        out = []
        for e, h, ver, n, last in rows:
            inv = invs.get((e, h, ver))
            v = verdicts.get((e, h, ver))
            label = "–"
            if v is not None:
                label = "reproduced" if v["verdict"].get("reproduced") else "not reproduced"
            out.append(
                Group(
                    e,
                    h,
                    ver,
                    int(n),
                    inv.preset if inv else "?",
                    inv.seeds if inv else 0,
                    label,
                    float(last),
                    inv.status if inv else "?",
                )
            )
        return out

    def delete(
        self,
        experiment: str,
        config_hash: str | None = None,
        code_version: str | None = None,
    ) -> int:
        """Delete an experiment's stored seeds, verdicts, invocations and leases (optionally
        only one config hash / code version); returns the number of seeds deleted."""
        cond, args = "experiment=?", [experiment]
        if config_hash is not None:
            cond += " AND config_hash=?"
            args.append(config_hash)
        if code_version is not None:
            cond += " AND code_version=?"
            args.append(code_version)
        with self._transaction() as con:
            n = con.execute(f"DELETE FROM results WHERE {cond}", args).rowcount
            for table in ("verdicts", "invocations", "leases"):
                con.execute(f"DELETE FROM {table} WHERE {cond}", args)
        return int(n)

    def prune(self, current: Mapping[str, str]) -> int:
        """Delete every group whose code version is not ``current[experiment]`` (experiments
        missing from ``current`` are kept); returns the number of seeds deleted."""
        stale = {
            (e, ver)
            for e, _, ver, *_ in self._read(
                "SELECT DISTINCT experiment, config_hash, code_version FROM results"
            )
            if e in current and ver != current[e]
        }
        stale |= {
            (e, ver)
            for e, ver in self._read("SELECT DISTINCT experiment, code_version FROM invocations")
            if e in current and ver != current[e]
        }
        return sum(self.delete(e, code_version=ver) for e, ver in sorted(stale))

    def integrity(self) -> tuple[list[str], list[CorruptRow]]:
        """SQLite's integrity check messages (``["ok"]`` when sound) and unreadable rows."""
        with self._connect() as con:
            msgs = [r[0] for r in con.execute("PRAGMA integrity_check")]
        bad: list[CorruptRow] = []
        for e, h, ver in self._read(
            "SELECT DISTINCT experiment, config_hash, code_version FROM results"
        ):
            bad += self.scan_results(e, h, ver)[1]
        return msgs, bad
