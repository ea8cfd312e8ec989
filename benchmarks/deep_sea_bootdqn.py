"""Deep Sea environment steps/s: metalab's jitted bootstrapped DQN / TDU vs bsuite's boot_dqn.

Contenders, same process, same Deep Sea size, same agent settings (bsuite's
``boot_dqn.default_agent``: 20 members, MLP 50-50 with prior networks of scale 5, batch 128,
Adam 1e-3, one SGD step of every member per environment step, target copy every 4 SGD steps):

* bsuite 0.3.6 ``bsuite.baselines.jax.boot_dqn.default_agent`` on bsuite's numpy DeepSea,
  driven by the usual select_action / step / update loop (needs dm-haiku; bsuite's TF agent
  needs tensorflow + sonnet);
* ``metalab.rl.boot_dqn.make_deep_sea_train`` (whole run one ``lax.scan``), one seed: the
  exact algorithm (dense Adam over the whole first-layer table, ``sparse_first_layer=False``)
  and the fast one (``sparse_first_layer=True``: lazy Adam on the minibatch's first-layer rows,
  hand-written fused backward pass, target values read from a table recomputed at each target
  copy), and the fast TDU variant (10 of the 20 members explorers).

Quality (``--quality-seeds S``): the exact and the fast agents on ``S`` seeds (each its own
Deep Sea mapping, the same for both agents) at ``--quality-size``: mean successful episodes,
runs solved (bsuite's criterion) and mean solve episode, so that the speed-up is shown not to
cost episodes solved.

Steady state only: both are timed after their replay holds ``min_replay_size`` transitions
(metalab resumes from a warmed-up agent state with ``make_deep_sea_episodes``, one compiled
chunk of episodes per block). Compilation is timed separately. Blocks alternate (bsuite,
metalab, ...); medians and per-block ratios are printed.

Run: ``python benchmarks/deep_sea_bootdqn.py [--size 20] [--blocks 3] [--quality-seeds 8]``.
Prints ``RATIO`` lines (metalab / bsuite env steps per CPU second, per seed).
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from metalab.rl import boot_dqn


def load_bsuite_agent():
    """bsuite's JAX boot_dqn ``default_agent``, or (None, reason)."""
    try:
        from bsuite.baselines.jax import boot_dqn as bs_boot

        return bs_boot.default_agent, "bsuite.baselines.jax.boot_dqn"
    except Exception as e:  # noqa: BLE001 - report exactly why
        jax_reason = f"{type(e).__name__}: {e}"
    try:
        from bsuite.baselines.tf import boot_dqn as bs_boot_tf

        return bs_boot_tf.default_agent, "bsuite.baselines.tf.boot_dqn"
    except Exception as e:  # noqa: BLE001
        tf_reason = f"{type(e).__name__}: {e}"
    return None, f"JAX agent: {jax_reason}; TF agent: {tf_reason}"


class BsuiteRunner:
    def __init__(self, make_agent, size: int, seed: int = 0):
        from bsuite.environments import deep_sea as bs_deep_sea

        self.env = bs_deep_sea.DeepSea(size=size, mapping_seed=42, seed=seed)
        self.agent = make_agent(self.env.observation_spec(), self.env.action_spec())
        self.size = size

    def episodes(self, n: int) -> int:
        steps = 0
        for _ in range(n):
            ts = self.env.reset()
            while not ts.last():
                a = self.agent.select_action(ts)
                new_ts = self.env.step(a)
                self.agent.update(ts, a, new_ts)
                ts = new_ts
                steps += 1
        return steps


