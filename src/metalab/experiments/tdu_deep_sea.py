"""Reproduction ``tdu-deep-sea``: epsilon-greedy DQN << bootstrapped DQN <= TDU on Deep Sea.

Paper: Flennerhag et al. (2020), "Temporal Difference Uncertainties as a Signal for
Exploration", arXiv:2010.02255. Claim tested where the paper places the gain: a large Deep
Sea, the stochastic variant, and strict per-run metrics (the number of episodes that collect
the treasure, the episode of the first success), each seed one run of all three agents.

One seed = three agents trained from independent keys on the same Deep Sea (bsuite mapping
seed 42): epsilon-greedy DQN (one network, no prior), bootstrapped DQN with randomised prior
functions (``K`` members), and TDU (the same ``K`` members, ``num_explorers`` of them explorers
rewarded with ``beta * sg(sigma)``). Each agent's whole run is one ``lax.scan`` over episodes,
so ``run`` is vmapped over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core import stats
from metalab.experiments.base import Check, Experiment, Paper, Verdict, param
from metalab.rl import boot_dqn
from metalab.rl.envs import deep_sea

METHODS = ("eps_greedy", "boot_dqn", "tdu")


@dataclass(frozen=True)
class TDUDeepSeaConfig:
    size: int = param(20, "Deep Sea size N (episode length N)", lo=4, hi=100)
    num_episodes: int = param(1000, "episodes per agent", lo=10)
    num_ensemble: int = param(10, "ensemble size K of bootstrapped DQN and TDU", lo=3, hi=64)
    num_explorers: int = param(5, "TDU explorer members (the rest are exploiters)", lo=1)
    beta: float = param(10.0, "TDU bonus weight on sg(sigma) for explorers", lo=0.0)
    hidden: tuple[int, ...] = param((50, 50), "hidden widths of every Q-network", lo=1)
    prior_scale: float = param(5.0, "scale of the random prior network", lo=0.0)
    batch_size: int = param(32, "minibatch size (shared by the members)", lo=1)
    learning_rate: float = param(1e-3, "Adam step size", lo=1e-6, hi=1.0)
    discount: float = param(0.99, "discount", lo=0.0, hi=1.0)
    target_update_period: int = param(4, "SGD steps between target copies", lo=1)
    replay_capacity: int = param(10_000, "replay capacity (transitions)", lo=16)
    min_replay_size: int = param(128, "transitions before learning starts", lo=1)
    epsilon: float = param(0.05, "epsilon of the epsilon-greedy DQN baseline", lo=0.0, hi=1.0)
    curve_points: int = param(50, "points of the success-rate curves", lo=2)


def _agent_config(cfg: TDUDeepSeaConfig, method: str) -> boot_dqn.BootDQNConfig:
    base = boot_dqn.BootDQNConfig(
        num_ensemble=cfg.num_ensemble,
        hidden=tuple(cfg.hidden),
        prior_scale=cfg.prior_scale,
        batch_size=cfg.batch_size,
        discount=cfg.discount,
        replay_capacity=cfg.replay_capacity,
        min_replay_size=cfg.min_replay_size,
        target_update_period=cfg.target_update_period,
        learning_rate=cfg.learning_rate,
    )
    if method == "eps_greedy":
        return base._replace(num_ensemble=1, prior_scale=0.0, epsilon=cfg.epsilon)
    if method == "tdu":
        return base._replace(num_explorers=cfg.num_explorers, beta=cfg.beta)
    return base


def _validate(cfg: TDUDeepSeaConfig) -> None:
    if cfg.num_episodes % cfg.curve_points:
        raise ValueError(
            f"tdu-deep-sea: num_episodes ({cfg.num_episodes}) must be a multiple of "
            f"curve_points ({cfg.curve_points})"
        )
    if cfg.min_replay_size > cfg.replay_capacity:
        raise ValueError("tdu-deep-sea: min_replay_size must be <= replay_capacity")
    for m in METHODS:
        _agent_config(cfg, m).validate()


VARIANTS = ("det", "sto")


def run(cfg: TDUDeepSeaConfig, key: jax.Array) -> dict[str, jax.Array]:
    """One seed: the three agents on both variants of the same Deep Sea.

    Metrics ``<metric>_<variant>/<agent>`` with variant ``det`` (deterministic) or ``sto``
    (stochastic): ``successes`` (episodes that collected the treasure), ``first_success``
    (1-based episode, ``num_episodes + 1`` if none), ``solve_episode`` and ``bsuite_score``
    (bsuite's criterion), ``bad_fraction``, ``return`` (mean episode return), and curves
    ``success_rate_<variant>/<agent>`` (fraction of successful episodes per block).
    """
    _validate(cfg)
    e = cfg.num_episodes
    k_eps, k_ens = jax.random.split(key)
    dets = jnp.array([True, False])
    eps_train = boot_dqn.make_deep_sea_train(cfg.size, _agent_config(cfg, "eps_greedy"), e)
    eps_out = jax.vmap(lambda k, d: eps_train(k, None, d))(jax.random.split(k_eps, 2), dets)
    # TDU with beta = 0 is exactly bootstrapped DQN (tested), so bootstrapped DQN and TDU on
    # both variants are one program vmapped over (variant, beta).
    ens_train = boot_dqn.make_deep_sea_train(cfg.size, _agent_config(cfg, "tdu"), e)
    ens_det = jnp.array([True, True, False, False])
    ens_beta = jnp.array([0.0, cfg.beta, 0.0, cfg.beta], jnp.float32)
    ens_out = jax.vmap(ens_train)(jax.random.split(k_ens, 4), ens_beta, ens_det)
    pick = lambda tree, i: jax.tree.map(lambda x: x[i], tree)
    results = {
        ("det", "eps_greedy"): pick(eps_out, 0),
        ("sto", "eps_greedy"): pick(eps_out, 1),
        ("det", "boot_dqn"): pick(ens_out, 0),
        ("det", "tdu"): pick(ens_out, 1),
        ("sto", "boot_dqn"): pick(ens_out, 2),
        ("sto", "tdu"): pick(ens_out, 3),
    }
    out: dict[str, jax.Array] = {}
    for (v, m), res in results.items():
        succ = res["success"]
        any_succ = succ.max() > 0
        solved, solve_ep = deep_sea.solve_episode(res["bad"], v == "det")
        out[f"successes_{v}/{m}"] = succ.sum()
        first = jnp.where(any_succ, jnp.argmax(succ > 0) + 1, e + 1)
        out[f"first_success_{v}/{m}"] = first.astype(jnp.float32)
        out[f"solve_episode_{v}/{m}"] = solve_ep.astype(jnp.float32)
        out[f"bsuite_score_{v}/{m}"] = deep_sea.bsuite_score(solved, solve_ep, cfg.size)
        out[f"bad_fraction_{v}/{m}"] = res["bad"].mean()
        out[f"return_{v}/{m}"] = res["return"].mean()
        out[f"success_rate_{v}/{m}"] = succ.reshape(cfg.curve_points, -1).mean(axis=1)
        if m == "tdu":
            out[f"sigma_{v}/tdu"] = res["sigma"].reshape(cfg.curve_points, -1).mean(axis=1)
    x = jnp.arange(1, cfg.curve_points + 1, dtype=jnp.float32) * (e // cfg.curve_points)
    for v in VARIANTS:
        out[f"success_rate_{v}@x"] = x
        out[f"sigma_{v}@x"] = x
    return out


def _col(ms, name) -> np.ndarray:
    return np.array([float(m[name]) for m in ms])


def verdict(ms, cfg: TDUDeepSeaConfig) -> Verdict:
    """Checks written from the paper's claim (before looking at numbers):

    1. deterministic Deep Sea: bootstrapped DQN collects the treasure in more episodes than
       epsilon-greedy DQN (one-sided Mann-Whitney U over seeds, p < 0.05): dithering fails;
    2. stochastic Deep Sea (where the paper places TDU's gain): TDU collects the treasure in
       more episodes than bootstrapped DQN (one-sided Mann-Whitney U, p < 0.05);
    3. stochastic Deep Sea: TDU's first success comes earlier than bootstrapped DQN's
       (one-sided Mann-Whitney U on the first-success episode, p < 0.05).
    """
    n = len(ms)
    s = {(v, m): _col(ms, f"successes_{v}/{m}") for v in VARIANTS for m in METHODS}
    f = {(v, m): _col(ms, f"first_success_{v}/{m}") for v in VARIANTS for m in METHODS}
    checks = []
    a, b = s[("det", "boot_dqn")], s[("det", "eps_greedy")]
    t1 = stats.mann_whitney(a, b, alternative="greater")
    checks.append(
        Check(
            name="deterministic: bootstrapped DQN >> epsilon-greedy DQN",
            statistic="mean successful episodes, boot_dqn - eps_greedy",
            value=float(a.mean() - b.mean()),
            passed=bool(t1.p_value < 0.05 and a.mean() > b.mean()),
            threshold="one-sided Mann-Whitney p < 0.05 (boot_dqn > eps_greedy)",
            p_value=t1.p_value,
            effect_size=t1.effect_size,
            ci=stats.bootstrap_ci(a - b)[1:],
            test=f"{t1.test}, one-sided, n={n} seeds per agent; effect = P(boot > eps)",
        )
    )
    a, b = s[("sto", "tdu")], s[("sto", "boot_dqn")]
    t2 = stats.mann_whitney(a, b, alternative="greater")
    checks.append(
        Check(
            name="stochastic: TDU > bootstrapped DQN (successful episodes)",
            statistic="mean successful episodes, tdu - boot_dqn",
            value=float(a.mean() - b.mean()),
            passed=bool(t2.p_value < 0.05 and a.mean() > b.mean()),
            threshold="one-sided Mann-Whitney p < 0.05 (tdu > boot_dqn)",
            p_value=t2.p_value,
            effect_size=t2.effect_size,
            ci=stats.bootstrap_ci(a - b)[1:],
            test=f"{t2.test}, one-sided, n={n}; effect = P(tdu > boot)",
        )
    )
    a, b = f[("sto", "tdu")], f[("sto", "boot_dqn")]
    t3 = stats.mann_whitney(a, b, alternative="less")
    checks.append(
        Check(
            name="stochastic: TDU succeeds earlier than bootstrapped DQN (first success)",
            statistic="median first-success episode, tdu - boot_dqn",
            value=float(np.median(a) - np.median(b)),
            passed=bool(t3.p_value < 0.05),
            threshold="one-sided Mann-Whitney p < 0.05 (tdu earlier)",
            p_value=t3.p_value,
            effect_size=1.0 - t3.effect_size,
            ci=stats.bootstrap_ci(a - b, stat=np.median)[1:],
            test=f"{t3.test}, one-sided, n={n}; effect = P(tdu earlier) (ties half)",
        )
    )
    parts = []
    for v, label in (("det", "deterministic"), ("sto", "stochastic")):
        parts.append(
            f"{label}: successful episodes "
            + ", ".join(f"{m} {s[(v, m)].mean():.1f}" for m in METHODS)
            + "; median first success "
            + ", ".join(f"{m} {np.median(f[(v, m)]):.0f}" for m in METHODS)
        )
    summary = (
        f"Deep Sea N={cfg.size}, {cfg.num_episodes} episodes per agent, K={cfg.num_ensemble} "
        f"({cfg.num_explorers} TDU explorers, beta={cfg.beta}), {n} seeds. "
        + "; ".join(parts)
        + "."
    )
    notes = (
        "Successful episodes (the +1 treasure collected) are counted on the behaviour policy "
        "(one member sampled per episode, TDU's explorers included); first success is "
        "num_episodes + 1 when there is none. bsuite's solve episode and score are reported "
        "per agent and variant. Checks 2-3 test the paper's gain where it claims it (the "
        "stochastic variant at the largest size the quick budget affords); the deterministic "
        "TDU vs bootstrapped DQN numbers are reported without a check (the paper's own runs "
        "tie at N <= 20); there TDU's behaviour is an explorer about half the time, so once "
        "bootstrapped DQN has solved the task TDU collects the treasure in fewer episodes by "
        "construction. beta was chosen on 3 pilot seeds disjoint from the lab's seeds. With 5 "
        "seeds a one-sided Mann-Whitney test needs a near-complete separation to reach p < "
        "0.05, and stochastic Deep Sea runs are bimodal (solved or not), so a failed check 2 "
        "or 3 at quick scale is a result about power at this budget, not a bug."
    )
    return Verdict(checks=tuple(checks), summary=summary, notes=notes)


PRESETS = {
    "smoke": TDUDeepSeaConfig(
        size=6,
        num_episodes=40,
        num_ensemble=4,
        num_explorers=2,
        hidden=(16, 16),
        batch_size=8,
        replay_capacity=256,
        min_replay_size=16,
        curve_points=4,
    ),
    "quick": TDUDeepSeaConfig(),
    "full": TDUDeepSeaConfig(
        size=30,
        num_episodes=3000,
        num_ensemble=20,
        num_explorers=10,
        batch_size=128,
        curve_points=60,
    ),
}

EXPERIMENT = Experiment(
    name="tdu-deep-sea",
    paper=Paper(
        title="Temporal Difference Uncertainties as a Signal for Exploration",
        authors="Flennerhag, Wang, Sprechmann, Visin, Galashov, Kapturowski, Borsa, Heess, "
        "Barreto, Pascanu",
        year=2020,
        arxiv="2010.02255",
    ),
    claim=(
        "On Deep Sea, epsilon-greedy fails, bootstrapped DQN with prior functions explores "
        "deeply, and TDU (explorers rewarded by the ensemble's TD-error std) explores better "
        "still at larger sizes."
    ),
    config_cls=TDUDeepSeaConfig,
    presets=PRESETS,
    run=run,
    verdict=verdict,
    seeds={"smoke": 2, "quick": 5, "full": 20},
    tags=("rl", "exploration"),
)
