"""Benchmark of the meta-gradient actor-critic (two-colours): throughput and memory.

1. Env steps per second of the whole jitted lifetime (one lax.scan, vmapped over seeds) for the
   standard meta-gradient (L = 0) and BMG (L = 2), measured alternately A B A B in one process;
   medians and per-block ratios are printed.
2. Compiled temporary memory (XLA ``memory_analysis``) of one meta-gradient against the inner
   horizon K: the standard meta-gradient backpropagates through K updates; BMG reaches the same
   horizon with K = 1 and L = K bootstrap updates that are not differentiated. Also BMG with K
   inner steps and L = 1. Printed side by side with ratios.

Run: ``python benchmarks/metagrad_agent.py [--seeds 32] [--meta-steps 200] [--blocks 3]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from metalab.metagrad import bmg, meta_ac
from metalab.rl import actor_critic as ac
from metalab.rl.envs import two_colours as tc


def lifetime(L: int, num_meta_steps: int, num_envs: int, rollout_len: int):
    env = tc.env_fns(tc.TwoColoursParams(swap_every=1000, step_cost=0.01))
    net = ac.ACNet(num_actions=tc.NUM_ACTIONS)
    cfg = meta_ac.MetaACConfig(
        num_envs=num_envs,
        rollout_len=rollout_len,
        num_meta_steps=num_meta_steps,
        num_bootstrap=L,
        meta_lr=3e-2,
    )
    base = ac.make_hyper(entropy=0.05, lr=8.0, discount=0.9)
    train = meta_ac.make_train(
        cfg, env, net, lambda phi, c: base._replace(entropy=jax.nn.sigmoid(phi))
    )
    params = meta_ac.MetaACParams(jnp.float32(-2.94), jnp.ones(meta_ac.NUM_CONTEXT))
    return jax.jit(jax.vmap(lambda k: train(k, params)["reward"]))


def throughput(args) -> None:
    steps = args.seeds * args.meta_steps * args.envs * args.rollout
    fns = {
        name: lifetime(L, args.meta_steps, args.envs, args.rollout)
        for name, L in (("MG L=0", 0), ("BMG L=2", 2))
    }
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    for name, f in fns.items():
        t = time.perf_counter()
        jax.block_until_ready(f(keys))
        print(f"[compile+first run] {name}: {time.perf_counter() - t:.1f} s")
    rates = {n: [] for n in fns}
    for b in range(args.blocks):
        for name, f in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(f(jax.random.split(jax.random.PRNGKey(b + 1), args.seeds)))
            rates[name].append(steps / (time.perf_counter() - t))
    print(
        f"\nThroughput ({args.seeds} seeds x {args.meta_steps} meta-steps x "
        f"{args.envs} envs x {args.rollout} steps)"
    )
    for name, r in rates.items():
        print(
            f"  {name:8s}: median {np.median(r):,.0f} env steps/s  "
            f"(blocks: {', '.join(f'{x:,.0f}' for x in r)})"
        )
    ratios = np.array(rates["MG L=0"]) / np.array(rates["BMG L=2"])
    print(
        f"  per-block ratio MG/BMG: {', '.join(f'{x:.2f}' for x in ratios)}; "
        f"median {np.median(ratios):.2f}"
    )


def meta_grad_fn(K: int, L: int, num_envs: int, rollout_len: int):
    """One meta-gradient of the entropy logit on fixed synthetic rollouts."""
    net = ac.ACNet(num_actions=tc.NUM_ACTIONS, hidden=(64,))
    F = tc.obs_size(tc.TwoColoursParams())
    base = ac.make_hyper(entropy=0.05, lr=0.5, discount=0.9)
    key = jax.random.PRNGKey(0)
    params = net.init(key, jnp.zeros(F))

    def rollout(k):
        k1, k2, k3 = jax.random.split(k, 3)
        obs = jax.nn.one_hot(
            jax.random.randint(k1, (rollout_len + 1, num_envs, 2), 0, 25), 25
        ).reshape(rollout_len + 1, num_envs, F)
        return ac.Rollout(
            obs=obs,
            actions=jax.random.randint(k2, (rollout_len, num_envs), 0, 4),
            rewards=jax.random.normal(k3, (rollout_len, num_envs)),
        )

    inner = jax.vmap(rollout)(jax.random.split(key, K))
    target = rollout(jax.random.PRNGKey(1))

    def update_fn(p, phi, x):
        return ac.ac_update(p, base._replace(entropy=jax.nn.sigmoid(phi)), x, net.apply)

    method = bmg.meta_gradient(
        update_fn,
        lambda p, x: ac.meta_objective(p, base, x, net.apply),
        num_bootstrap=L,
        match="kl",
        project_fn=lambda p, x: net.apply(p, x.obs[:-1])[0],
    )

    def f(phi):
        return method.meta_grad(phi, params, inner, target)[1]

    return f


def memory(args) -> None:
    print(
        "\nCompiled temporary memory of one meta-gradient (MLP 50-64-5 actor-critic, "
        f"{args.envs} envs x {args.rollout} steps per rollout)"
    )
    print(
        f"  {'horizon K':>9s} | {'MG (K, L=0)':>12s} | {'BMG (K=1, L=K)':>14s} | "
        f"{'BMG (K, L=1)':>13s} | MG / BMG(K=1,L=K)"
    )

    def temp(fn):
        c = jax.jit(fn).lower(jnp.float32(-2.9)).compile()
        m = c.memory_analysis()
        return m.temp_size_in_bytes if m is not None else float("nan")

    for K in args.ks:
        mg = temp(meta_grad_fn(K, 0, args.envs, args.rollout))
        bl = temp(meta_grad_fn(1, K, args.envs, args.rollout))
        bk = temp(meta_grad_fn(K, 1, args.envs, args.rollout))
        print(
            f"  {K:9d} | {mg / 1024:9.1f} KiB | {bl / 1024:11.1f} KiB | "
            f"{bk / 1024:10.1f} KiB | {mg / bl:.2f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--meta-steps", type=int, default=200)
    p.add_argument("--envs", type=int, default=16)
    p.add_argument("--rollout", type=int, default=8)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--skip-throughput", action="store_true")
    args = p.parse_args()
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    if not args.skip_throughput:
        throughput(args)
    memory(args)


if __name__ == "__main__":
    main()
