r"""Maze-navigation task family on gymnax's MetaMaze (Miconi et al., 2019), as in WarpGrad's RL
experiment: each task is a goal position; an agent adapts a policy to it by policy gradient.

A task is ``Task(support=(goal, key), query=(goal, key'))``: the keys drive the rollouts of
an inner step (support) and of the held-out evaluation (query). Goals are split disjointly
between meta-train and meta-test (alternate open cells).

:func:`make_maze_loss` returns ``loss(apply_fn, params, (goal, key))`` whose *value* is the
negative mean episode return (so a training curve of losses is a curve of returns) and whose
*gradient* is the REINFORCE policy gradient with a per-time-step mean baseline,

.. math:: \nabla \mathcal{L} = -\frac{1}{BT}\sum_{b,t} \nabla \log \pi(a_t^b \mid s_t^b)
    \,\big(G_t^b - \bar G_t\big), \qquad G_t = \sum_{t' \ge t} \gamma^{t'-t} r_{t'},

obtained as :math:`-\bar R + \ell - \mathrm{sg}(\ell)` with :math:`\ell` the surrogate (value
:math:`-\bar R`, gradient that of :math:`\ell`). Minimise it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from metalab.metalearn.tasks import SPLITS, Task

ApplyFn = Callable[[Any, jnp.ndarray], jnp.ndarray]

__all__ = ["goal_split", "make_env", "make_maze_loss", "obs_size", "sample_maze_task"]


@functools.lru_cache(maxsize=4)
def make_env(maze_size: int = 9):
    """A MetaMaze env with reward 1 at the goal and normalised time in the observation.

    Built eagerly even when called inside ``jit`` (the gymnax constructor branches on array
    values) and cached.
    """
    from gymnax.environments.misc.meta_maze import EnvParams, MetaMaze

    with jax.ensure_compile_time_eval():
        env = MetaMaze(maze_size=maze_size)
    return env, EnvParams(reward=1.0, normalize_time=True)


def obs_size(env) -> int:
    """Observation width: receptive field + last action one-hot + last reward + time."""
    return env.rf_size**2 + env.num_actions + 2


def goal_split(env, split: str) -> jnp.ndarray:
    """Disjoint goal sets: even-indexed open cells for meta-train (and validation, with fresh
    rollout keys), odd-indexed for meta-test."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return env.available_goals[(1 if split == "test" else 0) :: 2]


def sample_maze_task(env, key: jax.Array, *, split: str = "train") -> Task:
    """A goal from the split, with independent rollout keys for support and query."""
    goals = goal_split(env, split)
    k_g, k_s, k_q = jax.random.split(key, 3)
    goal = goals[jax.random.randint(k_g, (), 0, goals.shape[0])]
    return Task((goal, k_s), (goal, k_q))


def make_maze_loss(
    env,
    env_params,
    *,
    horizon: int = 30,
    num_episodes: int = 8,
    gamma: float = 0.95,
) -> Callable[[ApplyFn, Any, Any], jnp.ndarray]:
    """Build ``loss(apply_fn, params, (goal, key))`` (see the module docstring).

    Args:
      env, env_params: from :func:`make_env`.
      horizon: steps per episode T (reaching the goal teleports the agent and pays 1).
      num_episodes: episodes B per loss evaluation.
      gamma: discount of the returns-to-go in the policy gradient.
    """

    def episode(apply_fn, params, goal, key):
        k_r, k_s = jax.random.split(key)
        obs, state = env.reset_env(k_r, env_params)
        state = state.replace(goal=goal)
        obs = env.get_obs(state, env_params)

        def step(carry, k):
            obs, state = carry
            k_a, k_e = jax.random.split(k)
            logits = apply_fn(params, obs)
            a = jax.random.categorical(k_a, lax.stop_gradient(logits))
            logp = jax.nn.log_softmax(logits)[a]
            obs2, state2, r, _, _ = env.step_env(k_e, state, a, env_params)
            return (obs2, state2), (logp, r)

        _, (logp, r) = lax.scan(step, (obs, state), jax.random.split(k_s, horizon))
        return logp, r

    def loss(apply_fn, params, batch):
        goal, key = batch
        logp, r = jax.vmap(lambda k: episode(apply_fn, params, goal, k))(
            jax.random.split(key, num_episodes)
        )
        disc = gamma ** jnp.arange(horizon)
        # returns-to-go by reverse cumulative discounted sum
        g = jnp.flip(jnp.cumsum(jnp.flip(r * disc, -1), -1), -1) / disc
        adv = lax.stop_gradient(g - g.mean(0, keepdims=True))
        surrogate = -jnp.mean(logp * adv)
        mean_return = jnp.mean(jnp.sum(r, -1))
        return -mean_return + surrogate - lax.stop_gradient(surrogate)

    return loss
