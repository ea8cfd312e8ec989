"""accelerated-po: optimism and adaptivity accelerate policy optimisation on tabular MDPs.

Chelu et al. (2023) view policy optimisation as a sequence of surrogate problems; optimism is a
prediction of the policy's future and adaptivity a meta-gradient correction of that prediction.
Reproduction: random Garnet MDPs with exact evaluation; softmax PG, NPG, optimistic
(look-ahead) NPG with a fixed prediction coefficient, and adaptive optimistic NPG whose
coefficient is corrected by a meta-gradient against the bootstrapped next iterate (the naive
``2 A_t - A_{t-1}`` optimism is an extra baseline).

Step sizes: every method's step size is chosen by the same procedure, in ``run``: the same
log-spaced grid, scored on ``num_tune_mdps`` Garnet MDPs drawn from a key disjoint from the
evaluation MDP's (median iterations to an eps-optimal policy; smallest step on ties). The
prediction coefficient beta is fixed by the config for the optimistic variants (not tuned).

Two settings, each with its own selection: exact advantages, and inexact advantages (the exact
ones plus N(0, adv_noise^2) noise per entry and iteration, a stand-in for sampled estimates,
where a large step overshoots). In the inexact setting the score (for selection and checks) is
the mean log10 relative gap over the second half of the iterations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, param
from metalab.metagrad import accelerated_pg as apg
from metalab.rl.envs import garnet

RULES = (
    Rule(
        "NPG needs fewer iterations than softmax PG",
        "superiority",
        a="iters/npg",
        b="iters/pg",
        direction="less",
        transform="log",
        paired=True,
        test="t",
        doc="the ordering starts from softmax PG > NPG (exact advantages, tuned steps)",
    ),
    Rule(
        "optimistic NPG needs fewer iterations than NPG",
        "superiority",
        a="iters/optimistic",
        b="iters/npg",
        direction="less",
        transform="log",
        paired=True,
        test="t",
        doc="optimism (a prediction of the next policy) accelerates policy optimisation "
        "(exact advantages, each method at its own tuned step)",
    ),
    Rule(
        "adaptive optimistic is no slower than optimistic NPG",
        "non_inferiority",
        a="iters/adaptive",
        b="iters/optimistic",
        direction="less",
        transform="log",
        margin=math.log(1.1),
        paired=True,
        test="t",
        doc="the meta-gradient correction of the prediction keeps the speed (not slower by "
        "10% or more)",
    ),
    Rule(
        "optimistic NPG beats NPG with inexact advantages",
        "superiority",
        a="gap_noisy/optimistic",
        b="gap_noisy/npg",
        direction="less",
        paired=True,
        test="t",
        doc="where large steps overshoot (noisy advantages), optimism lowers the "
        "suboptimality reached (mean log10 gap over the second half, tuned steps)",
    ),
)


@dataclass(frozen=True)
class AcceleratedPOConfig:
    num_states: int = param(20, "states of the random MDP", lo=2)
    num_actions: int = param(4, "actions", lo=2)
    branching: int = param(3, "successor states per (s, a)", lo=1)
    gamma: float = param(0.9, "discount", lo=0.0, hi=0.999)
    num_iters: int = param(1000, "policy-optimisation iterations (cap)", lo=2)
    step_grid: tuple = param(
        (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0),
        "step sizes tried for every method (the same grid and budget for all)",
        lo=1e-6,
    )
    num_tune_mdps: int = param(4, "Garnet MDPs (disjoint from the evaluation MDP) for tuning", lo=1)
    beta: float = param(
        0.9, "(initial) prediction coefficient of the optimistic variants", lo=0.0, hi=0.99
    )
    meta_lr: float = param(0.01, "RMS-normalised meta step on beta (adaptive)", lo=0.0)
    eps_rel: float = param(1e-3, "eps-optimal: J* - J_t <= eps_rel * (J* - J_0)", lo=1e-9, hi=0.5)
    adv_noise: float = param(0.1, "std of the advantage noise in the inexact setting", lo=0.0)


PRESETS = {
    "smoke": AcceleratedPOConfig(
        num_states=5,
        num_actions=2,
        branching=2,
        num_iters=60,
        eps_rel=1e-2,
        step_grid=(1.0, 10.0),
        num_tune_mdps=2,
    ),
    "quick": AcceleratedPOConfig(),
    "full": AcceleratedPOConfig(
        num_states=100, num_actions=10, branching=5, gamma=0.99, num_iters=20000
    ),
}
METHODS = ("pg", "npg", "optimistic-naive", "optimistic", "adaptive")


def _mdp(config: AcceleratedPOConfig, key):
    mdp = garnet.make_garnet(
        key, config.num_states, config.num_actions, config.branching, config.gamma
    )
    v_star, _ = garnet.optimal_values(mdp)
    return mdp, mdp.rho @ v_star


def _log_gap(J, J_star):
    gap = (J_star - J) / jnp.maximum(J_star - J[0], 1e-12)
    return jnp.log10(jnp.maximum(gap, 1e-12))


def _evaluate(config, method, noise, mdp, J_star, lr, key):
    """(iterations to eps-optimal, mean log10 gap over the second half, overshoot, log gaps)."""
    train = apg.make_train(
        apg.AcceleratedPGConfig(method=method, num_iters=config.num_iters, adv_noise=noise)
    )
    hp = apg.PGParams(lr=lr, beta=config.beta, meta_lr=config.meta_lr)
    r = train(mdp, hp, key)
    lg = _log_gap(r["J"], J_star)
    it = apg.iterations_to_optimal(r["J"], J_star, config.eps_rel).astype(jnp.float32)
    return it, jnp.mean(lg[config.num_iters // 2 :]), apg.overshoot(r["J"], J_star), lg, r["beta"]


def _select(config, method, noise, tune, key) -> jax.Array:
    """The grid's step with the best median score over the tuning MDPs (smallest on ties)."""
    mdps, J_stars = tune
    grid = jnp.asarray(config.step_grid, jnp.float32)
    keys = jax.random.split(key, J_stars.shape[0])

    def score(lr):
        it, gap, *_ = jax.lax.map(
            lambda x: _evaluate(config, method, noise, x[0], x[1], lr, x[2]), (mdps, J_stars, keys)
        )
        return jnp.median(gap if noise > 0 else it)

    # sequential maps, not vmaps: wide vmapped scans of batched solves park jaxlib 0.10.2's
    # CPU runtime now and then
    return grid[jnp.argmin(jax.lax.map(score, grid))]


