"""Sweeps: a grid of configs of one experiment, each point stored, resumed and judged like a run.

    metalab sweep NAME field=v1,v2,v3 [field2=...] [--preset quick] [--seeds N]
                       [--executor local|ray] [--max-points 1000]

* **Validation first.** Each axis ``field=v1,v2,...`` is parsed value by value exactly as a
  ``metalab run`` override (:func:`metalab.lab.config.apply_overrides`): an unknown field, an
  empty list or an empty item, a value of the wrong type or out of range, a field swept twice
  or a value listed twice, and a grid of more than ``--max-points`` points (1,000 by default)
  are one-line :class:`ConfigError`s, raised before the store is touched. Tuple-valued fields
  separate their values with ``;`` (``hidden=32,32;64,64``). An axis with a single value is a
  fixed override. ``seeds=4,8,16`` sweeps the number of seeds (points share their first seeds:
  the 16-seed point reuses the 8 seeds of the 8-seed point).
* **Storage and resume.** A point is an ordinary run request (:func:`metalab.lab.runner.resolve`)
  executed by the lab's runner, so its seeds land in the run store keyed by (experiment, config
  hash, seed, code version) like any ``metalab run``; re-running the same sweep reuses every
  stored seed, so a killed sweep loses only the seeds in flight. The sweep itself (its axes and
  the status, timing and checks of each point) is kept in two extra tables of the same SQLite
  file, ``sweeps`` and ``sweep_points``; the sweep's id is a hash of (kind, experiment, preset,
  seeds, axes), so the same command finds the same sweep.
* **Judging.** When a point's seeds are complete its verdict is computed from the store (the
  runner's judge) and each check's value, CI, p-value (raw and Holm-adjusted), MDE and pass are
  recorded for the point. :mod:`metalab.lab.sweep_report` fits the trend and draws the figures.
* **Ray.** With ``--executor ray`` every point is submitted at once (one driver thread per
  point, each submitting its seed chunks as Ray tasks), so points spread over the workers.

Library use (e.g. from ``metalab runs`` / ``metalab.lab.load``): :func:`list_sweeps`,
:func:`sweep_points`, :func:`sweep_frame` (a row per point and seed) and :func:`checks_frame`
(a row per point and check).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import sqlite3
import threading
import time
import traceback
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metalab.experiments import registry
from metalab.experiments.base import Experiment, Verdict, config_types
from metalab.lab.config import ConfigError, apply_overrides
from metalab.lab.executors import StallError
from metalab.lab.progress import Progress
from metalab.lab.runner import RunOutcome, RunSpec, execute, judge, resolve
from metalab.lab.store import Store

MAX_POINTS = 1000
TUPLE_SEP = ";"
SEEDS_AXIS = "seeds"  # a pseudo-field: sweeps the number of seeds (the first N are shared)
KINDS = ("sweep", "scale")

__all__ = [
    "MAX_POINTS",
    "Axis",
    "PointOutcome",
    "SweepPlan",
    "SweepPoint",
    "SweepSummary",
    "check_rows",
    "checks_frame",
    "find_sweep",
    "list_sweeps",
    "parse_axes",
    "plan_sweep",
    "run_sweep",
    "sweep_frame",
    "sweep_points",
    "sweeps_table",
]


# -- the grid ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Axis:
    """One swept field: its values as override texts and as parsed values."""

    field: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: the swept values (JSON-friendly) and its validated run request."""

    index: int
    values: dict[str, Any]
    overrides: tuple[str, ...]
    spec: RunSpec


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep (or scaling study): nothing has run or been written yet."""

    id: str
    kind: str
    experiment: str
    preset: str
    seeds: int | None
    axes: tuple[Axis, ...]
    points: tuple[SweepPoint, ...]
    command: str = ""

    @property
    def swept(self) -> tuple[str, ...]:
        """The fields with more than one value (the x axes of the report)."""
        return tuple(a.field for a in self.axes if len(a.values) > 1)


def _is_tuple_type(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_is_tuple_type(a) for a in typing.get_args(tp) if a is not type(None))
    return origin is tuple


def jsonable(value: Any) -> Any:
    """A JSON-friendly copy of a config value (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


def parse_axes(config: Any, specs: Sequence[str]) -> tuple[Axis, ...]:
    """Parse and validate ``field=v1,v2,...`` axes against ``config``'s dataclass."""
    fields = {f.name for f in dataclasses.fields(config)}
    types_ = config_types(type(config))
    axes: list[Axis] = []
    seen: set[str] = set()
    for item in specs:
        if "=" not in item:
            raise ConfigError(f"sweep axis {item!r} is not of the form field=v1,v2,...")
        name, text = item.split("=", 1)
        name = name.strip()
        if name not in fields and name != SEEDS_AXIS:
            raise ConfigError(
                f"unknown config field {name!r}; fields: {', '.join(sorted(fields))} "
                f"(or {SEEDS_AXIS}=N1,N2,... to sweep the number of seeds)"
            )
        if name in seen:
            raise ConfigError(f"{name}: swept twice; list all its values in one {name}=v1,v2,...")
        seen.add(name)
        is_seeds = name == SEEDS_AXIS and name not in fields
        sep = TUPLE_SEP if not is_seeds and _is_tuple_type(types_[name]) else ","
        if not text.strip():
            raise ConfigError(
                f"{name}: empty list of values; give one or more, e.g. {name}=1{sep}2"
            )
        parts = [p.strip() for p in text.split(sep)]
        if any(p == "" for p in parts):
            raise ConfigError(
                f"{name}: empty item in the list {text!r} (values separated by {sep!r})"
            )
        values, keys = [], []
        for p in parts:
            v = (
                _seeds_value(p)
                if is_seeds
                else getattr(apply_overrides(config, [f"{name}={p}"]), name)
            )
            key = json.dumps(jsonable(v))
            if key in keys:
                raise ConfigError(f"{name}: value {p!r} is listed twice")
            keys.append(key)
            values.append(v)
        axes.append(Axis(name, tuple(parts), tuple(values)))
    if not axes:
        raise ConfigError("no sweep axes: give at least one field=v1,v2,...")
    return tuple(axes)


def _seeds_value(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"{SEEDS_AXIS}: expected an int, got {text!r}") from None
    if n < 1:
        raise ConfigError(f"{SEEDS_AXIS}: got {n}; must be >= 1")
    return n


def sweep_id(kind: str, experiment: str, preset: str, seeds: int | None, payload: Any) -> str:
    """A stable 12-hex-digit id of a sweep's definition (the same command: the same id)."""
    body = json.dumps(
        {"kind": kind, "experiment": experiment, "preset": preset, "seeds": seeds, "p": payload},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()[:12]


def plan_sweep(
    name: str,
    specs: Sequence[str],
    preset: str = "quick",
    seeds: int | None = None,
    executor: str = "local",
    chunk: int | None = None,
    max_points: int = MAX_POINTS,
    command: str = "",
) -> SweepPlan:
    """Validate a sweep request completely (every point resolved) before anything runs."""
    if max_points < 1:
        raise ConfigError(f"--max-points: got {max_points}; must be >= 1")
    base = resolve(name, preset, seeds, (), executor, chunk)  # name, preset, seeds, executor
    axes = parse_axes(base.config, specs)
    size = math.prod(len(a.values) for a in axes)
    if size > max_points:
        shape = " x ".join(str(len(a.values)) for a in axes)
        raise ConfigError(
            f"the grid has {size} points ({shape}), more than the limit of {max_points}; "
            "narrow it or raise --max-points"
        )
    points = []
    fields = {f.name for f in dataclasses.fields(base.config)}
    if seeds is not None and any(a.field == SEEDS_AXIS not in fields for a in axes):
        raise ConfigError(f"give the number of seeds either as --seeds or as a {SEEDS_AXIS}= axis")
    for i, combo in enumerate(itertools.product(*[range(len(a.values)) for a in axes])):
        chosen = list(zip(axes, combo, strict=True))
        n = next((a.values[j] for a, j in chosen if a.field == SEEDS_AXIS not in fields), seeds)
        overrides = tuple(
            f"{a.field}={a.texts[j]}"
            for a, j in chosen
            if a.field != SEEDS_AXIS or a.field in fields
        )
        values = {a.field: jsonable(a.values[j]) for a, j in chosen}
        spec = resolve(name, preset, n, overrides, executor, chunk)
        points.append(SweepPoint(i, values, overrides, spec))
    payload = [[a.field, [jsonable(v) for v in a.values]] for a in axes]
    sid = sweep_id("sweep", base.exp.name, preset, seeds, payload)
    return SweepPlan(sid, "sweep", base.exp.name, preset, seeds, axes, tuple(points), command)


# -- the sweep tables ----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sweeps (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    experiment  TEXT NOT NULL,
    preset      TEXT NOT NULL,
    seeds       INTEGER,
    axes_json   TEXT NOT NULL,
    command     TEXT NOT NULL,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    finished_at REAL,
    note        TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS sweep_points (
    sweep_id     TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    values_json  TEXT NOT NULL,
    overrides    TEXT NOT NULL,
    preset       TEXT NOT NULL,
    seeds        INTEGER NOT NULL,
    config_hash  TEXT NOT NULL,
    code_version TEXT NOT NULL,
    status       TEXT NOT NULL,
    seeds_done   INTEGER NOT NULL DEFAULT 0,
    seconds      REAL,
    checks_json  TEXT,
    error        TEXT NOT NULL DEFAULT '',
    updated_at   REAL NOT NULL,
    PRIMARY KEY (sweep_id, idx)
);
"""

# Point statuses: pending (not started), running, done (every seed stored and judged),
# partial (stopped with some seeds stored: resumable), failed (raised), skipped (budget).
STATUSES = ("pending", "running", "done", "partial", "failed", "skipped")


class SweepDB:
    """The ``sweeps`` and ``sweep_points`` tables in the run store's SQLite file.

    Every access goes through the :class:`Store`'s own connections, so the store's checks hold
    for sweeps too (a file that is not a metalab store is never touched; a read-only store is
    only read)."""

    _lock = threading.Lock()

    def __init__(self, store: Store) -> None:
        self.store = store

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            with self.store._transaction() as con:
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    con.execute(stmt)
                yield con
        else:
            with self.store._connect() as con:
                yield con

    def _has_tables(self) -> bool:
        path = self.store.path
        if not (path.is_file() and path.stat().st_size > 0):
            return False
        with self._connect(write=False) as con:
            got = con.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name='sweep_points'"
            ).fetchall()
        return bool(got)

    def register(self, plan: SweepPlan) -> None:
        """Insert the sweep and its points (existing rows keep their status)."""
        now = time.time()
        axes = [[a.field, [jsonable(v) for v in a.values]] for a in plan.axes]
        with self._lock, self._connect(write=True) as con:
            con.execute(
                "INSERT OR IGNORE INTO sweeps (id, kind, experiment, preset, seeds, axes_json, "
                "command, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    plan.id,
                    plan.kind,
                    plan.experiment,
                    plan.preset,
                    plan.seeds,
                    json.dumps(axes),
                    plan.command,
                    now,
                    now,
                ),
            )
            con.execute(
                "UPDATE sweeps SET updated_at=?, command=?, finished_at=NULL WHERE id=?",
                (now, plan.command, plan.id),
            )
            for p in plan.points:
                con.execute(
                    "INSERT OR IGNORE INTO sweep_points (sweep_id, idx, values_json, overrides, "
                    "preset, seeds, config_hash, code_version, status, updated_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                    (
                        plan.id,
                        p.index,
                        json.dumps(p.values),
                        json.dumps(list(p.overrides)),
                        p.spec.preset,
                        p.spec.seeds,
                        p.spec.config_hash,
                        p.spec.code_version,
                        now,
                    ),
                )
                con.execute(  # the config or code may have changed since the last invocation
                    "UPDATE sweep_points SET config_hash=?, code_version=?, seeds=?, preset=?, "
                    "overrides=? WHERE sweep_id=? AND idx=?",
                    (
                        p.spec.config_hash,
                        p.spec.code_version,
                        p.spec.seeds,
                        p.spec.preset,
                        json.dumps(list(p.overrides)),
                        plan.id,
                        p.index,
                    ),
                )

    def update_point(self, sweep: str, idx: int, **cols: Any) -> None:
        if "checks" in cols:
            checks = cols.pop("checks")
            cols["checks_json"] = None if checks is None else json.dumps(checks)
        cols["updated_at"] = time.time()
        names = ", ".join(f"{k}=?" for k in cols)
        with self._lock, self._connect(write=True) as con:
            con.execute(
                f"UPDATE sweep_points SET {names} WHERE sweep_id=? AND idx=?",  # noqa: S608
                (*cols.values(), sweep, idx),
            )
            con.execute("UPDATE sweeps SET updated_at=? WHERE id=?", (cols["updated_at"], sweep))

    def finish(self, sweep: str, note: str = "") -> None:
        with self._lock, self._connect(write=True) as con:
            con.execute(
                "UPDATE sweeps SET finished_at=?, note=? WHERE id=?", (time.time(), note, sweep)
            )

    def sweeps(self) -> list[dict[str, Any]]:
        if not self._has_tables():
            return []
        with self._connect(write=False) as con:
            con.row_factory = sqlite3.Row
            rows = con.execute("SELECT * FROM sweeps ORDER BY created_at").fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["axes"] = [(f, vals) for f, vals in json.loads(d.pop("axes_json"))]
            out.append(d)
        return out

    def points(self, sweep: str) -> list[dict[str, Any]]:
        if not self._has_tables():
            return []
        with self._connect(write=False) as con:
            con.row_factory = sqlite3.Row
            rows = con.execute(
                "SELECT * FROM sweep_points WHERE sweep_id=? ORDER BY idx", (sweep,)
            ).fetchall()
        out = []
        for r in rows:
            d = dict(r)
            d["values"] = json.loads(d.pop("values_json"))
            d["overrides"] = json.loads(d["overrides"])
            cj = d.pop("checks_json")
            d["checks"] = None if cj is None else json.loads(cj)
            out.append(d)
        return out


# -- judging -------------------------------------------------------------------------------------


def toward(rule: Any) -> int | None:
    """+1 if a larger check value favours the claim, -1 if a smaller one does, None if neither.

    Directional kinds report ``a - b`` (or a slope, or ``a`` itself): their ``direction`` says
    which way is better; ``wins`` and sign tests report the fraction of units in the tested
    direction (larger is better); ``equivalence`` wants the difference near zero.
    """
    if rule is None:
        return None
    kind = getattr(rule, "kind", "")
    if kind == "equivalence":
        return None
    if kind == "wins" or getattr(rule, "test", "") == "sign":
        return 1
    return 1 if getattr(rule, "direction", "greater") == "greater" else -1


def null_values(rule: Any) -> list[float]:
    """Where a check's value sits when the claim is exactly at its boundary (the report draws
    these lines): the fraction 1/2 for sign tests and wins, +-margin for equivalence, else the
    declared margin on the side the rule tests (``a - b`` for comparisons)."""
    if rule is None:
        return []
    kind, m = getattr(rule, "kind", ""), float(getattr(rule, "margin", 0.0))
    s = 1.0 if getattr(rule, "direction", "greater") == "greater" else -1.0
    if kind == "wins" or getattr(rule, "test", "") == "sign":
        return [0.5]
    if kind == "equivalence":
        return [-m, m]
    if kind == "non_inferiority":
        return [-s * m]
    if kind == "one_sample":
        return [m]
    return [s * m]


def check_rows(verdict: Verdict, exp: Experiment | None = None) -> list[dict[str, Any]]:
    """The numbers of each check of a verdict, JSON-friendly (nan where a check has none)."""
    rules = {r.name: r for r in getattr(exp, "rules", ()) or ()}
    rows = []
    for c in verdict.checks:
        ci = tuple(getattr(c, "ci", (math.nan, math.nan)) or (math.nan, math.nan))
        p = _num(getattr(c, "p_value", math.nan))
        rows.append(
            {
                "name": c.name,
                "statistic": getattr(c, "statistic", ""),
                "value": _num(c.value),
                "ci_low": _num(ci[0]),
                "ci_high": _num(ci[1]),
                "p_value": p,
                "p_adjusted": _adjusted(c, p),
                "mde": _num(getattr(c, "mde", math.nan)),
                "effect_size": _num(getattr(c, "effect_size", math.nan)),
                "ci_level": _num(getattr(c, "ci_level", math.nan)),
                "n": int(getattr(c, "n", 0) or 0),
                "toward": toward(rules.get(c.name)),
                "null": null_values(rules.get(c.name)),
                "rule": getattr(c, "rule", ""),
                "passed": bool(c.passed),
            }
        )
    return rows


def _adjusted(check: Any, p: float) -> float:
    adj = _num(getattr(check, "p_adjusted", math.nan))
    return p if math.isnan(adj) else adj


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def judge_available(spec: RunSpec, store: Store, min_seeds: int = 2) -> tuple[Verdict | None, int]:
    """The verdict on every seed of ``spec`` in the store, complete or not.

    A complete point is judged by the runner (which also stores the verdict, as a run would);
    an incomplete one (a budget ran out) on the seeds that finished, if at least ``min_seeds``.
    """
    got = store.get_results(spec.exp.name, spec.config_hash, spec.code_version, range(spec.seeds))
    if len(got) >= spec.seeds:
        return judge(spec, store), len(got)
    if len(got) < min_seeds:
        return None, len(got)
    try:
        return spec.exp.judge([got[s] for s in sorted(got)], spec.config), len(got)
    except Exception:  # a verdict that cannot be computed on fewer seeds: no checks yet
        return None, len(got)


# -- running -------------------------------------------------------------------------------------


@dataclass
class PointOutcome:
    """What happened to one point in this invocation."""

    point: SweepPoint
    status: str
    seconds: float = 0.0
    computed: int = 0
    reused: int = 0
    checks: list[dict[str, Any]] | None = None
    failures: list[str] = field(default_factory=list)
    error: str = ""


def run_point(
    plan: SweepPlan,
    point: SweepPoint,
    store: Store,
    executor: str = "local",
    ray_address: str | None = None,
    chunk: int | None = None,
    progress: Progress | None = None,
    db: SweepDB | None = None,
) -> PointOutcome:
    """Run (or resume) one point through the lab's runner and record its status and checks."""
    db = db or SweepDB(store)
    db.update_point(plan.id, point.index, status="running")
    t0 = time.perf_counter()
    try:
        out: RunOutcome = execute(point.spec, store, executor, ray_address, chunk, progress)
    except StallError:
        db.update_point(plan.id, point.index, status="partial")
        raise
    except Exception:
        err = traceback.format_exc()
        db.update_point(plan.id, point.index, status="failed", error=err[-2000:])
        return PointOutcome(point, "failed", time.perf_counter() - t0, error=err)
    except BaseException:  # Ctrl-C, kill: finished seeds are stored, the point resumes
        db.update_point(plan.id, point.index, status="partial")
        raise
    seconds = time.perf_counter() - t0
    if out.verdict is not None:
        verdict, done = out.verdict, point.spec.seeds
    else:  # NaN seeds or an incomplete point: judge what finished (if enough)
        verdict, done = judge_available(point.spec, store)
    checks = check_rows(verdict, point.spec.exp) if verdict is not None else None
    status = "done" if done >= point.spec.seeds else "partial"
    db.update_point(
        plan.id,
        point.index,
        status=status,
        seconds=seconds,
        seeds_done=done,
        checks=checks,
        error="",
    )
    return PointOutcome(
        point,
        status,
        seconds,
        len(out.computed),
        len(out.reused),
        checks,
        list(out.failures),
    )


def _ensure_ray(address: str | None) -> None:
    """Start (or join) Ray once in the driver before point threads submit their tasks."""
    import os

    import ray

    if ray.is_initialized():
        return
    env = {"env_vars": {k: os.environ.get(k, "") for k in ("METALAB_PLUGINS", "XLA_FLAGS")}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=False)
    else:
        ray.init(
            num_cpus=os.cpu_count() or 2,
            runtime_env=env,
            log_to_driver=False,
            include_dashboard=False,
        )


def run_sweep(
    plan: SweepPlan,
    store: Store,
    executor: str = "local",
    ray_address: str | None = None,
    chunk: int | None = None,
    progress: Progress | None = None,
    on_point: Callable[[PointOutcome], None] | None = None,
) -> list[PointOutcome]:
    """Run (or resume) every point of a validated plan; returns the outcomes in point order."""
    progress = progress or Progress(enabled=False)
    db = SweepDB(store)
    db.register(plan)
    outcomes: dict[int, PointOutcome] = {}
    with progress.bar(f"{plan.experiment}: sweep points", total=len(plan.points)) as advance:
        if executor == "ray" and len(plan.points) > 1:
            _ensure_ray(ray_address)
            with ThreadPoolExecutor(max_workers=min(len(plan.points), 32)) as pool:
                futures = {
                    pool.submit(
                        run_point, plan, p, store, executor, ray_address, chunk, progress, db
                    ): p
                    for p in plan.points
                }
                for fut in as_completed(futures):
                    res = fut.result()
                    outcomes[res.point.index] = res
                    if on_point:
                        on_point(res)
                    advance(1)
        else:
            for p in plan.points:
                res = run_point(plan, p, store, executor, ray_address, chunk, progress, db)
                outcomes[p.index] = res
                if on_point:
                    on_point(res)
                advance(1)
    complete = all(o.status == "done" for o in outcomes.values())
    if complete:
        db.finish(plan.id)
    return [outcomes[i] for i in sorted(outcomes)]


# -- reading sweeps back -------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepSummary:
    """One stored sweep, as ``metalab runs`` lists it."""

    id: str
    kind: str
    experiment: str
    preset: str
    seeds: int | None
    axes: tuple[tuple[str, tuple[Any, ...]], ...]
    points: int
    done: int
    partial: int
    failed: int
    created_at: float
    updated_at: float
    finished_at: float | None
    command: str
    note: str

    @property
    def status(self) -> str:
        if self.done == self.points:
            return "complete"
        return f"{self.done}/{self.points} points done"

    @property
    def axes_text(self) -> str:
        return " ".join(
            f"{f}={','.join(json.dumps(v) if not isinstance(v, str) else v for v in vals)}"
            for f, vals in self.axes
        )


def list_sweeps(store: Store | str, experiment: str | None = None) -> list[SweepSummary]:
    """Every stored sweep and scaling study (oldest first), optionally of one experiment."""
    store = store if isinstance(store, Store) else Store(store)
    db = SweepDB(store)
    out = []
    for s in db.sweeps():
        if experiment is not None and s["experiment"] != experiment:
            continue
        pts = db.points(s["id"])
        count = {st: sum(p["status"] == st for p in pts) for st in STATUSES}
        out.append(
            SweepSummary(
                s["id"],
                s["kind"],
                s["experiment"],
                s["preset"],
                s["seeds"],
                tuple((f, tuple(v)) for f, v in s["axes"]),
                len(pts),
                count["done"],
                count["partial"],
                count["failed"],
                s["created_at"],
                s["updated_at"],
                s["finished_at"],
                s["command"],
                s["note"],
            )
        )
    return out


def sweeps_table(store: Store | str, experiments: Sequence[str] | None = None) -> Any:
    """A rich ``Table`` of the stored sweeps and scaling studies (for ``metalab runs``), or None
    if there are none."""
    from rich.table import Table

    rows = [s for s in list_sweeps(store) if not experiments or s.experiment in experiments]
    if not rows:
        return None
    table = Table(title="sweeps and scaling studies (metalab sweep / metalab scale)")
    for col in ("sweep", "kind", "experiment", "preset", "axes", "points", "last"):
        table.add_column(col, overflow="fold")
    for s in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s.updated_at))
        table.add_row(s.id, s.kind, s.experiment, s.preset, s.axes_text, s.status, when)
    return table


