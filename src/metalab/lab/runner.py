"""Run one experiment: validate, resume from the store, execute seeds, guard NaNs, judge.

Order of work (so that bad input never touches the store):

1. resolve the experiment, preset and overrides (a :class:`ConfigError` otherwise), including
   path-valued fields;
2. skip seeds already in the store for this (experiment, config hash, code version); a stored
   row that cannot be read back is named, deleted and recomputed;
3. lease the seeds to compute (another process running the same group computes the others),
   compile (timed apart), run, and store every seed as soon as it finishes (a vmapped chunk's
   seeds finish together); a seed whose metrics hold a NaN/Inf is reported with the metric and
   step and is not stored;
4. if every seed is present, compute the verdict from the stored metrics and store it.

Ctrl-C (or SIGTERM, through the CLI) raises :class:`Interrupted` carrying the outcome so far;
the invocation is then marked ``interrupted`` and this process's leases are released.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metalab.core.pytree import first_nonfinite
from metalab.experiments import registry
from metalab.experiments.base import PRESETS, Experiment, Verdict
from metalab.lab.config import ConfigError, apply_overrides, config_hash, config_to_dict
from metalab.lab.executors import (
    ChunkRunner,
    SeedResult,
    chunk_seeds,
    compile_seconds,
    default_chunk,
    run_ray,
)
from metalab.lab.progress import Progress, fmt_seconds
from metalab.lab.store import HOST, CorruptRow, Store, StoreError
from metalab.lab.version import code_version

EXECUTORS = ("local", "ray")
LEASE_SECONDS = float(os.environ.get("METALAB_LEASE_SECONDS", "60"))
POLL_SECONDS = 1.0


@dataclass(frozen=True)
class RunSpec:
    """A validated request to run an experiment."""

    exp: Experiment
    preset: str
    config: Any
    seeds: int
    config_hash: str
    code_version: str


@dataclass
class RunOutcome:
    spec: RunSpec
    computed: list[int] = field(default_factory=list)
    reused: list[int] = field(default_factory=list)
    by_others: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    corrupt: list[CorruptRow] = field(default_factory=list)
    verdict: Verdict | None = None
    compile_seconds: float = 0.0
    xla_seconds: float = 0.0  # of which XLA compilation (or loading from the compile cache)
    run_seconds: float = 0.0

    @property
    def stored(self) -> int:
        return len(set(self.computed) | set(self.reused) | set(self.by_others))


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`execute`; ``outcome`` says what was stored before it."""

    def __init__(self, outcome: RunOutcome) -> None:
        super().__init__("interrupted")
        self.outcome = outcome


def resolve(
    name: str,
    preset: str = "quick",
    seeds: int | None = None,
    overrides: Sequence[str] = (),
    executor: str = "local",
    chunk: int | None = None,
) -> RunSpec:
    """Validate everything about a run request before any compute or write."""
    if preset not in PRESETS:
        raise ConfigError(f"--preset: got {preset!r}; allowed: {', '.join(PRESETS)}")
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor: got {executor!r}; allowed: {', '.join(EXECUTORS)}")
    try:
        exp = registry.get(name)
    except KeyError as e:
        raise ConfigError(str(e.args[0])) from None
    if seeds is not None and seeds < 1:
        raise ConfigError(f"--seeds: got {seeds}; must be >= 1")
    if chunk is not None and chunk < 1:
        raise ConfigError(f"--chunk: got {chunk}; must be >= 1")
    config = apply_overrides(exp.config(preset), overrides)
    n = seeds if seeds is not None else int(exp.seeds.get(preset, 5))
    version = code_version(*registry.modules_of(exp.name))
    return RunSpec(exp, preset, config, n, config_hash(config), version)


def estimate_seconds(spec: RunSpec, store: Store, n_seeds: int) -> tuple[float, int] | None:
    """``(seconds, from_k_seeds)``: ``n_seeds`` times the mean stored wall time per seed of
    this config (else of any config of the experiment); None if nothing is stored."""
    walls = store.wall_seconds(spec.exp.name, spec.config_hash) or store.wall_seconds(spec.exp.name)
    if not walls:
        return None
    return n_seeds * sum(walls) / len(walls), len(walls)