def run(config: AcceleratedPOConfig, key: jax.Array) -> dict[str, jax.Array]:
    if config.branching > config.num_states:
        raise ValueError(f"branching={config.branching} must be <= num_states={config.num_states}")
    k_eval, k_tune, k_noise = jax.random.split(key, 3)
    mdp, J_star = _mdp(config, k_eval)
    tune = jax.lax.map(lambda k: _mdp(config, k), jax.random.split(k_tune, config.num_tune_mdps))
    out = {}
    for m in METHODS:
        for noise, tag in ((0.0, ""), (config.adv_noise, "_noisy")):
            lr = _select(config, m, noise, tune, jax.random.fold_in(k_noise, 1))
            it, gap, ov, lg, beta = _evaluate(config, m, noise, mdp, J_star, lr, k_noise)
            out[f"step{tag}/{m}"] = lr
            out[f"overshoot{tag}/{m}"] = ov
            out[f"log10_gap{tag}/{m}"] = lg
            if tag:
                out[f"gap_noisy/{m}"] = gap
            else:
                out[f"iters/{m}"] = it
            if m == "adaptive":
                out[f"beta{tag}/adaptive"] = beta
    return out


def verdict(data: dict[str, np.ndarray], config: AcceleratedPOConfig) -> Verdict:
    checks = judge(RULES, data)
    it = {m: np.asarray(data[f"iters/{m}"]) for m in METHODS}
    cens = {m: int(np.sum(v > config.num_iters)) for m, v in it.items()}
    summ = "; ".join(
        f"{m}: median step {np.median(data[f'step/{m}']):g}, median iters {np.median(it[m]):.0f}, "
        f"noisy: median step {np.median(data[f'step_noisy/{m}']):g}, mean log10 gap "
        f"{np.mean(data[f'gap_noisy/{m}']):.2f}, median overshoot "
        f"{np.median(data[f'overshoot_noisy/{m}']):.2e}"
        for m in METHODS
    )
    return Verdict(
        checks=checks,
        summary=summ,
        notes=(
            f"Random Garnet MDPs (S={config.num_states}, A={config.num_actions}, "
            f"b={config.branching}, gamma={config.gamma}), one evaluation MDP per seed, exact "
            f"evaluation; eps-optimal means J*-J_t <= {config.eps_rel} (J*-J_0). Runs that "
            f"never reached it count as {config.num_iters + 1} iterations (censored runs per "
            f"method: {cens}). Every method's step chosen from {config.step_grid} on "
            f"{config.num_tune_mdps} tuning MDPs from a disjoint key, separately for the exact "
            f"and the inexact (advantage noise std {config.adv_noise}) settings; beta = "
            f"{config.beta} fixed. Overshoot = largest drop of J between iterates over J*-J_0. "
            "The look-ahead prediction is a Nesterov-style extrapolation of the logits (ours)."
        ),
    )


EXPERIMENT = Experiment(
    name="accelerated-po",
    paper=Paper(
        title="Acceleration in Policy Optimization",
        authors="Chelu, Zahavy, Guez, Precup, Flennerhag",
        year=2023,
        arxiv="2306.10587",
    ),
    claim=(
        "Optimistic (predictive) policy updates accelerate policy optimisation and a meta-gradient "
        "(adaptive) correction of the prediction keeps that speed: iterations to an eps-optimal "
        "policy order as softmax PG > NPG > optimistic NPG >= adaptive optimistic NPG."
    ),
    config_cls=AcceleratedPOConfig,
    presets=PRESETS,
    run=run,
    verdict=verdict,
    rules=RULES,
    seeds={"smoke": 2, "quick": 20, "full": 50},
    # jaxlib 0.10.2's CPU runtime parks this program now and then (vmapped or not, more often
    # with the persistent compile cache); one seed per call loses least, and the lab's stall
    # detection (vmapped path only) restarts it: re-running resumes.
    max_chunk=1,
    tags=("metagrad", "rl", "policy-optimisation"),
)
