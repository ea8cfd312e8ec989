"""ReLOAD: optimistic gradient ascent-descent on the Lagrangian of a constrained MDP.

Moskovitz, O'Donoghue, Veeriah, Flennerhag, Singh, Zahavy (2023). "ReLOAD: Reinforcement
Learning with Optimistic Ascent-Descent for Last-Iterate Convergence in Constrained MDPs",
arXiv:2302.01275.

Problem (maximise reward, bound ``m >= 1`` costs):

    max_pi v_r(pi)  s.t.  v_{c_k}(pi) <= b_k (k = 1..m),
    L(pi, lam) = v_r(pi) - sum_k lam_k (v_{c_k}(pi) - b_k),  lam >= 0 (one multiplier each).

The policy *ascends* ``L`` and the multipliers *descend* it. With ``g_t`` the policy ascent
direction and ``h_t = dL/dlam = -(v_c - b)`` (a vector):

    GDA:     theta_{t+1} = theta_t + eta g_t,
             lam_{t+1}   = [lam_t - eta_l h_t]_+
    ReLOAD:  theta_{t+1} = theta_t + eta (2 g_t - g_{t-1}),
             lam_{t+1}   = [lam_t - eta_l (2 h_t - h_{t-1})]_+

The optimistic step is ``optax.optimistic_gradient_descent(lr, alpha=1, beta=1)`` (update
``-(lr) ((alpha + beta) g_t - beta g_{t-1})``, with ``g_{-1} = g_0``); GDA is ``optax.sgd``.
Both are used as they are; the policy's ascent direction is negated before ``update``.
``[.]_+`` is a projection on ``[0, lam_max]`` applied after the optax step.

The tabular policy is a softmax over logits with exact values (:mod:`metalab.rl.exact`); a CMDP
is a :class:`metalab.rl.exact.TabularMDP` with ``costs [m, S, A]`` and ``thresholds [m]``
(:mod:`metalab.rl.envs.cmdp`). Two ascent directions: ``"npg"`` the natural gradient (the
advantage of ``r - lam . c``, i.e. per-state multiplicative-weights / mirror-descent, the
setting of the paper's last-iterate guarantee) and ``"pg"`` the exact vanilla policy gradient.

The deep variant (:func:`make_deep_train`) is an actor-critic with GAE on a gymnax task with
per-step costs: the actor and the multipliers are the two players (optimistic or plain SGD),
the critics (one value head per reward and cost) are regressed with Adam in both methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
import rlax

from metalab.rl import exact
from metalab.rl.exact import TabularMDP

DIRECTIONS = ("npg", "pg")


class ReloadParams(NamedTuple):
    """Traced hyperparameters: policy and multiplier step sizes, and the multipliers' cap."""

    policy_lr: jnp.ndarray
    multiplier_lr: jnp.ndarray
    multiplier_max: jnp.ndarray


class ReloadState(NamedTuple):
    """Logits ``[S, A]``, multipliers ``lam [m] >= 0`` and the two optax states."""

    logits: jnp.ndarray
    multiplier: jnp.ndarray
    policy_opt: optax.OptState
    multiplier_opt: optax.OptState


def make_optimizer(lr, optimistic: bool) -> optax.GradientTransformation:
    """``optax.optimistic_gradient_descent(lr, 1, 1)`` (ReLOAD) or ``optax.sgd(lr)`` (GDA)."""
    if optimistic:
        return optax.optimistic_gradient_descent(lr, alpha=1.0, beta=1.0)
    return optax.sgd(lr)


def _check_cmdp(cmdp: TabularMDP) -> None:
    if cmdp.costs is None or cmdp.thresholds is None:
        raise ValueError(
            "cmdp must carry costs [m, S, A] and thresholds [m] (see metalab.rl.envs.cmdp); "
            "got costs=None"
        )
    exact.validate(cmdp)