class OursRunner:
    """metalab's agent run in chunks of ``chunk`` episodes from a warmed-up state."""

    def __init__(self, size: int, config: boot_dqn.BootDQNConfig, chunk: int, seeds: int):
        run = boot_dqn.make_deep_sea_episodes(size, config, chunk)
        keys = jax.random.split(jax.random.PRNGKey(0), seeds)
        init = lambda k: boot_dqn.init(k, config, size * size, 2)
        if seeds > 1:
            self.agent = jax.vmap(init)(keys)
            axis = config.seed_axis  # named: the sparse step's row width is shared (pmax)
            fn = jax.vmap(lambda a, k, s: run(a, k, s), in_axes=(0, 0, None), axis_name=axis)
        else:
            self.agent = init(keys[0])
            fn = run
        self.key = jax.random.PRNGKey(1)
        self.seeds, self.chunk, self.size, self.done = seeds, chunk, size, 0
        t = time.perf_counter()
        self.fn = jax.jit(fn).lower(self.agent, self._keys(), jnp.int32(0)).compile()
        self.compile_s = time.perf_counter() - t
        self.episodes()  # warm-up chunk: fills min_replay_size (chunk * N >= 128)

    def _keys(self):
        self.key, k = jax.random.split(self.key)
        return jax.random.split(k, self.seeds) if self.seeds > 1 else k

    def episodes(self) -> int:
        self.agent, out = self.fn(self.agent, self._keys(), jnp.int32(self.done))
        jax.block_until_ready(out)
        self.done += self.chunk
        return self.chunk * self.size * self.seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=20)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--bsuite-episodes", type=int, default=5, help="bsuite episodes per block")
    ap.add_argument("--chunk", type=int, default=20, help="metalab episodes per block")
    ap.add_argument("--vmap-seeds", type=int, default=0, help="also time N vmapped seeds")
    ap.add_argument("--quality-seeds", type=int, default=0)
    ap.add_argument("--quality-size", type=int, default=10)
    ap.add_argument("--quality-episodes", type=int, default=300)
    args = ap.parse_args()
    n = args.size
    print(f"jax {jax.__version__}, devices {jax.devices()}, Deep Sea size {n}")

    make_agent, where = load_bsuite_agent()
    runner = None
    if make_agent is None:
        print(f"bsuite boot_dqn unavailable -> {where}")
    else:
        print(f"bsuite contender: {where}.default_agent")
        runner = BsuiteRunner(make_agent, n)
        t = time.perf_counter()
        runner.episodes(max(1, -(-128 // n)))  # fill min_replay_size; includes jit of bsuite
        print(f"bsuite warm-up (replay fill + its jit): {time.perf_counter() - t:.1f} s")

    cfg = boot_dqn.BootDQNConfig()  # bsuite default_agent settings
    fast = cfg._replace(sparse_first_layer=True)
    tdu_cfg = fast._replace(num_explorers=10, beta=1.0)
    contenders = [
        ("boot_dqn exact x1", cfg, 1),
        ("boot_dqn fast x1", fast, 1),
        ("tdu fast x1", tdu_cfg, 1),
    ]
    if args.vmap_seeds > 1:
        # under vmap the row-width switch would run every width: name the seed axis, so that
        # one width (the widest any seed needs) runs for all seeds
        shared = fast._replace(seed_axis="seeds")
        contenders.append((f"boot_dqn fast x{args.vmap_seeds} vmapped", shared, args.vmap_seeds))
    ours = {}
    for name, c, s in contenders:
        ours[name] = OursRunner(n, c, args.chunk, s)
        print(f"metalab {name}: compile {ours[name].compile_s:.1f} s")

    rows: dict[str, list[float]] = {k: [] for k in ("bsuite", *ours)}
    cpu_rows: dict[str, list[float]] = {k: [] for k in rows}  # steps per process CPU second

    def timed(name, fn):
        t, c = time.perf_counter(), time.process_time()
        steps = fn()
        rows[name].append(steps / (time.perf_counter() - t))
        cpu_rows[name].append(steps / max(time.process_time() - c, 1e-9))

    for b in range(args.blocks):
        if runner is not None:
            timed("bsuite", lambda: runner.episodes(args.bsuite_episodes))
        for name, r in ours.items():
            timed(name, r.episodes)
        line = ", ".join(f"{k} {v[-1]:.0f}" for k, v in rows.items() if v)
        print(f"block {b}: env steps/s: {line}", flush=True)

    print("\nmedian env steps/s (min, max) over blocks:")
    for k, v in rows.items():
        if v:
            print(f"  {k:28s} {np.median(v):9.1f}  ({min(v):.1f}, {max(v):.1f})")
    print("median env steps per process-CPU second (robust to waiting on a shared machine):")
    for k, v in cpu_rows.items():
        if v:
            print(f"  {k:28s} {np.median(v):9.1f}")
    if rows["bsuite"]:
        for label, table in (("wall", rows), ("CPU", cpu_rows)):
            print(f"ratios metalab / bsuite, {label} time (median of per-block ratios):")
            for k in ours:
                r = np.array(table[k]) / np.array(table["bsuite"])
                print(f"  {k:28s} {np.median(r):8.1f}x   per block {np.round(r, 1).tolist()}")
        for k in ours:
            r = np.median(np.array(cpu_rows[k]) / np.array(cpu_rows["bsuite"]))
            print(f"RATIO {k} / bsuite (CPU time per seed): {r:.1f}x")
    if args.quality_seeds > 0:
        quality(args, cfg, fast)


def quality(args, exact: boot_dqn.BootDQNConfig, fast: boot_dqn.BootDQNConfig) -> None:
    """Episodes solved by the exact and the fast agent on the same seeds and mappings."""
    from metalab.rl.envs import deep_sea

    n, e = args.quality_size, args.quality_episodes
    print(f"\nquality: Deep Sea N={n}, {e} episodes, {args.quality_seeds} seeds")
    for name, c in (("exact (dense Adam)", exact), ("fast (lazy rows)", fast)):
        train = jax.jit(boot_dqn.make_deep_sea_train(n, c, e))
        succ, solved, eps = [], [], []
        for i in range(args.quality_seeds):
            k_map, k = jax.random.split(jax.random.PRNGKey(1000 + i))
            m = deep_sea.random_action_mapping(k_map, n)
            out = jax.device_get(train(k, None, None, m))
            ok, ep = deep_sea.solve_episode(out["bad"])
            succ.append(float(out["success"].sum()))
            solved.append(bool(ok))
            eps.append(int(ep))
        print(
            f"  {name:20s} successful episodes {np.mean(succ):7.1f} (per seed {succ}); "
            f"solved {sum(solved)}/{len(solved)}; mean solve episode {np.mean(eps):.0f}"
        )


if __name__ == "__main__":
    main()
