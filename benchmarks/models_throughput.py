"""Throughput of metalab.models against what a user would pick instead.

1. Word-LM training step (B 32, T 35, V 32, E 32): metalab aLSTM (H 64, policy 16), the
   parameter-matched flax ``LSTMCell`` LM (same loop), and a parameter-matched
   ``torch.nn.LSTM`` LM (PyTorch 2 CPU, Adam, the same clip).
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
import time

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


def bench_lm(blocks: int, reps: int, torch_threads: int = 1) -> None:
    import torch

    from metalab.experiments.alstm_lm import ALSTMConfig, matched_lstm_hidden
    from metalab.models.adaptive import WordLM
    from metalab.models.lm_data import synthetic_topic_corpus
    from metalab.models.lm_train import make_lm_trainer

    cfg = ALSTMConfig(train_tokens=60_000, valid_tokens=2_000)
    ids, _ = synthetic_topic_corpus(0, 62_000, cfg.vocab, cfg.n_topics)
    h_lstm, n_a, n_l = matched_lstm_hidden(cfg)
    print(f"params: aLSTM {n_a}, LSTM {n_l} (H {h_lstm})")
    steps = {}
    for name, cell, h in (("metalab aLSTM", "alstm", cfg.hidden), ("flax LSTM", "lstm", h_lstm)):
        tr = make_lm_trainer(
            WordLM(cfg.vocab, cfg.embed, h, cell, cfg.adapt),
            ids[:60_000],
            ids[60_000:],
            cfg.batch_size,
            cfg.bptt,
            cfg.learning_rate,
            cfg.clip,
        )
        f = jax.jit(lambda s, tr=tr: tr.train(s, 10))
        state = tr.init(jax.random.PRNGKey(0))
        t0 = time.perf_counter()
        state, _ = f(state)
        jax.block_until_ready(state)
        print(f"{name}: compile + 10 steps {time.perf_counter() - t0:.2f} s")
        steps[name] = [f, state]

    torch.set_num_threads(torch_threads)
    emb = torch.nn.Embedding(cfg.vocab, cfg.embed)
    rnn = torch.nn.LSTM(cfg.embed, h_lstm, batch_first=True)
    dec = torch.nn.Linear(h_lstm, cfg.vocab)
    mods = torch.nn.ModuleList([emb, rnn, dec])
    opt = torch.optim.Adam(mods.parameters(), lr=cfg.learning_rate)
    data = torch.as_tensor(ids[: 32 * 1800].reshape(32, -1).astype(np.int64))
    pos = [0]
    hid = [None]

    def torch_step():
        p = pos[0]
        x, y = data[:, p : p + cfg.bptt], data[:, p + 1 : p + 1 + cfg.bptt]
        out, h = rnn(emb(x), hid[0])
        loss = torch.nn.functional.cross_entropy(dec(out).reshape(-1, cfg.vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(mods.parameters(), cfg.clip)
        opt.step()
        hid[0] = tuple(t.detach() for t in h)
        pos[0] = (p + cfg.bptt) % (data.shape[1] - cfg.bptt - 1)

    def jax_step(name):
        f, state = steps[name]
        state, _ = f(state)
        jax.block_until_ready(state)
        steps[name][1] = state

    times = {"metalab aLSTM": [], "flax LSTM": [], "torch nn.LSTM": []}
    for _ in range(blocks):
        times["metalab aLSTM"].append(_timeit(lambda: jax_step("metalab aLSTM"), reps) / 10)
        times["flax LSTM"].append(_timeit(lambda: jax_step("flax LSTM"), reps) / 10)
        times["torch nn.LSTM"].append(_timeit(torch_step, reps * 10) / 1)
    _report("word-LM training step", "step", times, "flax LSTM")


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
    ap.add_argument("--torch-threads", type=int, default=1, help="intra-op threads of torch")
    ap.add_argument("--only", choices=("moran", "metrics", "lm"), default=None)
    args = ap.parse_args()
    if args.only in (None, "moran"):
        bench_moran(args.blocks, args.reps * 10)
    if args.only in (None, "metrics"):
        bench_metrics(args.blocks, args.reps * 2)
    if args.only in (None, "lm"):
        bench_lm(args.blocks, args.reps, args.torch_threads)


if __name__ == "__main__":
    main()
