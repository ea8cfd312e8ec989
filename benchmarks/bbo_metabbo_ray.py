"""MetaBBO meta-generations on Ray with 1 and 2 local workers vs in-process, and N machines.

Run: ``python benchmarks/bbo_metabbo_ray.py [--sizes wide|small] [--epochs 1] [--optimiser les]``.

``--sizes wide`` (default) uses meta-training's own size table (``metabbo.WIDE_SIZES``: ten
sizes, D 2-96, N 8-256, T 25-400), one size per meta-generation in the training order;
``--sizes small`` one small size (D 2-10, N 16, T 50, K 16), where a meta-generation takes
~0.2 s and Ray's per-call overhead is visible. 16 candidates + 2 probes. Each executor runs
one warm-up epoch (every actor compiles its evaluator for every size) before timing ``--epochs``
epochs; we print seconds per epoch and the median per meta-generation, the driver-side serial
part (ask, tell, meta-fitness: measured with a no-op evaluation), and the speed-up over one
worker. The projection to N machines assumes the
evaluation splits evenly over at most ``M + 2`` candidates (Amdahl with the measured serial
time and a per-call Ray overhead measured as time(1 worker) - time(local)).
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
    a = ap.parse_args()
    sizes = WIDE_SIZES if a.sizes == "wide" else ((2, 10, 16, 50, 16),)
    epochs = a.epochs if a.sizes == "wide" else 6 * a.epochs
    cfg = MetaBBOConfig(optimiser=a.optimiser, init="evosax", sizes=sizes)
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
    med = {k: float(np.sum(v)) / epochs / len(sizes) for k, v in res.items()}
    for k, v in med.items():
        print(
            f"{k:28s} {v:7.2f} s/meta-generation (mean over {len(res[k])}; median"
            f" {np.median(res[k]):.2f}, min {min(res[k]):.2f}, max {max(res[k]):.2f})"
        )
    one, two = med["ray, 1 worker(s)"], med["ray, 2 worker(s)"]
    print(f"speed-up 2 workers vs 1: {one / two:.2f}x")
    serial = med["serial (no-op evaluation)"]
    overhead = max(0.0, one - med["local (in-process)"])
    work = max(1e-9, med["local (in-process)"] - serial)
    m = cfg.meta_population + 2
    for n in (1, 2, 4, 8, 18, 64):
        t = serial + overhead + work / min(n, m)
        print(f"projected {n:3d} machines: {t:6.2f} s/meta-gen, {one / t:5.2f}x vs 1 worker")


if __name__ == "__main__":
    main()
