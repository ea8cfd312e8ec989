"""Run one experiment: validate, resume from the store, execute seeds, guard NaNs, judge.

Order of work (so that bad input never touches the store):

1. resolve the experiment, preset and overrides (a :class:`ConfigError` otherwise);
2. skip seeds already in the store for this (experiment, config hash, code version);
3. compile (timed apart), run the remaining seeds chunk by chunk, and write each finished
   chunk in one transaction; a seed whose metrics hold a NaN/Inf is reported with the metric
   and step and is not stored;
4. if every seed is present, compute the verdict from the stored metrics and store it.
"""

from __future__ import annotations

import os
import time
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
    default_chunk,
    run_ray,
)
from metalab.lab.progress import Progress
from metalab.lab.store import Store
from metalab.lab.version import code_version

EXECUTORS = ("local", "ray")


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
    failures: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    compile_seconds: float = 0.0
    run_seconds: float = 0.0


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
    progress = progress or Progress(enabled=False)
    out = RunOutcome(spec)
    done = store.finished_seeds(exp.name, spec.config_hash, spec.code_version)
    wanted = list(range(spec.seeds))
    out.reused = [s for s in wanted if s in done]
    todo = [s for s in wanted if s not in done]
    inv = store.start_invocation(
        exp.name,
        spec.preset,
        spec.config_hash,
        config_to_dict(cfg),
        spec.code_version,
        spec.seeds,
        executor,
    )
    size = chunk or default_chunk(len(todo) or 1, cap=exp.max_chunk or 8)
    if os.environ.get("METALAB_MAX_CHUNK"):  # set by the CLI when it restarts after a stall
        size = max(1, min(size, int(os.environ["METALAB_MAX_CHUNK"])))
    run_t0 = time.perf_counter()

    def keep(chunk_results: list[SeedResult]) -> None:
        good = []
        for r in chunk_results:
            bad = first_nonfinite(r.metrics)
            if bad is None:
                good.append((r.seed, r.metrics, r.wall_seconds))
            else:
                key, step = bad
                out.failures.append(
                    f"seed {r.seed}: non-finite value in metric {key!r} at step {step}"
                )
        store.put_results(exp.name, spec.config_hash, spec.code_version, good)
        out.computed.extend(s for s, _, _ in good)

    if todo:
        with progress.bar(f"{exp.name}: seeds", total=len(todo)) as advance:
            if executor == "ray":
                progress.note(f"{exp.name}: {len(todo)} seed(s) submitted to Ray")
                for res in run_ray(exp, cfg, size, chunk_seeds(todo, size), ray_address):
                    keep(res)
                    advance(len(res))
            else:
                runner = ChunkRunner(exp, cfg, size)
                if exp.vmappable:
                    with progress.phase(f"{exp.name}: compile ({size} seeds per call)"):
                        out.compile_seconds = runner.compile()
                for c in chunk_seeds(todo, size):
                    res = runner.run(c)  # may raise StallError: finished chunks are stored
                    keep(res)
                    advance(len(res))
    out.run_seconds = time.perf_counter() - run_t0 - out.compile_seconds
    store.finish_invocation(inv, out.compile_seconds, out.run_seconds)
    if not out.failures:
        out.verdict = judge(spec, store)
    return out


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
