"""ms per generation: metalab LES / LGA vs evosax 0.3.2 with the same weights; one meta-gen.

Run: ``python benchmarks/bbo_generation.py [--sizes 10x16,100x256,1000x1024] [--meta]``.

Each contender runs ``T`` generations on a shifted sphere inside one jitted ``lax.scan``
(compiled once, outside timing); blocks alternate A B A B in one process; we print the median
ms/generation of each and the per-block ratio (evosax time / metalab time, > 1 means metalab
is faster). Outputs are checked to be identical for identical weights and keys (first
generation's samples and update; LGA's whole trajectory can drift by float rounding, see
``tests/bbo/test_equivalence.py``).

``--meta`` times one MetaBBO meta-generation (16 LES candidates x 16 tasks, N 16, T 50,
D <= 10) built from metalab (tasks grouped by function) against the same built from evosax's
blocks (``LearnedES`` + ``MetaBBOBProblem``: a vmapped ``lax.switch`` over functions).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np


def _sphere(x):
    return jnp.sum((x - 0.5) ** 2, axis=-1)


def make_runner(algo, params, d, t, population_based):
    def run(key):
        k0, k1 = jax.random.split(key)
        if population_based:
            x0 = jax.random.normal(k0, (algo.population_size, d))
            state = algo.init(k0, x0, _sphere(x0), params)
        else:
            state = algo.init(k0, jnp.full((d,), 2.0), params)

        def step(s, k):
            ka, kt = jax.random.split(k)
            x, s = algo.ask(ka, s, params)
            s, _ = algo.tell(kt, x, _sphere(x), s, params)
            return s, None

        s, _ = jax.lax.scan(step, state, jax.random.split(k1, t))
        return s.best_fitness

    return jax.jit(run)


def time_pair(fa, fb, reps, t):
    key = jax.random.PRNGKey(0)
    jax.block_until_ready(fa(key))
    jax.block_until_ready(fb(key))
    ta, tb = [], []
    for r in range(reps):
        k = jax.random.PRNGKey(r + 1)
        s = time.perf_counter()
        jax.block_until_ready(fa(k))
        ta.append((time.perf_counter() - s) / t * 1e3)
        s = time.perf_counter()
        jax.block_until_ready(fb(k))
        tb.append((time.perf_counter() - s) / t * 1e3)
    return np.array(ta), np.array(tb)


def check_identical(ours, ref, op, rp, d, population_based):
    key = jax.random.PRNGKey(42)
    if population_based:
        x0 = jax.random.normal(key, (ref.population_size, d))
        so, sr = ours.init(key, x0, _sphere(x0), op), ref.init(key, x0, _sphere(x0), rp)
    else:
        so, sr = ours.init(key, jnp.full((d,), 2.0), op), ref.init(key, jnp.full((d,), 2.0), rp)
    xo, so = jax.jit(ours.ask)(key, so, op)
    xr, sr = ref.ask(key, sr, rp)
    so, _ = jax.jit(ours.tell)(key, xr, _sphere(xr), so, op)
    sr, _ = ref.tell(key, xr, _sphere(xr), sr, rp)
    field = "population" if population_based else "mean"
    return float(jnp.max(jnp.abs(xo - xr))), float(
        jnp.max(jnp.abs(getattr(so, field) - getattr(sr, field)))
    )


def bench_generation(sizes, t, reps, methods=("les", "lga")):
    from evosax.algorithms import LearnedES, LearnedGA

    from metalab.bbo.les import LES
    from metalab.bbo.lga import LGA
    from metalab.bbo.weights import les_from_evosax, lga_from_evosax

    print(
        f"{'method':6s} {'D':>5s} {'N':>5s} {'metalab ms':>11s} {'evosax ms':>10s} "
        f"{'ratio':>6s} {'ratio range':>14s} {'max|dx| ask/tell':>18s}"
    )
    for d, n in sizes:
        for name in methods:
            if name == "les":
                ref = LearnedES(n, jnp.zeros(d))
                ours = LES(n, d, weights=les_from_evosax(ref.les_params))
                pb = False
            else:
                ref = LearnedGA(n, jnp.zeros(d))
                ours = LGA(n, d, weights=lga_from_evosax(ref.lga_params), legacy_sigma_feature=True)
                pb = True
            rp, op = ref.default_params, ours.default_params
            dx = check_identical(ours, ref, op, rp, d, pb)
            tt = max(5, t // max(1, (d * n) // 2000))
            fa = make_runner(ours, op, d, tt, pb)
            fb = make_runner(ref, rp, d, tt, pb)
            ta, tb = time_pair(fa, fb, reps, tt)
            ratio = tb / ta
            print(
                f"{name:6s} {d:5d} {n:5d} {np.median(ta):11.4f} {np.median(tb):10.4f} "
                f"{np.median(ratio):6.2f} {ratio.min():6.2f}-{ratio.max():<6.2f} "
                f"{dx[0]:.1e}/{dx[1]:.1e}",
                flush=True,
            )


def bench_meta(reps):
    """One meta-generation: metalab's grouped evaluation vs evosax's vmapped switch."""
    from evosax.algorithms import LearnedES
    from evosax.problems.bbob.meta_bbob import MetaBBOBProblem
    from jax.flatten_util import ravel_pytree

    from metalab.bbo.les import init_les_net
    from metalab.bbo.metabbo import MetaBBOConfig, make_size_evaluator, meta_fitness
    from metalab.bbo.problems import LES_TRAIN_FNS
    from metalab.bbo.weights import les_from_evosax

    m = 16  # 16 candidates x 16 tasks (functions drawn from 8 training functions)
    fns = LES_TRAIN_FNS[:8]
    size = (2, 10, 16, 50, 16)
    cfg = MetaBBOConfig(train_fns=fns, sizes=(size,), noise_models=("noiseless",))
    theta0, unravel = ravel_pytree(init_les_net(jax.random.PRNGKey(0)))
    thetas = theta0 + 0.1 * jax.random.normal(jax.random.PRNGKey(1), (m, theta0.size))
    evaluate = make_size_evaluator(cfg, size, unravel)
    ours = jax.jit(lambda th, k: meta_fitness(evaluate(th, k)[0]))

    # evosax building blocks: LearnedES + MetaBBOBProblem (vmap over a lax.switch of functions)
    prob = MetaBBOBProblem(
        list(fns), 2, 10, {"noise_model_names": ["noiseless"], "use_stabilization": True}
    )
    es = LearnedES(16, jnp.zeros(10))

    def ev_one(theta, p, key):
        # evosax's LES reads its flax weights from params; map metalab's layout back
        w = unravel(theta)
        tree = {
            "recomb_weights": {
                "params": {
                    "Dense_0": _fl(w["recomb"]["k"]),
                    "Dense_1": _fl(w["recomb"]["q"]),
                    "Dense_2": _fl(w["recomb"]["v"]),
                }
            },
            "lrate_modulation": {
                "params": {
                    "Dense_0": _fl(w["lr"]["hidden"]),
                    "Dense_1": _fl(w["lr"]["mean"]),
                    "Dense_2": _fl(w["lr"]["std"]),
                }
            },
        }
        params = es.default_params.replace(params=tree)
        state = es.init(key, jnp.zeros(10), params)
        ps = prob.init(key, p)

        def step(c, k):
            s, pstate = c
            x, s = es.ask(k, s, params)
            f, pstate, _ = prob.eval(k, x, pstate, p)
            s, _ = es.tell(k, x, f, s, params)
            return (s, pstate), jnp.min(f)

        _, fb = jax.lax.scan(step, (state, ps), jax.random.split(key, 50))
        return fb[-1]

    def theirs_fn(th, k):
        ps = jax.vmap(prob.sample_params)(jax.random.split(k, 16))
        keys = jax.random.split(k, 16)
        f = jax.vmap(lambda p, kk: jax.vmap(lambda t: ev_one(t, p, kk))(th))(ps, keys)
        return meta_fitness(f)

    theirs = jax.jit(theirs_fn)
    del les_from_evosax
    ta, tb = time_pair(lambda k: ours(thetas, k), lambda k: theirs(thetas, k), reps, 1)
    print(
        f"meta-generation (16 cand x 16 tasks, N 16, T 50): metalab {np.median(ta):.0f} ms, "
        f"evosax blocks {np.median(tb):.0f} ms, ratio {np.median(tb / ta):.2f} "
        f"(range {np.min(tb / ta):.2f}-{np.max(tb / ta):.2f})"
    )


def _fl(p):
    return {"kernel": p["w"], "bias": p["b"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10x16,100x256,1000x1024")
    ap.add_argument("--generations", type=int, default=200)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--methods", default="les,lga", help="comma-separated subset of les,lga")
    ap.add_argument("--meta", action="store_true", help="also time one meta-generation")
    a = ap.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in a.sizes.split(",")]
    bench_generation(sizes, a.generations, a.reps, tuple(a.methods.split(",")))
    if a.meta:
        bench_meta(max(3, a.reps // 2))


if __name__ == "__main__":
    main()
