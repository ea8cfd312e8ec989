"""Executors: run chunks of seeds of one experiment and hand back per-seed numpy metrics.

* ``local``: seeds of a chunk are vmapped into one compiled call when the experiment allows
  (``Experiment.vmappable``), otherwise run one after the other. Compilation is done ahead of
  time (``jit(...).lower(...).compile()``) so its cost is measured apart from the run.
* ``ray``: each chunk is a Ray task running exactly the same chunk function, so Ray and local
  give the same numbers for the same seeds; the driver writes results to the one store as
  tasks finish.

A seed's key is ``jax.random.PRNGKey(seed)``, independent of chunking and executor.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from metalab.experiments import registry
from metalab.experiments.base import Experiment, to_numpy_metrics

STALL_SECONDS = float(os.environ.get("METALAB_STALL_SECONDS", "60"))
STALL_RETRIES = 0  # a wedged execution blocks later ones on the device


_ABANDONED: list[Any] = []  # stalled executions: they pin the process at interpreter exit


class StallError(RuntimeError):
    """The XLA runtime made no progress on a chunk (see :meth:`ChunkRunner._execute`).

    ``chunk`` is the number of seeds per call that stalled. The process cannot recover: later
    executions queue behind the wedged one, so the CLI restarts itself with smaller chunks.
    """

    def __init__(self, message: str, chunk: int) -> None:
        super().__init__(message)
        self.chunk = chunk


_COMPILE_SECONDS = [0.0]  # backend compile time of this process (jax monitoring events)
_LISTENING = [False]


def _on_duration(event: str, duration: float, *args: Any, **kwargs: Any) -> None:
    if event == "/jax/core/compile/backend_compile_duration":
        _COMPILE_SECONDS[0] += float(duration)


def compile_seconds() -> float:
    """Seconds this process has spent in XLA compilation (or loading compiled programs from
    the persistent cache) since the first call; a monotone counter."""
    if not _LISTENING[0]:
        jax.monitoring.register_event_duration_secs_listener(_on_duration)
        _LISTENING[0] = True
    return _COMPILE_SECONDS[0]


def enable_compile_cache(directory: str | os.PathLike) -> Path:
    """Turn on JAX's persistent compilation cache in ``directory`` for this process and for
    Ray workers it starts (compiled programs are reused across runs with the same code)."""
    path = Path(directory).resolve()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    # Programs that compile faster than this are not worth a disk round trip.
    min_seconds = os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_seconds))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(path)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = min_seconds
    return path


def abandoned_executions() -> int:
    """How many stalled executions this process abandoned (the CLI then exits with os._exit,
    since a wedged execution would block the interpreter's shutdown forever)."""
    return len(_ABANDONED)


@dataclass(frozen=True)
class SeedResult:
    seed: int
    metrics: dict[str, np.ndarray]
    wall_seconds: float


def seed_keys(seeds: Sequence[int]) -> jnp.ndarray:
    return jnp.stack([jax.random.PRNGKey(int(s)) for s in seeds])


def chunk_seeds(seeds: Sequence[int], chunk: int) -> list[list[int]]:
    return [list(seeds[i : i + chunk]) for i in range(0, len(seeds), chunk)]


def default_chunk(n_seeds: int, cap: int = 8) -> int:
    """Seeds per compiled call: all of them up to ``cap``, else equal-sized chunks."""
    if n_seeds <= 0:
        return 1
    return math.ceil(n_seeds / math.ceil(n_seeds / cap))


class ChunkRunner:
    """Runs chunks of a fixed size for one (experiment, config); compiles once."""

    def __init__(self, exp: Experiment, config: Any, chunk: int) -> None:
        self.exp, self.config, self.chunk = exp, config, chunk
        self._compiled: Callable | None = None
        self.compile_seconds = 0.0

    def compile(self) -> float:
        """Compile the vmapped run for this chunk size (no-op if not vmappable)."""
        if not self.exp.vmappable or self._compiled is not None:
            return self.compile_seconds
        cfg, run = self.config, self.exp.run
        fn = jax.jit(jax.vmap(lambda k: run(cfg, k)))
        t0 = time.perf_counter()
        fn.lower(seed_keys(range(self.chunk))).compile()
        self.compile_seconds = time.perf_counter() - t0
        # Execute through the jitted function: it reuses the executable compiled above (jax
        # caches compilations), and unlike the AOT object it also passes the constants that
        # newer jax versions hoist out of closures as extra arguments.
        self._compiled = fn
        return self.compile_seconds

    def run(self, seeds: Sequence[int]) -> list[SeedResult]:
        if len(seeds) > self.chunk:
            raise ValueError(f"chunk of {len(seeds)} seeds exceeds chunk size {self.chunk}")
        if not self.exp.vmappable:
            out = []
            for s in seeds:
                t0 = time.perf_counter()
                m = jax.block_until_ready(self.exp.run(self.config, jax.random.PRNGKey(int(s))))
                out.append(SeedResult(int(s), to_numpy_metrics(m), time.perf_counter() - t0))
            return out
        self.compile()
        padded = list(seeds) + [seeds[-1]] * (self.chunk - len(seeds))  # same shape: no recompile
        t0 = time.perf_counter()
        batched = self._execute(seed_keys(padded), seeds)
        wall = (time.perf_counter() - t0) / len(seeds)
        host = {k: np.asarray(v) for k, v in batched.items()}
        return [
            SeedResult(int(s), {k: v[i] for k, v in host.items()}, wall)
            for i, s in enumerate(seeds)
        ]

    def _execute(self, keys: jnp.ndarray, seeds: Sequence[int]) -> Any:
        """Run the compiled chunk, watching for a stalled XLA runtime.

        jaxlib 0.10.2's CPU runtime parks every worker thread with the result never signalled
        (seen with vmapped while-loops; on an idle AMD EPYC it happened on every run of
        domino-gridworld's smoke program), which is why ``pyproject.toml`` pins jax 0.9.x, where
        the same program completes. The watchdog stays as a guard. Execution is asynchronous,
        so we poll readiness and the process's CPU time: if no CPU time is spent for
        ``STALL_SECONDS`` while the result is pending, the execution is abandoned and a
        :class:`StallError` is raised (finished chunks are already stored).
        """
        for _ in range(STALL_RETRIES + 1):
            out = self._compiled(keys)
            leaves = jax.tree.leaves(out)
            window_cpu, window_start, idle = time.process_time(), time.monotonic(), 0.0
            while not all(x.is_ready() for x in leaves):
                time.sleep(0.05)
                now = time.monotonic()
                if now - window_start >= 5.0:
                    cpu = time.process_time()
                    # Less than 1% of a core in the window: the runtime is not computing.
                    idle = idle + (now - window_start) if cpu - window_cpu < 0.05 else 0.0
                    window_cpu, window_start = cpu, now
                    if idle >= STALL_SECONDS:
                        _ABANDONED.append(out)
                        break
            else:
                return out
        raise StallError(
            f"XLA's CPU runtime stalled on seeds {list(seeds)} ({STALL_RETRIES + 1} attempts, "
            f"no CPU progress for {STALL_SECONDS:.0f}s each); finished seeds are stored: re-run "
            "the same command to resume, or use a smaller --chunk",
            self.chunk,
        )


# -- Ray ----------------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _worker_runner(name: str, config: Any, chunk: int) -> ChunkRunner:
    """One compiled runner per (experiment, config, chunk size) per Ray worker process."""
    return ChunkRunner(registry.get(name), config, chunk)


def _ray_chunk(name: str, config: Any, chunk: int, seeds: list[int]) -> list[SeedResult]:
    return _worker_runner(name, config, chunk).run(seeds)


def run_ray(
    exp: Experiment,
    config: Any,
    chunk: int,
    chunks: Sequence[Sequence[int]],
    address: str | None,
) -> Iterator[list[SeedResult]]:
    """Submit each chunk as a Ray task; yield results as tasks finish (any order)."""
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise RuntimeError(
            "the ray executor needs the 'ray' extra: pip install 'metalab[ray]'"
        ) from e
    if not ray.is_initialized():
        keys = (
            "METALAB_PLUGINS",
            "XLA_FLAGS",
            "JAX_COMPILATION_CACHE_DIR",
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
        )
        env = {"env_vars": {k: os.environ[k] for k in keys if k in os.environ}}
        if address:
            ray.init(address=address, runtime_env=env, log_to_driver=False)
        else:
            ray.init(
                num_cpus=os.cpu_count() or 2,
                runtime_env=env,
                log_to_driver=False,
                include_dashboard=False,
            )
    remote = ray.remote(num_cpus=1)(_ray_chunk)
    pending = [remote.remote(exp.name, config, chunk, list(c)) for c in chunks]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        yield ray.get(done[0])
