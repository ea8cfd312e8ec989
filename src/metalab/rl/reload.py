"""ReLOAD: optimistic gradient ascent-descent on the Lagrangian of a constrained MDP.

Moskovitz, O'Donoghue, Veeriah, Flennerhag, Singh, Zahavy (2023). "ReLOAD: Reinforcement
Learning with Optimistic Ascent-Descent for Last-Iterate Convergence in Constrained MDPs",
arXiv:2302.01275.

Problem (maximise reward, bound the cost):

    max_pi v_r(pi)  s.t.  v_c(pi) <= b,     L(pi, lam) = v_r(pi) - lam (v_c(pi) - b),  lam >= 0.

The policy *ascends* ``L`` and the multiplier *descends* it. With ``g_t`` the policy ascent
direction and ``h_t = dL/dlam = -(v_c - b)``:

    GDA:     theta_{t+1} = theta_t + eta g_t,
             lam_{t+1}   = [lam_t - eta_l h_t]_+
    ReLOAD:  theta_{t+1} = theta_t + eta (2 g_t - g_{t-1}),
             lam_{t+1}   = [lam_t - eta_l (2 h_t - h_{t-1})]_+

The optimistic step is ``optax.optimistic_gradient_descent(lr, alpha=1, beta=1)`` (update
``-(lr) ((alpha + beta) g_t - beta g_{t-1})``, with ``g_{-1} = g_0``); GDA is ``optax.sgd``.
Both are used as they are; the policy's ascent direction is negated before ``update``.
``[.]_+`` is a projection on ``[0, lam_max]`` applied after the optax step.

The tabular policy is a softmax over logits with exact values (``metalab.rl.successor_features``).
Two ascent directions: ``"npg"`` the natural gradient (the advantage of ``r - lam c``, i.e.
per-state multiplicative-weights / mirror-descent, the setting of the paper's last-iterate
guarantee) and ``"pg"`` the exact vanilla policy gradient through the linear solve.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metalab.rl import successor_features as sf
from metalab.rl.envs.cmdp import CMDP

DIRECTIONS = ("npg", "pg")


class ReloadParams(NamedTuple):
    """Traced hyperparameters: policy and multiplier step sizes, and the multiplier's cap."""

    policy_lr: jnp.ndarray
    multiplier_lr: jnp.ndarray
    multiplier_max: jnp.ndarray


class ReloadState(NamedTuple):
    """Logits ``[S, A]``, multiplier ``lam >= 0`` and the two optax states."""

    logits: jnp.ndarray
    multiplier: jnp.ndarray
    policy_opt: optax.OptState
    multiplier_opt: optax.OptState


def make_optimizer(lr, optimistic: bool) -> optax.GradientTransformation:
    """``optax.optimistic_gradient_descent(lr, 1, 1)`` (ReLOAD) or ``optax.sgd(lr)`` (GDA)."""
    if optimistic:
        return optax.optimistic_gradient_descent(lr, alpha=1.0, beta=1.0)
    return optax.sgd(lr)


def lagrangian(cmdp: CMDP, logits: jnp.ndarray, multiplier) -> jnp.ndarray:
    """``L = v_r - lam (v_c - b)`` for the softmax policy of ``logits`` (the policy maximises)."""
    pi = sf.softmax_policy(logits)
    v_r = sf.normalised_value(cmdp.P, pi, cmdp.r, cmdp.d0, cmdp.gamma)
    v_c = sf.normalised_value(cmdp.P, pi, cmdp.c, cmdp.d0, cmdp.gamma)
    return v_r - multiplier * (v_c - cmdp.threshold)


