"""reload-cmdp: last-iterate convergence of optimistic ascent-descent on random tabular CMDPs.

Paper: Moskovitz et al. (2023), ReLOAD, arXiv:2302.01275. Each seed samples one random CMDP
(Dirichlet transitions, uniform reward and cost, a binding cost threshold) and runs plain
gradient ascent-descent (GDA) and ReLOAD (optimistic GDA, ``optax.optimistic_gradient_descent``)
from the same initial point with the same step sizes and exact values. The last iterate's
constraint violation ``max(v_c - b, 0)`` is summarised per window of iterations (its envelope)
and a log-linear decay rate is fitted to the envelope after a burn-in. The exact optimum
(LP over occupancy measures, scipy, through ``jax.pure_callback``) gives the reward gap of the
last iterate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core import stats
from metalab.experiments.base import Check, Experiment, Paper, Verdict, param
from metalab.rl import reload as rl_reload
from metalab.rl.envs.cmdp import CMDP, random_cmdp, solve_lp


@dataclass(frozen=True)
class ReloadCMDPConfig:
    n_states: int = param(10, "number of CMDP states", lo=2)
    n_actions: int = param(3, "number of actions", lo=2)
    gamma: float = param(0.9, "discount", lo=0.0, hi=0.999)
    concentration: float = param(1.0, "Dirichlet concentration of the transitions", lo=1e-3)
    threshold_frac: float = param(
        0.5, "cost threshold between min-cost and reward-greedy cost", lo=0.01, hi=0.99
    )
    steps: int = param(20000, "ascent-descent iterations", lo=10)
    policy_lr: float = param(1.0, "policy step size (both methods)", lo=0.0)
    multiplier_lr: float = param(1.0, "multiplier step size (both methods)", lo=0.0)
    multiplier_max: float = param(100.0, "cap of the multiplier's projection", lo=0.0)
    direction: str = param("npg", "policy ascent direction", choices=rl_reload.DIRECTIONS)
    init_scale: float = param(0.0, "std of the initial logits", lo=0.0)
    window: int = param(500, "iterations per violation window (must divide steps)", lo=1)
    burn_in_frac: float = param(0.1, "fraction of windows skipped by the rate fit", lo=0.0, hi=0.9)
    floor: float = param(1e-6, "violations below this count as this in the log fit", lo=1e-12)


PRESETS = {
    "smoke": ReloadCMDPConfig(n_states=5, n_actions=2, steps=2000, window=100),
    "quick": ReloadCMDPConfig(),
    "full": ReloadCMDPConfig(n_states=50, n_actions=4, steps=100000, window=1000),
}


def _lp_value(P, r, c, d0, gamma, b) -> np.ndarray:
    m = CMDP(P, r, c, d0, float(gamma), b)
    sol = solve_lp(m)
    return np.asarray([sol["value"], sol["multiplier"]], dtype=np.float32)


def run(config: ReloadCMDPConfig, key: jax.Array) -> dict[str, jax.Array]:
    """One seed: one random CMDP, GDA and ReLOAD from the same start."""
    if config.steps % config.window:
        raise ValueError(f"window ({config.window}) must divide steps ({config.steps})")
    k_env, k_init = jax.random.split(key)
    cmdp = random_cmdp(
        k_env,
        config.n_states,
        config.n_actions,
        config.gamma,
        config.concentration,
        config.threshold_frac,
    )
    params = rl_reload.ReloadParams(
        jnp.asarray(config.policy_lr),
        jnp.asarray(config.multiplier_lr),
        jnp.asarray(config.multiplier_max),
    )
    ref = jax.pure_callback(
        _lp_value,
        jax.ShapeDtypeStruct((2,), jnp.float32),
        cmdp.P,
        cmdp.r,
        cmdp.c,
        cmdp.d0,
        jnp.asarray(cmdp.gamma),
        cmdp.threshold,
        vmap_method="sequential",
    )
    n_win = config.steps // config.window
    x = (jnp.arange(n_win) + 1.0) * config.window
    start = int(config.burn_in_frac * n_win)
    out: dict[str, jax.Array] = {"violation@x": x}
    for name, optimistic in (("gda", False), ("reload", True)):
        train = rl_reload.make_train(config.steps, optimistic, config.direction, config.init_scale)
        _, info = train(k_init, cmdp, params)
        env = rl_reload.windowed_violation(info["violation"], config.window)
        slope = rl_reload.fit_log_decay(x[start:], env[start:], config.floor)
        out[f"violation/{name}"] = env
        out[f"rate/{name}"] = slope * 1e4  # decades per 10k iterations
        out[f"final_violation/{name}"] = env[-1]
        out[f"gap/{name}"] = jnp.abs(ref[0] - info["value"][-1])
        out[f"multiplier_error/{name}"] = jnp.abs(ref[1] - info["multiplier"][-1])
    out["optimum/value"] = ref[0]
    return out


def verdict(metrics_list, config: ReloadCMDPConfig) -> Verdict:
    """Checks fixed from the paper's claim before looking at numbers."""
    g = np.array([m["rate/gda"] for m in metrics_list], dtype=float)
    r = np.array([m["rate/reload"] for m in metrics_list], dtype=float)
    fg = np.array([m["final_violation/gda"] for m in metrics_list], dtype=float)
    fr = np.array([m["final_violation/reload"] for m in metrics_list], dtype=float)
    checks = []
    t = stats.one_sample_t(r, 0.0, alternative="less")
    med_factor_r = float(10 ** np.median(r))
    checks.append(
        Check(
            name="ReLOAD's last-iterate violation decays",
            statistic="mean fitted rate (log10 decades per 10k iterations)",
            value=float(r.mean()),
            p_value=t.p_value,
            effect_size=t.effect_size,
            ci=stats.mean_ci(r)[1:],
            threshold="rate < 0 (one-sided one-sample t, p < 0.05) and median factor per 10k "
            "iterations <= 0.5",
            passed=bool(t.p_value < 0.05 and med_factor_r <= 0.5),
            test=t.test,
        )
    )
    med_factor_g = float(10 ** np.median(g))
    checks.append(
        Check(
            name="GDA's last-iterate violation does not decay",
            statistic="median decay factor per 10k iterations (GDA)",
            value=med_factor_g,
            threshold="factor > 0.5 (less than 2x shrinkage per 10k iterations)",
            passed=bool(med_factor_g > 0.5),
            test="median over seeds",
        )
    )
    w = stats.wilcoxon(r, g, alternative="less")
    checks.append(
        Check(
            name="ReLOAD decays faster than GDA",
            statistic="median paired rate difference (ReLOAD - GDA)",
            value=float(np.median(r - g)),
            p_value=w.p_value,
            effect_size=w.effect_size,
            threshold="one-sided Wilcoxon signed-rank p < 0.05",
            passed=bool(w.p_value < 0.05),
            test=w.test,
        )
    )
    w2 = stats.wilcoxon(np.log10(fr + config.floor), np.log10(fg + config.floor), "less")
    checks.append(
        Check(
            name="ReLOAD's final violation is below GDA's",
            statistic="median final-window violation ratio ReLOAD / GDA",
            value=float(np.median((fr + config.floor) / (fg + config.floor))),
            p_value=w2.p_value,
            effect_size=w2.effect_size,
            threshold="one-sided Wilcoxon on log violations, p < 0.05",
            passed=bool(w2.p_value < 0.05),
            test=w2.test,
        )
    )
    gap_r = np.array([m["gap/reload"] for m in metrics_list], dtype=float)
    gap_g = np.array([m["gap/gda"] for m in metrics_list], dtype=float)
    summary = (
        f"median decay factor per 10k iterations: ReLOAD {med_factor_r:.3g}, GDA "
        f"{med_factor_g:.3g}; median final violation ReLOAD {np.median(fr):.2e}, GDA "
        f"{np.median(fg):.2e}; median |v_r - v_r*| at the last iterate ReLOAD "
        f"{np.median(gap_r):.2e}, GDA {np.median(gap_g):.2e}."
    )
    notes = (
        f"Tabular softmax policy with exact values, ascent direction '{config.direction}', "
        f"equal step sizes for both methods ({config.policy_lr}, {config.multiplier_lr}); "
        "violation = max(v_c - b, 0) of the last iterate, enveloped per window; the rate is a "
        f"least-squares fit of log10 envelope (floored at {config.floor:g}) after "
        f"{config.burn_in_frac:.0%} burn-in. The deep (gymnax) variant is the separate "
        "experiment reload-deep."
    )
    if math.isnan(med_factor_r):
        notes += " NaN rate."
    return Verdict(checks=tuple(checks), summary=summary, notes=notes)