def _multipliers(cmdp: TabularMDP, multiplier) -> jnp.ndarray:
    m = cmdp.costs.shape[0]
    lam = jnp.asarray(multiplier, jnp.float32)
    if lam.ndim == 0:
        lam = jnp.full((m,), lam)
    if lam.shape != (m,):
        raise ValueError(
            f"multiplier must be a scalar or have shape [m]=({m},), one per cost; got {lam.shape}"
        )
    return lam


def lagrangian(cmdp: TabularMDP, logits: jnp.ndarray, multiplier) -> jnp.ndarray:
    """``L = v_r - sum_k lam_k (v_{c_k} - b_k)`` for the softmax policy (the policy maximises)."""
    _check_cmdp(cmdp)
    lam = _multipliers(cmdp, multiplier)
    pi = exact.softmax_policy(logits)
    return exact.reward_value(cmdp, pi) - lam @ (exact.cost_values(cmdp, pi) - cmdp.thresholds)


def policy_direction(
    cmdp: TabularMDP, logits: jnp.ndarray, multiplier, direction: str
) -> jnp.ndarray:
    """Ascent direction of ``L`` in the logits.

    ``"npg"``: the advantage of ``r - lam . c``; ``"pg"``: the exact vanilla gradient.
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    _check_cmdp(cmdp)
    lam = _multipliers(cmdp, multiplier)
    c = cmdp.costs
    r = cmdp.r
    if c.ndim == 2:  # state costs [m, S]
        c = c[..., None] * jnp.ones(cmdp.P.shape[:2])
    if r.ndim == 1:
        r = r[:, None] * jnp.ones(cmdp.P.shape[:2])
    reward = r - jnp.einsum("k,ksa->sa", lam, c)
    if direction == "npg":
        return exact.natural_direction(cmdp.P, logits, reward, cmdp.gamma)
    return exact.policy_gradient(cmdp.P, logits, reward, cmdp.d0, cmdp.gamma)


def init(
    key: jax.Array,
    cmdp: TabularMDP,
    params: ReloadParams,
    optimistic: bool,
    init_scale: float = 0.0,
) -> ReloadState:
    """Initial state: logits ``init_scale * N(0, 1)``, multipliers 0, fresh optimiser states."""
    _check_cmdp(cmdp)
    logits = init_scale * jax.random.normal(key, cmdp.P.shape[:2])
    lam = jnp.zeros(cmdp.costs.shape[0])
    return ReloadState(
        logits,
        lam,
        make_optimizer(params.policy_lr, optimistic).init(logits),
        make_optimizer(params.multiplier_lr, optimistic).init(lam),
    )


def update(
    state: ReloadState,
    cmdp: TabularMDP,
    params: ReloadParams,
    optimistic: bool,
    direction: str = "npg",
) -> tuple[ReloadState, dict[str, jnp.ndarray]]:
    """One simultaneous ascent-descent step (both players use the current iterate).

    Returns the new state and ``{"value": v_r, "cost": [m] v_c, "violation": [m] v_c - b,
    "max_violation": max_k (v_{c_k} - b_k), "multiplier": [m] lam}`` measured at the
    *current* (pre-update) iterate (the multiplier after the update).
    """
    pi = exact.softmax_policy(state.logits)
    v_r = exact.reward_value(cmdp, pi)
    v_c = exact.cost_values(cmdp, pi)
    g = policy_direction(cmdp, state.logits, state.multiplier, direction)
    popt = make_optimizer(params.policy_lr, optimistic)
    mopt = make_optimizer(params.multiplier_lr, optimistic)
    # optax minimises: feed the negated ascent direction for the policy.
    u_theta, policy_opt = popt.update(-g, state.policy_opt)
    # The multipliers minimise L: dL/dlam_k = -(v_{c_k} - b_k).
    u_lam, multiplier_opt = mopt.update(-(v_c - cmdp.thresholds), state.multiplier_opt)
    lam = jnp.clip(state.multiplier + u_lam, 0.0, params.multiplier_max)
    new = ReloadState(state.logits + u_theta, lam, policy_opt, multiplier_opt)
    viol = v_c - cmdp.thresholds
    info = {
        "value": v_r,
        "cost": v_c,
        "violation": viol,
        "max_violation": jnp.max(viol),
        "multiplier": lam,
    }
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

    def train(key: jax.Array, cmdp: TabularMDP, params: ReloadParams):
        state = init(key, cmdp, params, optimistic, init_scale)

        def body(s, _):
            return update(s, cmdp, params, optimistic, direction)

        return jax.lax.scan(body, state, None, steps)

    return train


def windowed_violation(violation_t: jnp.ndarray, window: int) -> jnp.ndarray:
    """Largest positive constraint violation ``max(v_c - b, 0)`` in consecutive windows.

    Args:
      violation_t: ``[T]`` signed violations ``v_c - b`` (or ``[T, m]``: the max over
        constraints is taken first). window: window length dividing ``T``.

    Returns:
      ``[T // window]`` per-window maxima: the envelope of the last-iterate violation.
    """
    if violation_t.ndim == 2:
        violation_t = jnp.max(violation_t, axis=1)
    T = violation_t.shape[0]
    if T % window:
        raise ValueError(f"window ({window}) must divide the number of steps ({T})")
    return jnp.max(jnp.maximum(violation_t, 0.0).reshape(T // window, window), axis=1)


def fraction_within(violation_t: jnp.ndarray, tol) -> jnp.ndarray:
    """Fraction of iterations whose largest violation ``max_k (v_{c_k} - b_k)`` is ``<= tol``.

    A statistic that cannot punish converging: a run that stays feasible scores 1.
    """
    if violation_t.ndim == 2:
        violation_t = jnp.max(violation_t, axis=1)
    return jnp.mean((violation_t <= tol).astype(jnp.float32))


# --------------------------------------------------------------------------------------------
# Deep variant: an actor-critic with GAE on a gymnax task with per-step costs.
# --------------------------------------------------------------------------------------------


class DeepReloadState(NamedTuple):
    """Actor and critic parameters, multipliers ``[m]``, optimiser states, envs and key."""

    actor: Any
    critic: Any
    multiplier: jnp.ndarray
    actor_opt: optax.OptState
    critic_opt: optax.OptState
    multiplier_opt: optax.OptState
    env_state: Any
    obs: jnp.ndarray
    key: jax.Array


class _MLP(nn.Module):
    hidden: int
    out: int

    @nn.compact
    def __call__(self, x):
        x = nn.tanh(nn.Dense(self.hidden)(x))
        x = nn.tanh(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out, kernel_init=nn.initializers.orthogonal(0.01))(x)


def gae(
    reward_t: jnp.ndarray, done_t: jnp.ndarray, value_t: jnp.ndarray, gamma, lambda_
) -> jnp.ndarray:
    """Generalised advantage estimation over a rollout (``rlax``), ``[T, E]`` inputs.

    ``value_t`` is ``[T + 1, E]`` (the last row bootstraps); an episode end at ``t`` cuts the
    bootstrap (``discount_t = gamma (1 - done_t)``). Returns ``[T, E]`` advantages (gradient
    stopped).
    """
    disc = gamma * (1.0 - done_t)
    f = lambda r, d, v: rlax.truncated_generalized_advantage_estimation(r, d, lambda_, v)
    adv = jax.vmap(f, in_axes=(1, 1, 1), out_axes=1)(reward_t, disc, value_t)
    return jax.lax.stop_gradient(adv)


def discounted_returns(x_t: jnp.ndarray, done_t: jnp.ndarray, gamma: float) -> jnp.ndarray:
    """Reward-to-go ``G_t = x_t + gamma (1 - done_t) G_{t+1}`` within a rollout (``[T, ...]``),
    truncated at the rollout's end (``G_T = 0``)."""

    def body(g, inp):
        x, d = inp
        g = x + gamma * (1.0 - d) * g
        return g, g

    _, g = jax.lax.scan(body, jnp.zeros_like(x_t[0]), (x_t, done_t), reverse=True)
    return g


def _cost_fn(cost_actions: tuple[int, ...]):
    """Per-step costs ``c_k = 1[a == cost_actions[k]]`` (``[..., m]``)."""
    acts = jnp.asarray(cost_actions)
    return lambda a: (a[..., None] == acts).astype(jnp.float32)


@dataclass(frozen=True)
class DeepReloadConfig:
    """Static configuration of :func:`make_deep_train` (see its docstring for the agent).

    ``cost_actions[k]`` is the action whose use costs 1 for constraint ``k`` and
    ``thresholds[k]`` the bound on its average rate (one entry each).
    """

    env_name: str = "CartPole-v1"
    cost_actions: tuple[int, ...] = (1,)
    thresholds: tuple[float, ...] = (0.45,)
    iterations: int = 300
    n_envs: int = 16
    rollout: int = 32
    gamma: float = 0.99
    gae_lambda: float = 0.95
    hidden: int = 32
    policy_lr: float = 0.05
    critic_lr: float = 3e-3
    multiplier_lr: float = 0.5
    entropy: float = 0.0
    optimistic: bool = True
    multiplier_max: float = 100.0


def make_deep_train(config: DeepReloadConfig | None = None, **overrides):
    """Constrained actor-critic (GAE) on a gymnax task; ReLOAD (``optimistic``) or GDA.

    ``make_deep_train(DeepReloadConfig(...)) -> train(key)`` (keyword ``overrides`` replace
    fields of the config, e.g. ``make_deep_train(optimistic=False)``).

    Costs: ``c_{k,t} = 1[a_t == cost_actions[k]]``; constraint ``k`` bounds the average cost
    rate, ``E[c_k] <= thresholds[k]`` (CartPole with ``cost_actions = (1,)``: push right at most
    a ``thresholds[0]`` fraction of the time, which conflicts with balancing). Each iteration
    collects ``n_envs x rollout`` steps (envs continue across iterations, gymnax auto-resets)
    and forms GAE advantages of the reward and of each cost with their own critic heads
    (``critic(obs) -> [1 + m]``). The actor ascends ``E[log pi(a|s) (A_r - lam . A_c)] +
    entropy * H`` and the multipliers descend ``L`` with ``dL/dlam_k = -(c_bar_k - b_k)``, both
    with ``optax.optimistic_gradient_descent`` (ReLOAD) or ``optax.sgd`` (GDA) at the same step
    sizes; the critics regress their GAE targets with Adam (``critic_lr``) in both methods.

    Returns ``train(key) -> (DeepReloadState, {"cost_rate": [iterations, m],
    "reward_rate", "termination_rate": [iterations], "multiplier": [iterations, m]})``.
    """
    import dataclasses as _dc

    config = _dc.replace(config or DeepReloadConfig(), **overrides)
    env_name, cost_actions, thresholds = config.env_name, config.cost_actions, config.thresholds
    iterations, n_envs, rollout = config.iterations, config.n_envs, config.rollout
    gamma, gae_lambda, hidden = config.gamma, config.gae_lambda, config.hidden
    policy_lr, critic_lr, multiplier_lr = config.policy_lr, config.critic_lr, config.multiplier_lr
    entropy, optimistic, multiplier_max = config.entropy, config.optimistic, config.multiplier_max
    import gymnax

    if iterations < 1 or n_envs < 1 or rollout < 1:
        raise ValueError(
            f"iterations, n_envs and rollout must be >= 1; got {iterations}, {n_envs}, {rollout}"
        )
    cost_actions, thresholds = tuple(cost_actions), tuple(thresholds)
    if len(cost_actions) != len(thresholds) or not cost_actions:
        raise ValueError(
            f"thresholds must have one entry per cost in cost_actions; got {len(thresholds)} "
            f"thresholds for {len(cost_actions)} cost_actions"
        )
    env, env_params = gymnax.make(env_name)
    n_actions = env.action_space(env_params).n
    for a in cost_actions:
        if not 0 <= a < n_actions:
            raise ValueError(f"cost_actions entries must be in [0, {n_actions}); got {a}")
    m = len(cost_actions)
    b = jnp.asarray(thresholds, jnp.float32)
    cost_of = _cost_fn(cost_actions)
    actor, critic = _MLP(hidden, n_actions), _MLP(hidden, 1 + m)
    aopt = make_optimizer(policy_lr, optimistic)
    copt = optax.adam(critic_lr)
    mopt = make_optimizer(multiplier_lr, optimistic)

    def rollout_fn(params, env_state, obs, key):
        def step(carry, k):
            es, o = carry
            ka, ks = jax.random.split(k)
            a = jax.random.categorical(ka, actor.apply(params, o))
            keys = jax.random.split(ks, n_envs)
            o2, es2, r, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys, es, a, env_params
            )
            done = jnp.logical_or(term, trunc).astype(jnp.float32)
            return (es2, o2), (o, a, r.astype(jnp.float32), cost_of(a), done)

        (es, o), traj = jax.lax.scan(step, (env_state, obs), jax.random.split(key, rollout))
        return es, o, traj

    def train(key: jax.Array):
        k_a, k_c, k_env, key = jax.random.split(key, 4)
        obs0, es0 = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(k_env, n_envs), env_params
        )
        pa, pc = actor.init(k_a, obs0[0]), critic.init(k_c, obs0[0])
        lam = jnp.zeros(m)
        state = DeepReloadState(
            pa, pc, lam, aopt.init(pa), copt.init(pc), mopt.init(lam), es0, obs0, key
        )

        def iteration(s: DeepReloadState, _):
            key, k_roll = jax.random.split(s.key)
            es, o, (obs_t, a_t, r_t, c_t, d_t) = rollout_fn(s.actor, s.env_state, s.obs, k_roll)
            all_obs = jnp.concatenate([obs_t, o[None]], 0)  # [T+1, E, F]
            v = critic.apply(s.critic, all_obs)  # [T+1, E, 1+m]
            signals = jnp.concatenate([r_t[..., None], c_t], -1)  # [T, E, 1+m]
            adv = jax.vmap(lambda x, vv: gae(x, d_t, vv, gamma, gae_lambda), (2, 2), 2)(signals, v)
            targets = jax.lax.stop_gradient(adv + v[:-1])
            lag_adv = adv[..., 0] - adv[..., 1:] @ s.multiplier

            def actor_objective(p):  # maximised
                logp = jax.nn.log_softmax(actor.apply(p, obs_t))
                logp_a = jnp.take_along_axis(logp, a_t[..., None], axis=-1)[..., 0]
                ent = -jnp.sum(jnp.exp(logp) * logp, -1)
                return jnp.mean(logp_a * lag_adv + entropy * ent)

            def critic_loss(p):
                return 0.5 * jnp.mean(jnp.square(critic.apply(p, obs_t) - targets))

            ga = jax.grad(actor_objective)(s.actor)
            ua, ao = aopt.update(jax.tree.map(lambda x: -x, ga), s.actor_opt)
            gc = jax.grad(critic_loss)(s.critic)
            uc, co = copt.update(gc, s.critic_opt, s.critic)
            c_bar = c_t.mean(axis=(0, 1))
            ul, mo = mopt.update(-(c_bar - b), s.multiplier_opt)
            lam = jnp.clip(s.multiplier + ul, 0.0, multiplier_max)
            new = DeepReloadState(
                optax.apply_updates(s.actor, ua),
                optax.apply_updates(s.critic, uc),
                lam,
                ao,
                co,
                mo,
                es,
                o,
                key,
            )
            info = {
                "cost_rate": c_bar,
                "reward_rate": r_t.mean(),
                "termination_rate": d_t.mean(),
                "multiplier": lam,
            }
            return new, info

        return jax.lax.scan(iteration, state, None, iterations)

    return train


__all__ = [
    "DIRECTIONS",
    "ReloadParams",
    "ReloadState",
    "DeepReloadConfig",
    "DeepReloadState",
    "make_optimizer",
    "lagrangian",
    "policy_direction",
    "init",
    "update",
    "make_train",
    "windowed_violation",
    "fraction_within",
    "gae",
    "discounted_returns",
    "make_deep_train",
]
