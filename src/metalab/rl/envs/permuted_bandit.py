r"""Bernoulli bandits with a variable number of arms and permuted arms (pure JAX).

A *lifetime* task for meta-RL (SymLA, Kirsch et al. 2021; RL^2, Duan et al. 2016): a task is
a vector of arm success probabilities :math:`p \in [0, 1]^K`, drawn once per lifetime,

.. math:: p_k \sim \mathrm{Beta}(\alpha, \beta)\ \text{i.i.d.}, \qquad
          r_t \sim \mathrm{Bernoulli}(p_{\sigma(a_t)}),

where :math:`\sigma` is a permutation of the arms (identity unless given). The observation is
the constant vector ``[1.0]`` (a bandit has no state); a meta-learner sees only its previous
action and reward. ``K`` (``num_arms``) is static, so one compiled rollout serves one arm count.

gymnax ships a 2-armed Bernoulli bandit (``BernoulliBandit-misc``) whose arm probabilities are
tied (``p``, ``1-p``); this K-armed version is written here because K and the arm permutation
must vary. With the same key and probabilities it draws the same rewards as gymnax's
(tested in ``tests/rl/test_symla.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class BanditState:
    """Lifetime state: the (already permuted) arm probabilities and a step counter."""

    probs: jnp.ndarray  # (K,) success probability of each action index
    t: jnp.ndarray


@dataclass(frozen=True)
class PermutedBandit:
    """K-armed Bernoulli bandit whose arms may be permuted.

    Attributes:
      num_arms: number of arms ``K >= 2`` (static).
      alpha, beta: Beta prior of each arm's success probability (1, 1 = uniform).
    """

    num_arms: int
    alpha: float = 1.0
    beta: float = 1.0

    def __post_init__(self) -> None:
        if int(self.num_arms) < 2:
            raise ValueError(f"PermutedBandit: num_arms must be >= 2, got {self.num_arms}")
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError("PermutedBandit: alpha and beta must be > 0")

    @property
    def obs_dim(self) -> int:
        return 1

    @property
    def num_actions(self) -> int:
        return int(self.num_arms)

    def init(self, key: jax.Array, perm: jnp.ndarray | None = None) -> BanditState:
        """Sample a task; ``perm[i]`` is the arm that action ``i`` pulls (identity if None)."""
        p = jax.random.beta(key, self.alpha, self.beta, (self.num_arms,))
        if perm is not None:
            p = p[perm]
        return BanditState(probs=p, t=jnp.zeros((), jnp.int32))

    def observe(self, state: BanditState) -> jnp.ndarray:
        del state
        return jnp.ones((1,), jnp.float32)

    def step(
        self, key: jax.Array, state: BanditState, action: jnp.ndarray
    ) -> tuple[BanditState, jnp.ndarray]:
        """Pull arm ``action``; returns the new state and the reward in {0, 1} (maximised)."""
        r = jax.random.bernoulli(key, state.probs[action]).astype(jnp.float32)
        return state.replace(t=state.t + 1), r

    # gymnax-style raw API (the conventions shared by metalab's RL envs, see docs/tdu.md)
    default_params = None

    def reset_env(self, key: jax.Array, params=None) -> tuple[jnp.ndarray, BanditState]:
        """gymnax's ``reset_env``: ``(obs, state)`` of a fresh task (identity arm order)."""
        del params
        state = self.init(key)
        return self.observe(state), state

    def step_env(self, key: jax.Array, state: BanditState, action: jnp.ndarray, params=None):
        """gymnax's ``step_env``: ``(obs, state, reward, done, info)``; a bandit never ends."""
        del params
        state, r = self.step(key, state, action)
        return self.observe(state), state, r, jnp.zeros((), bool), {}

    def best_mean(self, state: BanditState) -> jnp.ndarray:
        """Expected reward per step of the best arm (for regret)."""
        return state.probs.max()

    def mean_reward(self, state: BanditState) -> jnp.ndarray:
        """Expected reward per step of a uniformly random policy."""
        return state.probs.mean()


def thompson_lifetime(
    env: PermutedBandit, key: jax.Array, lifetime: int, state: BanditState | None = None
) -> jnp.ndarray:
    """Total reward of Beta-Bernoulli Thompson sampling over one lifetime (a reference learner).

    Posterior :math:`\\mathrm{Beta}(\\alpha + s_k, \\beta + f_k)`; each step pulls
    :math:`\\arg\\max_k \\tilde p_k` with :math:`\\tilde p_k` drawn from the posterior. The task
    is ``state`` if given, else drawn from ``key``.
    """
    k_task, k_run = jax.random.split(key)
    state = env.init(k_task) if state is None else state
    K = env.num_arms

    def body(carry, k):
        st, s, f = carry
        k_sample, k_step = jax.random.split(k)
        theta = jax.random.beta(k_sample, env.alpha + s, env.beta + f)
        a = jnp.argmax(theta)
        st, r = env.step(k_step, st, a)
        s = s.at[a].add(r)
        f = f.at[a].add(1.0 - r)
        return (st, s, f), r

    zeros = jnp.zeros((K,), jnp.float32)
    _, rs = jax.lax.scan(body, (state, zeros, zeros), jax.random.split(k_run, lifetime))
    return rs.sum()
