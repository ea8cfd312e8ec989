"""Throughput of metalab.models against what a user would pick instead.

1. Word-LM training step at the ``alstm-lm`` quick preset (B 32, T 35, King James Bible,
   V 2000, E 32): metalab's aLSTM (H 64, policy 16) and parameter-matched LSTM from
   ``models/lm.py`` (input projections hoisted out of the scan), against the same models built
   the way a flax user would (``nn.RNN`` over ``ALSTMCell`` / ``nn.OptimizedLSTMCell``), in
   CPU time per step (``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false``, as the lab runs).
2. Local Moran's I on Baltimore (n 211, k 8): metalab JAX (jitted) vs ``esda.Moran_Local``
   with ``permutations=0`` (the analytic part only).
3. Sharpe + Calmar + max drawdown of 64 series of 2,500 days: metalab JAX (jit, vmap) vs
   ``empyrical`` (per series loop, as one would call it).

Contenders are timed alternately in blocks (A B C A B C ...) in one process; medians, min, max
and the median of per-block ratios are printed. Compilation is timed separately.
Run: ``python benchmarks/models_throughput.py [--blocks 5]``.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax
import jax.numpy as jnp
import numpy as np


def _timeit(fn, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def _report(title: str, unit: str, times: dict[str, list[float]], ref: str) -> None:
    print(f"\n## {title}")
    for name, ts in times.items():
        a = np.asarray(ts)
        ratio = np.median(np.asarray(times[ref]) / a)
        print(
            f"{name:28s} median {np.median(a) * 1e3:9.3f} ms/{unit} (min {a.min() * 1e3:.3f}, "
            f"max {a.max() * 1e3:.3f}); speed vs {ref}: {ratio:.2f}x"
        )


def _flax_lm_step(cell, cfg, data):
    """A word-LM training step built the way a flax user would: nn.RNN over a flax cell."""
    import flax.linen as nn
    import optax

    class LM(nn.Module):
        @nn.compact
        def __call__(self, tokens):
            e = nn.Embed(cfg.vocab, cfg.embed)(tokens)
            return nn.Dense(cfg.vocab)(nn.RNN(cell)(e))

    model = LM()
    x, y = data.train[:, : cfg.bptt], data.train[:, 1 : cfg.bptt + 1]
    params = model.init(jax.random.PRNGKey(0), x)
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))
    opt = tx.init(params)

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, x), y).mean()

    @jax.jit
    def steps(p, o):
        def one(c, _):
            p, o = c
            g = jax.grad(loss)(p)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), o), None

        return jax.lax.scan(one, (p, o), None, length=10)[0]

    return steps, (params, opt)


def bench_lm(blocks: int, reps: int) -> None:
    """CPU time per training step (the machine is shared: wall time is not comparable)."""
    import dataclasses

    import flax.linen as nn

    from metalab.experiments.alstm_lm import PRESETS, lm_configs
    from metalab.models.adaptive import ALSTMCell
    from metalab.models.lm import make_data, make_lm_steps, param_count
    from metalab.models.lm_data import load_kjv

    qcfg = PRESETS["quick"]
    corpus = load_kjv(qcfg.max_vocab)
    a_cfg, l_cfg = lm_configs(qcfg, len(corpus.vocab))
    a_cfg = dataclasses.replace(a_cfg, eval_every=10)
    l_cfg = dataclasses.replace(l_cfg, eval_every=10)
    print(
        f"params: aLSTM {param_count(a_cfg)} (H {a_cfg.hidden}), LSTM {param_count(l_cfg)} "
        f"(H {l_cfg.hidden}); B {a_cfg.batch_size}, T {a_cfg.bptt}, V {a_cfg.vocab}"
    )
    data = make_data(corpus.train[:100_000], corpus.valid[:5000], a_cfg)
    runners = {}
    for name, c in (("metalab aLSTM (lm.py)", a_cfg), ("metalab LSTM (lm.py)", l_cfg)):
        st = make_lm_steps(c)
        block = jax.jit(st.block)
        runners[name] = [
            lambda s, block=block: block(s, data)[0],
            st.init_state(jax.random.PRNGKey(0), data),
        ]
    for name, cell in (
        ("flax nn.RNN(ALSTMCell)", ALSTMCell(a_cfg.hidden, a_cfg.adapt)),
        ("flax nn.RNN(OptimizedLSTMCell)", nn.OptimizedLSTMCell(l_cfg.hidden)),
    ):
        f, state = _flax_lm_step(cell, a_cfg, data)
        runners[name] = [lambda s, f=f: f(*s), state]
    for name, (f, s) in runners.items():
        t0 = time.perf_counter()
        runners[name][1] = jax.block_until_ready(f(s))
        print(f"{name}: compile + 10 steps {time.perf_counter() - t0:.2f} s")

    def run(name):
        f, s = runners[name]
        runners[name][1] = jax.block_until_ready(f(s))

    times = {name: [] for name in runners}
    for _ in range(blocks):
        for name in runners:
            t0 = time.process_time()
            for _ in range(reps):
                run(name)
            times[name].append((time.process_time() - t0) / (10 * reps))
    _report("word-LM training step (CPU time)", "step", times, "metalab LSTM (lm.py)")


def bench_moran(blocks: int, reps: int) -> None:
    import esda
    import libpysal

    from metalab.models.moran import local_moran
    from metalab.models.spatial_data import load_baltimore

    d = load_baltimore()
    w = libpysal.weights.KNN.from_array(np.asarray(d.coords, np.float64), k=8)
    w.transform = "r"
    wd = jnp.asarray(w.full()[0], jnp.float32)
    y = np.asarray(d.y, np.float64)
    f = jax.jit(local_moran)
    jax.block_until_ready(f(jnp.asarray(y), wd))
    times = {"metalab local_moran (jit)": [], "esda Moran_Local": []}
    for _ in range(blocks):
        times["metalab local_moran (jit)"].append(
            _timeit(lambda: jax.block_until_ready(f(jnp.asarray(y), wd)), reps)
        )
        times["esda Moran_Local"].append(
            _timeit(lambda: esda.Moran_Local(y, w, permutations=0), max(1, reps // 10))
        )
    _report("local Moran's I, Baltimore", "call", times, "esda Moran_Local")


def bench_metrics(blocks: int, reps: int) -> None:
    import empyrical

    from metalab.models.finance_metrics import calmar_ratio, max_drawdown, sharpe_ratio

    r = np.random.default_rng(0).standard_t(4, size=(64, 2500)) * 0.01 + 3e-4
    rj = jnp.asarray(r, jnp.float32)
    f = jax.jit(jax.vmap(lambda x: jnp.stack([sharpe_ratio(x), calmar_ratio(x), max_drawdown(x)])))
    jax.block_until_ready(f(rj))

    def emp():
        for x in r:
            empyrical.sharpe_ratio(x), empyrical.calmar_ratio(x), empyrical.max_drawdown(x)

    times = {"metalab (jit, vmap)": [], "empyrical loop": []}
    for _ in range(blocks):
        times["metalab (jit, vmap)"].append(_timeit(lambda: jax.block_until_ready(f(rj)), reps))
        times["empyrical loop"].append(_timeit(emp, max(1, reps // 10)))
    _report("Sharpe + Calmar + max drawdown, 64 x 2500 days", "call", times, "empyrical loop")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--only", choices=("moran", "metrics", "lm"), default=None)
    args = ap.parse_args()
    if args.only in (None, "moran"):
        bench_moran(args.blocks, args.reps * 10)
    if args.only in (None, "metrics"):
        bench_metrics(args.blocks, args.reps * 2)
    if args.only in (None, "lm"):
        bench_lm(args.blocks, args.reps)


if __name__ == "__main__":
    main()
