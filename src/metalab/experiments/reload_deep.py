"""reload-deep: ReLOAD on a deep actor-critic (GAE) with a cost, last-iterate behaviour.

Paper: Moskovitz et al. (2023), ReLOAD, arXiv:2302.01275. gymnax CartPole-v1 with a cost of 1
per push to the right and a budget on the average cost rate (balancing pushes right about half
the time, so the constraint binds). The agent (:func:`metalab.rl.reload.make_deep_train`) is an
actor-critic with GAE and separate value heads for the reward and the cost; the actor and the
multiplier are the two players of the Lagrangian game, updated with plain SGD (GDA) or
``optax.optimistic_gradient_descent`` (ReLOAD) at the same step sizes, from the same initial
networks and environment states. Last-iterate behaviour over the second half of a long run:
the oscillation (std) of the smoothed cost rate, the fraction of smoothed points within ``tol``
of the budget, and the largest smoothed violation in the final quarter.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Verdict, param
from metalab.experiments.reload_cmdp import EXPERIMENT as TABULAR
from metalab.rl import reload as rl_reload


@dataclass(frozen=True)
class ReloadDeepConfig:
    env_name: str = param("CartPole-v1", "gymnax environment", choices=("CartPole-v1",))
    cost_action: int = param(1, "action whose use costs 1 per step (1 = push right)", lo=0)
    threshold: float = param(0.45, "bound on the average cost rate", lo=0.0, hi=1.0)
    iterations: int = param(2000, "actor/critic/multiplier updates", lo=2)
    n_envs: int = param(16, "parallel environments per rollout", lo=1)
    rollout: int = param(32, "steps per environment per update", lo=1)
    gamma: float = param(0.99, "discount of the critics and GAE", lo=0.0, hi=0.999)
    gae_lambda: float = param(0.95, "GAE lambda", lo=0.0, hi=1.0)
    hidden: int = param(32, "MLP hidden units (two tanh layers, actor and critic)", lo=1)
    policy_lr: float = param(0.05, "actor step size (both methods)", lo=0.0)
    critic_lr: float = param(3e-3, "critic Adam step size (both methods)", lo=0.0)
    multiplier_lr: float = param(0.1, "multiplier step size (both methods)", lo=0.0)
    entropy: float = param(0.0, "entropy bonus weight", lo=0.0)
    smooth: int = param(20, "iterations averaged per curve point (must divide iterations)", lo=1)
    tol: float = param(0.05, "a smoothed cost rate within tol of the budget counts as converged")


PRESETS = {
    "smoke": ReloadDeepConfig(iterations=20, n_envs=4, rollout=16, smooth=5),
    "quick": ReloadDeepConfig(),
    "full": ReloadDeepConfig(iterations=10000, n_envs=64, rollout=128, smooth=100),
}

RULES = (
    Rule(
        "ReLOAD's late cost rate oscillates less than GDA's",
        "superiority",
        a="oscillation/reload",
        b="oscillation/gda",
        direction="less",
        transform="log",
        group="last-iterate",
        doc="GDA's policy alternates between satisfying the constraint and maximising reward; "
        "ReLOAD's last iterate converges",
    ),
    Rule(
        "ReLOAD's late iterates sit at the budget more often than GDA's",
        "superiority",
        a="within/reload",
        b="within/gda",
        group="last-iterate",
        doc="last-iterate convergence to the constrained optimum (the constraint binds)",
    ),
    Rule(
        "ReLOAD's final violation is below GDA's",
        "superiority",
        a="final_violation/reload",
        b="final_violation/gda",
        direction="less",
        group="last-iterate",
        doc="the last iterate satisfies the constraint",
    ),
)


def run(config: ReloadDeepConfig, key: jax.Array) -> dict[str, jax.Array]:
    """One seed: GDA and ReLOAD from the same initial networks and environment states."""
    if config.iterations % config.smooth:
        raise ValueError(f"smooth ({config.smooth}) must divide iterations ({config.iterations})")
    n_pts = config.iterations // config.smooth
    late, final = n_pts // 2, (3 * n_pts) // 4
    out: dict[str, jax.Array] = {
        "cost_rate@x": (jnp.arange(n_pts) + 1.0) * config.smooth,
        "multiplier@x": (jnp.arange(n_pts) + 1.0) * config.smooth,
    }
    for name, optimistic in (("gda", False), ("reload", True)):
        train = rl_reload.make_deep_train(
            rl_reload.DeepReloadConfig(
                env_name=config.env_name,
                cost_actions=(config.cost_action,),
                thresholds=(config.threshold,),
                iterations=config.iterations,
                n_envs=config.n_envs,
                rollout=config.rollout,
                gamma=config.gamma,
                gae_lambda=config.gae_lambda,
                hidden=config.hidden,
                policy_lr=config.policy_lr,
                critic_lr=config.critic_lr,
                multiplier_lr=config.multiplier_lr,
                entropy=config.entropy,
                optimistic=optimistic,
            )
        )
        _, info = train(key)
        cost = info["cost_rate"][:, 0].reshape(n_pts, config.smooth).mean(axis=1)
        lam = info["multiplier"][:, 0].reshape(n_pts, config.smooth).mean(axis=1)
        out[f"cost_rate/{name}"] = cost
        out[f"multiplier/{name}"] = lam
        out[f"oscillation/{name}"] = jnp.maximum(jnp.std(cost[late:]), 1e-6)
        out[f"within/{name}"] = jnp.mean(jnp.abs(cost[late:] - config.threshold) <= config.tol)
        out[f"final_violation/{name}"] = jnp.max(jnp.maximum(cost[final:] - config.threshold, 0))
        out[f"termination/{name}"] = jnp.mean(info["termination_rate"][config.iterations // 2 :])
    return out


def verdict(data: dict[str, np.ndarray], config: ReloadDeepConfig) -> Verdict:
    """The declared rules on seed-stacked data."""
    checks = judge(RULES, data)
    med = lambda k: float(np.median(data[k]))
    summary = (
        f"second half: median std of the smoothed cost rate ReLOAD {med('oscillation/reload'):.3g}"
        f", GDA {med('oscillation/gda'):.3g}; fraction within {config.tol:g} of the budget ReLOAD "
        f"{np.mean(data['within/reload']):.2f}, GDA {np.mean(data['within/gda']):.2f}; final "
        f"quarter's largest violation ReLOAD {med('final_violation/reload'):.3g}, GDA "
        f"{med('final_violation/gda'):.3g}; termination rate per step ReLOAD "
        f"{med('termination/reload'):.3g}, GDA {med('termination/gda'):.3g}."
    )
    notes = (
        "Actor-critic with GAE (lambda "
        f"{config.gae_lambda}), separate reward and cost value heads (Adam, lr {config.critic_lr}),"
        f" actor and multiplier by plain or optimistic SGD at equal step sizes "
        f"({config.policy_lr}, {config.multiplier_lr}); no entropy bonus unless set; episode "
        "truncation is treated as termination in GAE. Step sizes fixed a priori, not tuned for "
        "either method. The paper's deep experiments use other agents and tasks; CartPole with "
        "a cost on one action is a small stand-in."
    )
    return Verdict(checks=checks, summary=summary, notes=notes)


EXPERIMENT = Experiment(
    name="reload-deep",
    paper=TABULAR.paper,
    claim="With a neural actor-critic and sampled returns, optimistic ascent-descent (ReLOAD) "
    "damps the oscillation of the constraint that gradient ascent-descent shows in the last "
    "iterate.",
    config_cls=ReloadDeepConfig,
    presets=PRESETS,
    run=run,
    verdict=verdict,
    rules=RULES,
    seeds={"smoke": 2, "quick": 12, "full": 20},
    ladder=(  # metalab scale: iterations of the actor/critic/multiplier updates
        {"iterations": 20, "seeds": 4},
        {"iterations": 100, "seeds": 4},
        {"iterations": 300, "n_envs": 8, "rollout": 32, "seeds": 6},
        {"preset": "quick", "iterations": 800},
        {"preset": "quick", "iterations": 2000},
        {"preset": "full", "iterations": 10000},
    ),
    tags=("rl", "constrained", "deep"),
)
