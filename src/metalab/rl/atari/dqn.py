"""A DQN-family agent in JAX: double DQN with n-step returns (flax linen, optax, rlax).

References: Mnih et al. (2015) *Human-level control through deep RL* (DQN, Nature network);
van Hasselt, Guez, Silver (2016) *Deep RL with double Q-learning*; the n-step target as in
Hessel et al. (2018) *Rainbow*. Used by the Atari-curricula transfer study (Rusu et al., 2022,
arXiv:2210.12448), whose agents are DQN-family value learners finetuned across variants.

Update rule (minimised; one transition, time suffixes as in rlax)::

    G_t      = sum_{j<n} gamma^j r_{t+j} prod_{k<j} (1 - term_{t+k})       # n-step return
    disc_t   = gamma^n prod_{k<n} (1 - term_{t+k})
    a*       = argmax_a Q(x_{t+n}, a; theta)                               # online selector
    delta_t  = G_t + disc_t Q(x_{t+n}, a*; theta^-) - Q(x_t, a_t; theta)  # rlax.double_q_learning
    L(theta) = mean_batch huber(delta_t)                                   # minimised by Adam

``theta^-`` (target parameters) is copied from ``theta`` every ``target_period`` updates.
Behaviour is epsilon-greedy on ``Q(x, .; theta)`` (argmax = maximise return).

Everything here is a pure function of pytrees; :func:`make_agent` closes over the static
:class:`DQNConfig` and returns ``init``/``act``/``update``, each jit-able and vmap-able (the
transfer study vmaps them over variants).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import rlax

NETWORKS = ("small", "nature", "mlp")


class QNetwork(nn.Module):
    """Convolutional Q-network on stacked grey frames ``(stack, H, W)`` of uint8.

    ``kind="nature"``: the DQN Nature torso (32x8x8/4, 64x4x4/2, 64x3x3/1, 512).
    ``kind="small"``: a cheaper torso for downsampled frames (16x8x8/4, 32x4x4/2, 128).
    ``kind="mlp"``: flatten, one hidden layer of 64 (for tests and smoke runs).
    Returns ``Q(x, .)`` of shape ``(num_actions,)`` (or batched with leading dims).
    """

    num_actions: int
    kind: str = "small"

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        x = jnp.moveaxis(obs.astype(jnp.float32) / 255.0, -3, -1)  # (..., H, W, stack)
        if self.kind == "mlp":
            x = x.reshape(*x.shape[:-3], -1)
            return nn.Dense(self.num_actions)(nn.relu(nn.Dense(64)(x)))
        if self.kind == "nature":
            convs, hidden = ((32, 8, 4), (64, 4, 2), (64, 3, 1)), 512
        else:
            convs, hidden = ((16, 8, 4), (32, 4, 2)), 128
        for feat, k, s in convs:
            x = nn.relu(nn.Conv(feat, (k, k), strides=(s, s), padding="VALID")(x))
        x = x.reshape(*x.shape[:-3], -1)
        x = nn.relu(nn.Dense(hidden)(x))
        return nn.Dense(self.num_actions)(x)


@dataclass(frozen=True)
class DQNConfig:
    """Static configuration of the agent.

    Attributes:
      num_actions: size of the (minimal) action set.
      network: ``"small"``, ``"nature"`` or ``"mlp"`` (see :class:`QNetwork`).
      learning_rate: Adam step size.
      adam_eps: Adam epsilon (1.5e-4 as in Rainbow).
      gamma: discount per agent step.
      n_step: length of the bootstrapped return.
      target_period: updates between target-network copies.
      max_grad_norm: global gradient-norm clip (0 disables).
    """

    num_actions: int
    network: str = "small"
    learning_rate: float = 2.5e-4
    adam_eps: float = 1.5e-4
    gamma: float = 0.99
    n_step: int = 3
    target_period: int = 500
    max_grad_norm: float = 10.0

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"network={self.network!r}; allowed: {', '.join(NETWORKS)}")
        if self.num_actions < 1 or self.n_step < 1 or self.target_period < 1:
            raise ValueError("num_actions, n_step and target_period must all be >= 1")
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")


class DQNState(NamedTuple):
    """Online and target parameters, optimiser state, and the number of updates done."""

    params: Any
    target_params: Any
    opt_state: Any
    step: jax.Array


class Batch(NamedTuple):
    """A batch of n-step transitions (leading axis = batch).

    ``obs_tm1`` ``(B, stack, H, W)`` uint8, ``a_tm1`` ``(B,)`` int, ``r_t`` ``(B,)`` the n-step
    return, ``discount_t`` ``(B,)`` = gamma^n times the product of non-terminal flags,
    ``obs_t`` the observation n steps later.
    """

    obs_tm1: jax.Array
    a_tm1: jax.Array
    r_t: jax.Array
    discount_t: jax.Array
    obs_t: jax.Array


class DQNAgent(NamedTuple):
    """Pure functions of one agent (vmap them to run several agents at once).

    ``init(key, obs) -> DQNState``; ``act(params, obs, key, epsilon) -> action``;
    ``q_values(params, obs) -> Q``; ``update(state, batch) -> (state, loss)``;
    ``reset_optimiser(state) -> state`` (fresh Adam moments and target = online params).
    """

    config: DQNConfig
    network: QNetwork
    init: Any
    act: Any
    q_values: Any
    update: Any
    reset_optimiser: Any


@functools.cache
def make_agent(config: DQNConfig) -> DQNAgent:
    """Build the agent's pure functions for a static ``config``.

    Cached per config, so repeated calls return the same functions and every jit cache built
    on them (e.g. across seeds) is reused.
    """
    net = QNetwork(config.num_actions, config.network)
    chain = [optax.adam(config.learning_rate, eps=config.adam_eps)]
    if config.max_grad_norm > 0:
        chain.insert(0, optax.clip_by_global_norm(config.max_grad_norm))
    opt = optax.chain(*chain)

    def init(key: jax.Array, obs: jax.Array) -> DQNState:
        params = net.init(key, obs)
        return DQNState(params, params, opt.init(params), jnp.zeros((), jnp.int32))

    def q_values(params, obs: jax.Array) -> jax.Array:
        return net.apply(params, obs)

    def act(params, obs: jax.Array, key: jax.Array, epsilon: jax.Array) -> jax.Array:
        """Epsilon-greedy action for one observation (greedy = argmax Q, maximising)."""
        k_explore, k_action = jax.random.split(key)
        greedy = jnp.argmax(q_values(params, obs))
        rand = jax.random.randint(k_action, (), 0, config.num_actions)
        return jnp.where(jax.random.uniform(k_explore) < epsilon, rand, greedy)

    def td_error(q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector):
        return rlax.double_q_learning(q_tm1, a_tm1, r_t, discount_t, q_t_value, q_t_selector)

    def loss_fn(params, target_params, batch: Batch) -> jax.Array:
        q_tm1 = net.apply(params, batch.obs_tm1)
        q_t_selector = net.apply(params, batch.obs_t)
        q_t_value = net.apply(target_params, batch.obs_t)
        td = jax.vmap(td_error)(
            q_tm1, batch.a_tm1, batch.r_t, batch.discount_t, q_t_value, q_t_selector
        )
        return jnp.mean(rlax.huber_loss(td, 1.0))

    def update(state: DQNState, batch: Batch) -> tuple[DQNState, jax.Array]:
        loss, grads = jax.value_and_grad(loss_fn)(state.params, state.target_params, batch)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        target = optax.periodic_update(params, state.target_params, step, config.target_period)
        return DQNState(params, target, opt_state, step), loss

    def reset_optimiser(state: DQNState) -> DQNState:
        return DQNState(
            state.params, state.params, opt.init(state.params), jnp.zeros_like(state.step)
        )

    return DQNAgent(config, net, init, act, q_values, update, reset_optimiser)


def n_step_targets(
    rewards: jax.Array, terminals: jax.Array, gamma: float
) -> tuple[jax.Array, jax.Array]:
    """n-step return and bootstrap discount from ``(..., n)`` rewards and terminal flags.

    ``G = sum_j gamma^j r_j prod_{k<j}(1 - term_k)``, ``disc = gamma^n prod_k (1 - term_k)``.
    Works on numpy or jax arrays.
    """
    xp = jnp if isinstance(rewards, jax.Array) else __import__("numpy")
    n = rewards.shape[-1]
    alive = xp.cumprod(1.0 - terminals.astype(xp.float32), axis=-1)
    alive_before = xp.concatenate([xp.ones_like(alive[..., :1]), alive[..., :-1]], axis=-1)
    powers = gamma ** xp.arange(n, dtype=xp.float32)
    g = (rewards * powers * alive_before).sum(-1)
    disc = (gamma**n) * alive[..., -1]
    return g.astype(xp.float32), disc.astype(xp.float32)
