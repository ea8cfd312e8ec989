"""bmg-epsilon: BMG meta-learns the exploration rate of an epsilon-greedy Q-learner.

Flennerhag et al. (2021), Sec. 6: bootstrapping lets BMG meta-learn epsilon without
backpropagating through the Q-learning update (the target is the learner's greedy policy L
updates ahead, matched by KL to its epsilon-greedy behaviour policy). The claim is about
exploration, so the task is one where exploration is needed: bsuite's Deep Sea (a tabular
Q-learner over the N x N grid; the +1 at the bottom-right needs N consecutive "right" moves,
each of which costs 0.01/N, so a greedy learner settles on "left" and never finds it).

Declared rules: BMG's epsilon schedule gives a higher lifetime return than *every* fixed
epsilon of the grid (one paired superiority test per grid value, Holm across the grid; common
random numbers: every learner of a seed shares its key).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, param
from metalab.metagrad import bmg_epsilon
from metalab.rl import q_learning as ql
from metalab.rl.envs import deep_sea

FIXED_EPSILONS = (0.0, 0.03, 0.1, 0.3, 1.0)


def _label(e: float) -> str:
    return f"fixed-{e:g}"


RULES = tuple(
    Rule(
        f"BMG beats fixed epsilon {e:g}",
        "superiority",
        a="return/bmg",
        b=f"return/{_label(e)}",
        direction="greater",
        paired=True,
        test="t",
        group="fixed-epsilon grid",
        doc="BMG's meta-learned epsilon explores better than a fixed epsilon: higher mean "
        "episode return over the lifetime than every fixed epsilon of the grid",
    )
    for e in FIXED_EPSILONS
)


@dataclass(frozen=True)
class BMGEpsilonConfig:
    size: int = param(
        5,
        "Deep Sea grid size N (episode length N); 5: uniform exploration finds the reward "
        "about once per two batches of 16 episodes (2^N <= 2 x num_envs), greedy never",
        lo=2,
        hi=64,
    )
    num_envs: int = param(16, "parallel Deep Sea environments", lo=1)
    num_batches: int = param(1000, "Q-learning sweeps (= meta-updates) per lifetime", lo=1)
    lr: float = param(0.1, "tabular Q-learning step size", lo=1e-4, hi=1.0)
    discount: float = param(0.99, "discount", lo=0.0, hi=0.999)
    init_epsilon: float = param(0.3, "initial epsilon of the meta-learner", lo=1e-4, hi=0.99)
    num_bootstrap: int = param(1, "L: Q-learning sweeps ahead for the greedy target", lo=1, hi=32)
    meta_lr: float = param(0.03, "Adam step size on logit(epsilon)", lo=0.0)
    curve_points: int = param(50, "points in the stored curves", lo=2)


PRESETS = {
    "smoke": BMGEpsilonConfig(size=4, num_envs=2, num_batches=20, curve_points=10),
    "quick": BMGEpsilonConfig(),
    "full": BMGEpsilonConfig(size=12, num_batches=20000, num_envs=64),
}


def run(config: BMGEpsilonConfig, key: jax.Array) -> dict[str, jax.Array]:
    c = config
    if c.num_batches % c.curve_points:
        raise ValueError(
            f"num_batches={c.num_batches} must be a multiple of curve_points={c.curve_points}"
        )
    env, envp = deep_sea.make_deep_sea(c.size)
    n = c.size

    def index(es):
        return deep_sea.cell_index(es, n)

    S, A = n * n + 1, env.num_actions
    # one batch = one episode per environment: reward per step x N = return per episode
    out = {}
    fixed = ql.make_train(
        env,
        envp,
        index,
        S,
        A,
        num_envs=c.num_envs,
        batch_len=n,
        num_batches=c.num_batches,
        lr=c.lr,
        discount=c.discount,
    )
    mf = jax.vmap(lambda e: fixed(key, e))(jnp.asarray(FIXED_EPSILONS, jnp.float32))
    for i, e in enumerate(FIXED_EPSILONS):
        r = mf["reward"][i] * n
        out[f"return/{_label(e)}"] = jnp.mean(r)
        out[f"return_curve/{_label(e)}"] = r.reshape(c.curve_points, -1).mean(-1)
    cfg = bmg_epsilon.EpsilonConfig(
        env=env,
        env_params=envp,
        index_fn=index,
        num_states=S,
        num_actions=A,
        num_envs=c.num_envs,
        batch_len=n,
        num_batches=c.num_batches,
        lr=c.lr,
        discount=c.discount,
        num_bootstrap=c.num_bootstrap,
        meta_lr=c.meta_lr,
    )
    mm = bmg_epsilon.make_train(cfg)(key, bmg_epsilon.EpsilonParams(jnp.float32(c.init_epsilon)))
    r = mm["reward"] * n
    out["return/bmg"] = jnp.mean(r)
    out["return_curve/bmg"] = r.reshape(c.curve_points, -1).mean(-1)
    out["epsilon/bmg"] = mm["epsilon"].reshape(c.curve_points, -1).mean(-1)
    return out


def verdict(data: dict[str, np.ndarray], config: BMGEpsilonConfig) -> Verdict:
    checks = judge(RULES, data)
    eps_end = float(np.mean(data["epsilon/bmg"][:, -1]))
    means = {k: float(np.mean(v)) for k, v in data.items() if k.startswith("return/")}
    return Verdict(
        checks=checks,
        summary=(
            "Lifetime return per episode: "
            + ", ".join(f"{k.split('/')[1]}={v:.4f}" for k, v in means.items())
            + f". Meta-learned epsilon at the end of the lifetime: {eps_end:.4f}."
        ),
        notes=(
            f"Deep Sea N={config.size} (bsuite mapping seed 42, deterministic), tabular "
            "Q-learner over the cells (zero-initialised), one Q-learning sweep per batch of one "
            "episode per environment; epsilon = sigmoid(phi), meta-learned by BMG with the "
            "greedy policy of Q after L further sweeps over the latest batch as target and KL "
            "matching on that batch's states; no gradient through the Q update. The grid is "
            "fixed across presets so that the declared rules are the same everywhere."
        ),
    )


EXPERIMENT = Experiment(
    name="bmg-epsilon",
    paper=Paper(
        title="Bootstrapped Meta-Learning",
        authors="Flennerhag, Schroecker, Zahavy, van Hasselt, Silver, Singh",
        year=2021,
        arxiv="2109.04504",
    ),
    claim=(
        "BMG can meta-learn the epsilon of an epsilon-greedy Q-learner without backpropagating "
        "through the update rule, and its schedule explores better than any fixed epsilon."
    ),
    config_cls=BMGEpsilonConfig,
    presets=PRESETS,
    run=run,
    verdict=verdict,
    rules=RULES,
    seeds={"smoke": 2, "quick": 16, "full": 32},
    tags=("metagrad", "rl", "bmg", "exploration"),
)