EXPERIMENT = Experiment(
    name="reload-cmdp",
    paper=Paper(
        title="ReLOAD: Reinforcement Learning with Optimistic Ascent-Descent for Last-Iterate "
        "Convergence in Constrained MDPs",
        authors="Moskovitz, O'Donoghue, Veeriah, Flennerhag, Singh, Zahavy",
        year=2023,
        arxiv="2302.01275",
    ),
    claim="Gradient descent-ascent on the CMDP Lagrangian does not converge in the last "
    "iterate (the policy oscillates between satisfying the constraint and maximising reward), "
    "while optimistic ascent-descent (ReLOAD) converges in the last iterate.",
    config_cls=ReloadCMDPConfig,
    presets=PRESETS,
    run=run,
    verdict=verdict,
    seeds={"smoke": 2, "quick": 10, "full": 30},
    tags=("rl", "constrained"),
)


# --------------------------------------------------------------------------------------------
# Deep variant: MLP policy, sampled returns, CartPole with a cost on pushing right.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReloadDeepConfig:
    env_name: str = param("CartPole-v1", "gymnax environment", choices=("CartPole-v1",))
    cost_action: int = param(1, "action whose use costs 1 per step (1 = push right)", lo=0)
    threshold: float = param(0.45, "bound on the average cost rate", lo=0.0, hi=1.0)
    iterations: int = param(1000, "policy/multiplier updates", lo=2)
    n_envs: int = param(16, "parallel environments per rollout", lo=1)
    rollout: int = param(64, "steps per environment per update", lo=1)
    gamma: float = param(0.95, "discount of the REINFORCE returns", lo=0.0, hi=0.999)
    hidden: int = param(32, "MLP hidden units", lo=1)
    policy_lr: float = param(0.05, "policy step size (both methods)", lo=0.0)
    multiplier_lr: float = param(0.1, "multiplier step size (both methods)", lo=0.0)
    smooth: int = param(20, "iterations averaged per curve point (must divide iterations)", lo=1)