def policy_direction(cmdp: CMDP, logits: jnp.ndarray, multiplier, direction: str) -> jnp.ndarray:
    """Ascent direction of ``L`` in the logits (``"npg"``: advantage of ``r - lam c``; ``"pg"``)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    reward = cmdp.r - multiplier * cmdp.c
    if direction == "npg":
        return sf.natural_direction(cmdp.P, logits, reward, cmdp.gamma)
    return sf.policy_gradient(cmdp.P, logits, reward, cmdp.d0, cmdp.gamma)


def init(
    key: jax.Array, cmdp: CMDP, params: ReloadParams, optimistic: bool, init_scale: float = 0.0
) -> ReloadState:
    """Initial state: logits ``init_scale * N(0, 1)``, multiplier 0, fresh optimiser states."""
    logits = init_scale * jax.random.normal(key, cmdp.r.shape)
    lam = jnp.zeros(())
    return ReloadState(
        logits,
        lam,
        make_optimizer(params.policy_lr, optimistic).init(logits),
        make_optimizer(params.multiplier_lr, optimistic).init(lam),
    )


def update(
    state: ReloadState,
    cmdp: CMDP,
    params: ReloadParams,
    optimistic: bool,
    direction: str = "npg",
) -> tuple[ReloadState, dict[str, jnp.ndarray]]:
    """One simultaneous ascent-descent step (both players use the current iterate).

    Returns the new state and ``{"value": v_r, "cost": v_c, "violation": v_c - b,
    "multiplier": lam}`` measured at the *current* (pre-update) iterate.
    """
    pi = sf.softmax_policy(state.logits)
    v_r = sf.normalised_value(cmdp.P, pi, cmdp.r, cmdp.d0, cmdp.gamma)
    v_c = sf.normalised_value(cmdp.P, pi, cmdp.c, cmdp.d0, cmdp.gamma)
    g = policy_direction(cmdp, state.logits, state.multiplier, direction)
    popt = make_optimizer(params.policy_lr, optimistic)
    mopt = make_optimizer(params.multiplier_lr, optimistic)
    # optax minimises: feed the negated ascent direction for the policy.
    u_theta, policy_opt = popt.update(-g, state.policy_opt)
    # The multiplier minimises L: dL/dlam = -(v_c - b).
    u_lam, multiplier_opt = mopt.update(-(v_c - cmdp.threshold), state.multiplier_opt)
    lam = jnp.clip(state.multiplier + u_lam, 0.0, params.multiplier_max)
    new = ReloadState(state.logits + u_theta, lam, policy_opt, multiplier_opt)
    info = {"value": v_r, "cost": v_c, "violation": v_c - cmdp.threshold, "multiplier": lam}
    return new, info


def make_train(
    steps: int,
    optimistic: bool,
    direction: str = "npg",
    init_scale: float = 0.0,
):
    """``train(key, cmdp, params) -> (final state, per-step info)`` as one ``lax.scan``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")

    def train(key: jax.Array, cmdp: CMDP, params: ReloadParams):
        state = init(key, cmdp, params, optimistic, init_scale)

        def body(s, _):
            return update(s, cmdp, params, optimistic, direction)

        return jax.lax.scan(body, state, None, steps)

    return train