class _Heartbeat:
    """Renews this process's leases while it works (a daemon thread)."""

    def __init__(self, store: Store, owner: str, ttl: float) -> None:
        self.store, self.owner, self.ttl = store, owner, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="metalab-leases")

    def _loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with contextlib.suppress(Exception):  # a busy store: try again at the next beat
                self.store.renew(self.owner, self.ttl)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def execute(
    spec: RunSpec,
    store: Store,
    executor: str = "local",
    ray_address: str | None = None,
    chunk: int | None = None,
    progress: Progress | None = None,
) -> RunOutcome:
    """Run the missing seeds of ``spec``, store them, and compute the verdict if complete."""
    exp, cfg = spec.exp, spec.config
    group = (exp.name, spec.config_hash, spec.code_version)
    progress = progress or Progress(enabled=False)
    out = RunOutcome(spec)
    wanted = list(range(spec.seeds))
    good, corrupt = store.scan_results(*group, wanted)
    if corrupt:
        for c in corrupt:
            progress.note(f"corrupt stored row, deleted and recomputed: {c}")
        store.delete_rows(corrupt)
        out.corrupt = corrupt
    out.reused = sorted(good)
    todo = [s for s in wanted if s not in good]
    size = chunk or default_chunk(len(todo) or 1, cap=exp.max_chunk or 8)
    if os.environ.get("METALAB_MAX_CHUNK"):  # set by the CLI when it restarts after a stall
        size = max(1, min(size, int(os.environ["METALAB_MAX_CHUNK"])))
    if todo and len(todo) >= 16:
        est = estimate_seconds(spec, store, len(todo))
        if est is not None:
            progress.note(
                f"{exp.name}: estimate {fmt_seconds(est[0])} for {len(todo)} seeds "
                f"(mean of {est[1]} stored seeds)"
            )
    inv = store.start_invocation(
        exp.name,
        spec.preset,
        spec.config_hash,
        config_to_dict(cfg),
        spec.code_version,
        spec.seeds,
        executor,
    )
    owner = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    run_t0, compile_t0 = time.perf_counter(), compile_seconds()
    status = "failed"
    try:
        if todo:
            with (
                _Heartbeat(store, owner, LEASE_SECONDS),
                progress.bar(f"{exp.name}: seeds", total=len(todo)) as advance,
            ):
                _compute(
                    spec, store, out, todo, size, executor, ray_address, owner, progress, advance
                )
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise Interrupted(out) from None
    finally:
        out.xla_seconds = compile_seconds() - compile_t0
        out.compile_seconds = max(out.compile_seconds, out.xla_seconds)
        out.run_seconds = max(0.0, time.perf_counter() - run_t0 - out.compile_seconds)
        try:
            store.release(owner)
            store.finish_invocation(inv, out.compile_seconds, out.run_seconds, status)
        except StoreError:
            if status == "finished":
                raise
    if not out.failures:
        out.verdict = judge(spec, store)
    return out


def _compute(
    spec: RunSpec,
    store: Store,
    out: RunOutcome,
    todo: list[int],
    size: int,
    executor: str,
    ray_address: str | None,
    owner: str,
    progress: Progress,
    advance,
) -> None:
    """Lease, run and store the seeds in ``todo`` (others' leased seeds are waited for)."""
    exp, cfg = spec.exp, spec.config
    group = (exp.name, spec.config_hash, spec.code_version)

    def keep(results: list[SeedResult]) -> None:
        good = []
        for r in results:
            bad = first_nonfinite(r.metrics)
            if bad is None:
                good.append((r.seed, r.metrics, r.wall_seconds))
            else:
                key, step = bad
                out.failures.append(
                    f"seed {r.seed}: non-finite value in metric {key!r} at step {step}"
                )
        store.put_results(*group, good)
        out.computed.extend(s for s, _, _ in good)
        store.release(owner, [r.seed for r in results])
        advance(len(results))

    runner: ChunkRunner | None = None
    pending = list(todo)
    waiting_noted = False
    while pending:
        limit = len(pending) if executor == "ray" else (size if exp.vmappable else 1)
        claimed = store.claim(*group, pending, owner, limit, LEASE_SECONDS)
        if not claimed:
            stored = store.finished_seeds(*group)
            theirs = [s for s in pending if s in stored]
            if theirs:
                out.by_others.extend(theirs)
                advance(len(theirs))
                pending = [s for s in pending if s not in stored]
                continue
            if not waiting_noted:
                progress.note(
                    f"{exp.name}: waiting for {len(pending)} seed(s) leased by another process"
                )
                waiting_noted = True
            time.sleep(POLL_SECONDS)
            continue
        pending = [s for s in pending if s not in claimed]
        if executor == "ray":
            progress.note(f"{exp.name}: {len(claimed)} seed(s) submitted to Ray")
            for res in run_ray(exp, cfg, size, chunk_seeds(claimed, size), ray_address):
                keep(res)
            continue
        if runner is None:
            runner = ChunkRunner(exp, cfg, size)
            if exp.vmappable:
                with progress.phase(f"{exp.name}: compile ({size} seeds per call)"):
                    out.compile_seconds = runner.compile()
        if exp.vmappable:
            keep(runner.run(claimed))  # may raise StallError: finished seeds are stored
        else:
            for s in claimed:
                keep(runner.run([s]))


def judge(spec: RunSpec, store: Store) -> Verdict | None:
    """Compute and store the verdict from the stored seeds (None if any seed is missing)."""
    got = store.get_results(spec.exp.name, spec.config_hash, spec.code_version, range(spec.seeds))
    if len(got) < spec.seeds:
        return None
    verdict = spec.exp.judge([got[s] for s in range(spec.seeds)], spec.config)
    store.put_verdict(
        spec.exp.name, spec.config_hash, spec.code_version, spec.seeds, verdict.to_dict()
    )
    return verdict
