"""MetaBBO meta-generations on Ray with 1 and 2 local workers vs in-process, and N machines.

Run: ``python benchmarks/bbo_metabbo_ray.py [--sizes wide|small] [--epochs 1] [--optimiser les]``.

``--sizes wide`` (default) uses meta-training's own size table (``metabbo.WIDE_SIZES``: ten
sizes, D 2-96, N 8-256, T 25-400), one size per meta-generation in the training order;
``--sizes small`` one small size (D 2-10, N 16, T 50, K 16), where a meta-generation takes
~0.2 s and Ray's per-call overhead is visible. 16 candidates + 2 probes. Each executor runs
one warm-up epoch (every actor compiles its evaluator for every size) before timing ``--epochs``
epochs; we print the mean seconds per meta-generation, the driver-side serial part (ask,
tell, meta-fitness: measured with a no-op evaluation), and the speed-up over one worker. The
projection to N machines is measured, not assumed: the in-process time to evaluate
``ceil((M + 2) / N)`` candidates (the largest worker's share) on every size, plus the serial
part and Ray's per-call overhead (time(1 worker) - time(local)).
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np
from jax.flatten_util import ravel_pytree

from metalab.bbo.metabbo import (
    WIDE_SIZES,
    LocalExecutor,
    MetaBBOConfig,
    RayExecutor,
    init_net,
    make_outer_steps,
    meta_generation,
)


def time_gens(cfg, executor, epochs) -> list[float]:
    theta0, unravel = ravel_pytree(init_net(cfg))
    outer, op, ask, tell = make_outer_steps(cfg, theta0, unravel)
    state = outer.init(jax.random.PRNGKey(0), theta0, op)
    n = len(cfg.sizes)
    for g in range(n):  # warm-up epoch: every size compiled on every worker
        state, _ = meta_generation(cfg, state, g, ask, tell, executor, theta0)
    out = []
    for g in range(n, n * (epochs + 1)):
        t = time.perf_counter()
        state, _ = meta_generation(cfg, state, g, ask, tell, executor, theta0)
        out.append(time.perf_counter() - t)
    return out


class _NoOp:
    def __init__(self, sizes) -> None:
        self.sizes = sizes

    def __call__(self, size_index, thetas, key):
        z = np.zeros((self.sizes[size_index][-1], thetas.shape[0]), np.float32)
        return z + np.arange(thetas.shape[0]), z


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", choices=("wide", "small"), default="wide")
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs (one per size each)")
    ap.add_argument("--optimiser", default="les")
    ap.add_argument(
        "--chunks-only", action="store_true", help="only the in-process chunk timings (1 core)"
    )
    a = ap.parse_args()
    sizes = WIDE_SIZES if a.sizes == "wide" else ((2, 10, 16, 50, 16),)
    epochs = a.epochs if a.sizes == "wide" else 6 * a.epochs
    cfg = MetaBBOConfig(optimiser=a.optimiser, init="evosax", sizes=sizes)
    if a.chunks_only:
        chunk_times(cfg, sorted({_share(cfg, n) for n in NS}))
        return
    res = {"serial (no-op evaluation)": time_gens(cfg, _NoOp(sizes), epochs)}
    res["local (in-process)"] = time_gens(cfg, LocalExecutor(cfg), epochs)
    for w in (1, 2):
        ex = RayExecutor(cfg, workers=w)
        try:
            res[f"ray, {w} worker(s)"] = time_gens(cfg, ex, epochs)
        finally:
            ex.close()
            import ray

            ray.shutdown()
    mean = {k: float(np.sum(v)) / epochs / len(sizes) for k, v in res.items()}
    for k, v in mean.items():
        print(
            f"{k:28s} {v:7.2f} s/meta-generation (mean over {len(res[k])}; median"
            f" {np.median(res[k]):.2f}, min {min(res[k]):.2f}, max {max(res[k]):.2f})"
        )
    one, two = mean["ray, 1 worker(s)"], mean["ray, 2 worker(s)"]
    print(f"speed-up 2 workers vs 1: {one / two:.2f}x")
    serial = mean["serial (no-op evaluation)"]
    overhead = max(0.0, one - mean["local (in-process)"])
    print(
        "projection to N machines (one worker each): serial part + Ray overhead (ray 1 worker -"
        " local) + the measured in-process evaluation time of ceil(M / N) candidates, the share"
        " of the largest worker (evaluation time is not proportional to the candidate count:"
        " a meta-generation at these sizes is bound by per-step overhead, not arithmetic)"
    )
    chunk_t = chunk_times(cfg, sorted({_share(cfg, n) for n in NS}))
    for n in NS:
        c = _share(cfg, n)
        t = serial + overhead + chunk_t[c]
        print(
            f"projected {n:3d} machines: {c:2d} candidates each, {t:6.2f} s/meta-gen, "
            f"{one / t:5.2f}x vs 1 worker"
        )


NS = (1, 2, 3, 6, 18)


def _share(cfg, n: int) -> int:
    """Candidates (M + 2 probes) evaluated by the largest of ``n`` workers."""
    return -(-(cfg.meta_population + 2) // n)


def chunk_times(cfg, chunks) -> dict[int, float]:
    """Mean in-process seconds per meta-generation to evaluate ``c`` candidates (one epoch)."""
    theta0, _ = ravel_pytree(init_net(cfg))
    ex = LocalExecutor(cfg)
    key = np.asarray(jax.random.PRNGKey(0))
    out = {}
    for c in chunks:
        thetas = np.tile(np.asarray(theta0)[None], (c, 1))
        for i in range(len(cfg.sizes)):  # compile this shape for every size
            ex(i, thetas, key)
        t = time.perf_counter()
        for i in range(len(cfg.sizes)):
            ex(i, thetas, key)
        out[c] = (time.perf_counter() - t) / len(cfg.sizes)
        print(f"  in-process evaluation of {c:2d} candidates: {out[c]:.3f} s/meta-gen", flush=True)
    return out


if __name__ == "__main__":
    main()