def windowed_violation(violation_t: jnp.ndarray, window: int) -> jnp.ndarray:
    """Largest positive constraint violation ``max(v_c - b, 0)`` in consecutive windows.

    Args:
      violation_t: ``[T]`` signed violations ``v_c - b``. window: window length dividing ``T``.

    Returns:
      ``[T // window]`` per-window maxima: the envelope of the last-iterate violation.
    """
    T = violation_t.shape[0]
    if T % window:
        raise ValueError(f"window ({window}) must divide the number of steps ({T})")
    return jnp.max(jnp.maximum(violation_t, 0.0).reshape(T // window, window), axis=1)


def fit_log_decay(x: jnp.ndarray, y: jnp.ndarray, floor: float = 1e-7) -> jnp.ndarray:
    """Least-squares slope of ``log10 max(y, floor)`` on ``x`` (decades per unit of ``x``).

    Negative slope = decay; ``10 ** (slope * 1e4)`` is the factor per 10k iterations if ``x``
    counts iterations.
    """
    ly = jnp.log10(jnp.maximum(y, floor))
    xc = x - x.mean()
    return jnp.sum(xc * (ly - ly.mean())) / jnp.sum(xc**2)


# --------------------------------------------------------------------------------------------
# Deep variant: a small MLP policy on a gymnax task with a per-step cost, sampled returns.
# --------------------------------------------------------------------------------------------


class DeepReloadState(NamedTuple):
    """MLP parameters, multiplier, optimiser states, the vectorised env states and key."""

    params: Any
    multiplier: jnp.ndarray
    policy_opt: optax.OptState
    multiplier_opt: optax.OptState
    env_state: Any
    obs: jnp.ndarray
    key: jax.Array


class _PolicyMLP(nn.Module):
    hidden: int
    n_actions: int

    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(self.n_actions)(x)


def discounted_returns(x_t: jnp.ndarray, done_t: jnp.ndarray, gamma: float) -> jnp.ndarray:
    """Reward-to-go ``G_t = x_t + gamma (1 - done_t) G_{t+1}`` within a rollout (``[T, ...]``),
    truncated at the rollout's end (``G_T = 0``)."""

    def body(g, inp):
        x, d = inp
        g = x + gamma * (1.0 - d) * g
        return g, g

    _, g = jax.lax.scan(body, jnp.zeros_like(x_t[0]), (x_t, done_t), reverse=True)
    return g


def make_deep_train(
    env_name: str = "CartPole-v1",
    cost_action: int = 1,
    threshold: float = 0.45,
    iterations: int = 300,
    n_envs: int = 16,
    rollout: int = 64,
    gamma: float = 0.95,
    hidden: int = 32,
    policy_lr: float = 0.05,
    multiplier_lr: float = 0.5,
    optimistic: bool = True,
    multiplier_max: float = 100.0,
):
    """Constrained policy gradient on a gymnax task; ReLOAD (``optimistic``) or GDA.

    The per-step cost is ``c_t = 1[a_t == cost_action]`` and the constraint bounds the average
    cost rate, ``E[c] <= threshold`` (with CartPole and ``cost_action = 1``: push right at most a
    ``threshold`` fraction of the time, which conflicts with balancing). Each iteration
    collects ``n_envs x rollout`` steps (envs continue across iterations, gymnax auto-resets),
    forms REINFORCE advantages of the Lagrangian reward ``r - lam c`` (reward-to-go within the
    rollout minus its batch mean per time step) and takes one step for the policy (ascent)
    and the multiplier (descent on ``L``, ``dL/dlam = -(c_bar - threshold)``), both with
    ``optax.optimistic_gradient_descent`` (ReLOAD) or ``optax.sgd`` (GDA).

    Returns ``train(key) -> (DeepReloadState, {"cost_rate", "termination_rate",
    "multiplier"})`` with one entry per iteration.
    """
    import gymnax

    if iterations < 1 or n_envs < 1 or rollout < 1:
        raise ValueError(
            f"iterations, n_envs and rollout must be >= 1; got {iterations}, {n_envs}, {rollout}"
        )
    env, env_params = gymnax.make(env_name)
    n_actions = env.action_space(env_params).n
    if not 0 <= cost_action < n_actions:
        raise ValueError(f"cost_action must be in [0, {n_actions}); got {cost_action}")
    net = _PolicyMLP(hidden, n_actions)
    popt = make_optimizer(policy_lr, optimistic)
    mopt = make_optimizer(multiplier_lr, optimistic)

    def rollout_fn(params, env_state, obs, key):
        def step(carry, k):
            es, o = carry
            ka, ks = jax.random.split(k)
            logits = net.apply(params, o)
            a = jax.random.categorical(ka, logits)
            keys = jax.random.split(ks, n_envs)
            o2, es2, r, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys, es, a, env_params
            )
            c = (a == cost_action).astype(jnp.float32)
            done = jnp.logical_or(term, trunc).astype(jnp.float32)
            return (es2, o2), (o, a, r.astype(jnp.float32), c, done)

        (es, o), traj = jax.lax.scan(step, (env_state, obs), jax.random.split(key, rollout))
        return es, o, traj

    def train(key: jax.Array):
        k_init, k_env, key = jax.random.split(key, 3)
        obs0, es0 = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_env, n_envs), env_params
        )
        params = net.init(k_init, obs0[0])
        lam = jnp.zeros(())
        state = DeepReloadState(params, lam, popt.init(params), mopt.init(lam), es0, obs0, key)

        def iteration(s: DeepReloadState, _):
            key, k_roll = jax.random.split(s.key)
            es, o, (obs_t, a_t, r_t, c_t, d_t) = rollout_fn(s.params, s.env_state, s.obs, k_roll)
            g = discounted_returns(r_t - s.multiplier * c_t, d_t, gamma)
            adv = jax.lax.stop_gradient(g - g.mean(axis=1, keepdims=True))

            def surrogate(p):  # maximised
                logp = jax.nn.log_softmax(net.apply(p, obs_t))
                logp_a = jnp.take_along_axis(logp, a_t[..., None], axis=-1)[..., 0]
                return jnp.mean(logp_a * adv)

            grad = jax.grad(surrogate)(s.params)
            u, po = popt.update(jax.tree.map(lambda x: -x, grad), s.policy_opt)
            c_bar = c_t.mean()
            ul, mo = mopt.update(-(c_bar - threshold), s.multiplier_opt)
            lam = jnp.clip(s.multiplier + ul, 0.0, multiplier_max)
            new = DeepReloadState(optax.apply_updates(s.params, u), lam, po, mo, es, o, key)
            info = {"cost_rate": c_bar, "termination_rate": d_t.mean(), "multiplier": lam}
            return new, info

        return jax.lax.scan(iteration, state, None, iterations)

    return train