DEEP_PRESETS = {
    "smoke": ReloadDeepConfig(iterations=20, n_envs=4, rollout=16, smooth=5),
    "quick": ReloadDeepConfig(),
    "full": ReloadDeepConfig(iterations=10000, n_envs=64, rollout=128, smooth=100),
}


def run_deep(config: ReloadDeepConfig, key: jax.Array) -> dict[str, jax.Array]:
    """One seed: GDA and ReLOAD from the same initial network and environment states."""
    if config.iterations % config.smooth:
        raise ValueError(f"smooth ({config.smooth}) must divide iterations ({config.iterations})")
    out: dict[str, jax.Array] = {}
    n_pts = config.iterations // config.smooth
    out["cost_rate@x"] = (jnp.arange(n_pts) + 1.0) * config.smooth
    late = n_pts // 2
    for name, optimistic in (("gda", False), ("reload", True)):
        train = rl_reload.make_deep_train(
            config.env_name,
            config.cost_action,
            config.threshold,
            config.iterations,
            config.n_envs,
            config.rollout,
            config.gamma,
            config.hidden,
            config.policy_lr,
            config.multiplier_lr,
            optimistic,
        )
        _, info = train(key)
        cost = info["cost_rate"].reshape(n_pts, config.smooth).mean(axis=1)
        out[f"cost_rate/{name}"] = cost
        out[f"multiplier/{name}"] = info["multiplier"].reshape(n_pts, config.smooth).mean(axis=1)
        out[f"oscillation/{name}"] = jnp.std(cost[late:])
        out[f"late_violation/{name}"] = jnp.max(jnp.maximum(cost[late:] - config.threshold, 0.0))
        out[f"termination/{name}"] = jnp.mean(info["termination_rate"][config.iterations // 2 :])
    return out


def verdict_deep(metrics_list, config: ReloadDeepConfig) -> Verdict:
    """Checks fixed from the paper's claim before looking at numbers."""
    get = lambda k: np.array([m[k] for m in metrics_list], dtype=float)
    checks = []
    for metric, label in (
        ("oscillation", "std of the smoothed cost rate over the second half"),
        ("late_violation", "largest smoothed violation over the second half"),
    ):
        r, g = get(f"{metric}/reload"), get(f"{metric}/gda")
        w = stats.wilcoxon(r, g, alternative="less")
        checks.append(
            Check(
                name=f"ReLOAD's last iterates have a smaller {metric.replace('_', ' ')} than GDA's",
                statistic=f"ratio of medians ReLOAD / GDA of the {label}",
                value=float(np.median(r) / max(float(np.median(g)), 1e-12)),
                p_value=w.p_value,
                effect_size=w.effect_size,
                threshold="one-sided Wilcoxon signed-rank, p < 0.05",
                passed=bool(w.p_value < 0.05),
                test=w.test,
            )
        )
    summary = (
        f"median oscillation (std of cost rate, 2nd half): ReLOAD "
        f"{np.median(get('oscillation/reload')):.3g}, GDA {np.median(get('oscillation/gda')):.3g}; "
        f"median late violation ReLOAD {np.median(get('late_violation/reload')):.3g}, GDA "
        f"{np.median(get('late_violation/gda')):.3g}; termination rate ReLOAD "
        f"{np.median(get('termination/reload')):.3g}, GDA {np.median(get('termination/gda')):.3g}."
    )
    notes = (
        "A minimal deep variant: REINFORCE with a per-time-step batch-mean baseline, no critic, "
        "no entropy bonus, plain (optimistic) SGD for the MLP policy and the multiplier with "
        "equal step sizes for both methods; the cost is the use of one action. Not tuned; the "
        "paper's deep experiments use a full actor-critic agent on other tasks."
    )
    return Verdict(checks=tuple(checks), summary=summary, notes=notes)


DEEP_EXPERIMENT = Experiment(
    name="reload-deep",
    paper=EXPERIMENT.paper,
    claim="With a neural policy and sampled returns, optimistic ascent-descent (ReLOAD) damps "
    "the oscillation of the constraint that gradient ascent-descent shows in the last iterate.",
    config_cls=ReloadDeepConfig,
    presets=DEEP_PRESETS,
    run=run_deep,
    verdict=verdict_deep,
    seeds={"smoke": 2, "quick": 5, "full": 20},
    tags=("rl", "constrained", "deep"),
)

EXPERIMENTS = (DEEP_EXPERIMENT,)