def find_sweep(store: Store | str, ref: str) -> SweepSummary:
    """A sweep by id, id prefix, or experiment name (its latest sweep); ConfigError if none."""
    sweeps = list_sweeps(store)
    hits = [s for s in sweeps if s.id.startswith(ref)] or [s for s in sweeps if s.experiment == ref]
    if not hits:
        raise ConfigError(f"no sweep {ref!r} in the store; `metalab runs` lists them")
    ids = {s.id for s in hits}
    if len(ids) > 1 and not all(s.experiment == ref for s in hits):
        raise ConfigError(f"sweep {ref!r} is ambiguous: {', '.join(sorted(ids))}")
    return max(hits, key=lambda s: s.updated_at)


def sweep_points(store: Store | str, ref: str) -> list[dict[str, Any]]:
    """The points of a sweep: index, swept values, status, seeds done, seconds, checks."""
    store = store if isinstance(store, Store) else Store(store)
    return SweepDB(store).points(find_sweep(store, ref).id)


def _scalar_metrics(metrics: Mapping[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        a = np.asarray(v)
        if a.ndim == 0 and a.dtype.kind in "fiub":
            out[k] = float(a)
    return out


def sweep_frame(store: Store | str, sweep: str | None = None, experiment: str | None = None):
    """A pandas DataFrame with one row per (sweep, point, seed): the swept values, every scalar
    metric, and sweep id, kind, experiment, point, preset, seed, config hash, code version.

    ``sweep`` selects one sweep (id, prefix or experiment name); default: every sweep (of
    ``experiment`` if given).
    """
    import pandas as pd

    store = store if isinstance(store, Store) else Store(store)
    db = SweepDB(store)
    chosen = [find_sweep(store, sweep)] if sweep else list_sweeps(store, experiment)
    rows = []
    for s in chosen:
        for p in db.points(s.id):
            got = store.get_results(s.experiment, p["config_hash"], p["code_version"])
            for seed in sorted(got):
                if seed >= p["seeds"]:
                    continue
                rows.append(
                    {
                        "sweep": s.id,
                        "kind": s.kind,
                        "experiment": s.experiment,
                        "point": p["idx"],
                        "preset": p["preset"],
                        **{k: _cell(v) for k, v in p["values"].items()},
                        "seed": seed,
                        **_scalar_metrics(got[seed]),
                        "config_hash": p["config_hash"],
                        "code_version": p["code_version"],
                    }
                )
    return pd.DataFrame(rows)


def checks_frame(store: Store | str, sweep: str):
    """A pandas DataFrame with one row per (point, check) of a sweep: the swept values, the
    check's value, CI, p (raw and adjusted), MDE, effect size and pass, and the point's
    status and seeds."""
    import pandas as pd

    store = store if isinstance(store, Store) else Store(store)
    s = find_sweep(store, sweep)
    rows = []
    for p in SweepDB(store).points(s.id):
        for c in p["checks"] or []:
            rows.append(
                {
                    "sweep": s.id,
                    "point": p["idx"],
                    **{k: _cell(v) for k, v in p["values"].items()},
                    "status": p["status"],
                    "seeds": p["seeds_done"],
                    **{("check" if k == "name" else k): v for k, v in c.items()},
                }
            )
    return pd.DataFrame(rows)


def _cell(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def experiment_of(summary: SweepSummary) -> Experiment:
    return registry.get(summary.experiment)


# -- the ``metalab sweep`` command (registered in metalab.lab.cli) -------------------------------


def configure(sp: Any) -> None:
    """Arguments of ``metalab sweep``."""
    from metalab.lab.cli import add_run_options

    sp.add_argument("name", help="experiment")
    sp.add_argument(
        "overrides",
        nargs="*",
        metavar="field=v1,v2,...",
        help="swept fields (tuple fields separate values with ';'; one value: a fixed override)",
    )
    add_run_options(sp)
    sp.add_argument(
        "--max-points",
        type=int,
        default=MAX_POINTS,
        help=f"largest grid accepted (default {MAX_POINTS})",
    )


def _point_line(o: PointOutcome) -> str:
    vals = " ".join(f"{k}={v}" for k, v in o.point.values.items())
    head = (
        f"point {o.point.index} [{vals}]: {o.status} (computed {o.computed}, reused {o.reused}, "
        f"{o.seconds:.1f}s)"
    )
    if o.error:
        head += " " + o.error.strip().splitlines()[-1]
    for f in o.failures:
        head += f"\n  non-finite result, not stored: {f}"
    for c in o.checks or []:
        ci = "" if math.isnan(c["ci_low"]) else f" [{c['ci_low']:.3g}, {c['ci_high']:.3g}]"
        p = "" if math.isnan(c["p_adjusted"]) else f" p={c['p_adjusted']:.3g}"
        head += f"\n  {'PASS' if c['passed'] else 'FAIL'} {c['name']}: {c['value']:.4g}{ci}{p}"
    return head


def main(args: Any) -> int:
    """``metalab sweep``: validate the grid, run or resume every point, report the trends."""
    from rich.console import Console
    from rich.markup import escape

    from metalab.lab import cli
    from metalab.lab.sweep_report import summary_lines, write_sweep_page

    command = " ".join(
        ["metalab sweep", args.name, *args.overrides, "--preset", args.preset]
        + ([] if args.seeds is None else ["--seeds", str(args.seeds)])
    )
    plan = plan_sweep(
        args.name,
        args.overrides,
        args.preset,
        args.seeds,
        args.executor,
        args.chunk,
        args.max_points,
        command,
    )
    # the lab's checks before any compute (store, report directory, seed counts; compile cache)
    store = cli.prepare_run(args, [p.spec for p in plan.points])
    console = Console(soft_wrap=True)
    n_seeds = plan.points[0].spec.seeds
    console.print(
        f"sweep {plan.id}: {plan.experiment}, {len(plan.points)} point(s) x {n_seeds} seed(s), "
        f"preset {plan.preset}, executor {args.executor}"
    )
    t0 = time.perf_counter()
    try:
        with Progress() as progress:
            outs = run_sweep(
                plan,
                store,
                args.executor,
                args.ray_address,
                args.chunk,
                progress,
                on_point=lambda o: console.print(escape(_point_line(o))),
            )
    except StallError as e:
        cli._restart_after_stall(console, plan.experiment, e)
        return cli.EXIT_ERROR
    except KeyboardInterrupt:
        done = sum(p["status"] == "done" for p in SweepDB(store).points(plan.id))
        console.print(
            f"interrupted; {done} of {len(plan.points)} points complete and every finished seed "
            "is stored; run the same command again to resume"
        )
        return 130
    code = cli.EXIT_OK
    if any(o.failures for o in outs):
        code = cli.EXIT_NONFINITE
    if any(o.status == "failed" for o in outs):
        code = cli.EXIT_ERROR
    md, page, analysis = write_sweep_page(store, plan.id, args.out, html=True)
    for line in summary_lines(analysis):
        console.print(escape(line))
    console.print(f"report: {md} and {page} ({time.perf_counter() - t0:.1f}s in all)")
    return code
