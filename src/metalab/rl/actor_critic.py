r"""An n-step advantage actor-critic in pure JAX with *traced* hyperparameters.

The learner minimises, on a rollout of ``T`` steps from ``E`` parallel environments,

.. math::
   \mathcal L(\theta; \eta) = -\frac{1}{TE}\sum_{t,e} \log\pi_\theta(a_t|s_t)\,
      \mathrm{sg}(G_t - v_\theta(s_t))
   + \frac{c_v}{2}\,\frac{1}{TE}\sum (\mathrm{sg}(G_t) - v_\theta(s_t))^2
   - \beta\,\frac{1}{TE}\sum \mathcal H(\pi_\theta(\cdot|s_t)),

with the bootstrapped n-step return :math:`G_t = r_{t+1} + \gamma G_{t+1}`,
:math:`G_T = v_\theta(s_T)` (``rlax.discounted_returns``), and updates by SGD
:math:`\theta \leftarrow \theta - \alpha \nabla_\theta \mathcal L`. The hyperparameters
:math:`\eta = (\beta, \alpha, \gamma, c_v)` form the :class:`ACHyper` pytree: they may be
traced, vmapped or differentiated (meta-gradients flow through :func:`ac_update`).
Returns are maximised; ``ac_loss`` is minimised.

The whole lifetime (``make_train(ACConfig) -> train(key)``) is one ``lax.scan`` over updates,
each of which collects a rollout with an inner ``lax.scan`` over time; ``jax.vmap`` it over
seeds. Environments are :class:`EnvFns`; :func:`from_gymnax` adapts a gymnax-style one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import rlax
from jax import lax

PyTree = Any


class ACHyper(NamedTuple):
    """Traced actor-critic hyperparameters (all scalars, may be meta-learned).

    Attributes:
      entropy: entropy-bonus weight beta >= 0 (the loss *subtracts* beta * H).
      lr: SGD step size alpha > 0.
      discount: gamma in [0, 1).
      value_coef: weight c_v of the value loss.
    """

    entropy: jnp.ndarray
    lr: jnp.ndarray
    discount: jnp.ndarray
    value_coef: jnp.ndarray


def make_hyper(entropy=0.01, lr=0.1, discount=0.9, value_coef=0.5) -> ACHyper:
    """Build an :class:`ACHyper` of float32 scalars, validating concrete values."""
    vals = {"entropy": entropy, "lr": lr, "discount": discount, "value_coef": value_coef}
    for name, v in vals.items():
        if isinstance(v, int | float):
            if name == "discount" and not 0.0 <= v < 1.0:
                raise ValueError(f"ACHyper.discount must be in [0, 1), got {v}")
            if name == "lr" and v <= 0:
                raise ValueError(f"ACHyper.lr must be > 0, got {v}")
            if name in ("entropy", "value_coef") and v < 0:
                raise ValueError(f"ACHyper.{name} must be >= 0, got {v}")
    return ACHyper(**{k: jnp.asarray(v, jnp.float32) for k, v in vals.items()})


class ACNet(nn.Module):
    """Policy logits and state value from a shared torso (``hidden=()`` is linear)."""

    num_actions: int
    hidden: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, obs: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        x = obs
        for h in self.hidden:
            x = nn.tanh(nn.Dense(h)(x))
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.zeros)(x)
        value = nn.Dense(1, kernel_init=nn.initializers.zeros)(x)[..., 0]
        return logits, value


class Rollout(NamedTuple):
    """``obs``: [T+1, E, F] (the last one bootstraps); ``actions``, ``rewards``: [T, E]."""

    obs: jnp.ndarray
    actions: jnp.ndarray
    rewards: jnp.ndarray


class EnvFns(NamedTuple):
    """A pure environment: ``reset(key) -> (obs, s)``, ``step(key, s, a) -> (obs, s, r)``."""

    reset: Callable
    step: Callable


ApplyFn = Callable[[PyTree, jnp.ndarray], tuple[jnp.ndarray, jnp.ndarray]]


def collect(
    key, params: PyTree, env: EnvFns, env_state, obs: jnp.ndarray, apply_fn: ApplyFn, T: int
) -> tuple[Rollout, Any, jnp.ndarray]:
    """Act ``T`` steps in ``E`` environments (batched ``env_state``/``obs``) with ``params``.

    Returns ``(rollout, env_state, obs)``; the rollout is a constant (no gradient flows
    through sampling).
    """
    params = lax.stop_gradient(params)
    num_envs = obs.shape[0]

    def body(carry, k):
        s, o = carry
        k_act, k_env = jax.random.split(k)
        logits, _ = apply_fn(params, o)
        a = jax.random.categorical(k_act, logits)
        o2, s2, r = jax.vmap(env.step)(jax.random.split(k_env, num_envs), s, a)
        return (s2, o2), (o, a, r)

    (env_state, last_obs), (o, a, r) = lax.scan(body, (env_state, obs), jax.random.split(key, T))
    rollout = Rollout(obs=jnp.concatenate([o, last_obs[None]], 0), actions=a, rewards=r)
    return rollout, env_state, last_obs


def _returns(rollout: Rollout, values: jnp.ndarray, discount) -> jnp.ndarray:
    """Bootstrapped n-step returns [T, E] (targets, gradient stopped)."""
    disc = jnp.full(rollout.rewards.shape, discount, jnp.float32)
    g = jax.vmap(rlax.discounted_returns, in_axes=(1, 1, 1), out_axes=1)(
        rollout.rewards, disc, values[1:]
    )
    return lax.stop_gradient(g)


def ac_terms(params: PyTree, hyper: ACHyper, rollout: Rollout, apply_fn: ApplyFn) -> dict:
    """The three loss terms (policy-gradient, value, entropy) and the advantages."""
    logits, values = apply_fn(params, rollout.obs)  # [T+1, E, A], [T+1, E]
    g = _returns(rollout, values, hyper.discount)
    adv = g - values[:-1]
    logp = jax.nn.log_softmax(logits[:-1])
    logp_a = jnp.take_along_axis(logp, rollout.actions[..., None], -1)[..., 0]
    pg = -jnp.mean(logp_a * lax.stop_gradient(adv))
    value = 0.5 * jnp.mean(jnp.square(adv))
    entropy = jnp.mean(-jnp.sum(jnp.exp(logp) * logp, -1))
    return {"pg": pg, "value": value, "entropy": entropy, "adv": adv}


def ac_loss(params: PyTree, hyper: ACHyper, rollout: Rollout, apply_fn: ApplyFn) -> jnp.ndarray:
    """The actor-critic loss (minimised): ``pg + c_v * value - beta * entropy``."""
    t = ac_terms(params, hyper, rollout, apply_fn)
    return t["pg"] + hyper.value_coef * t["value"] - hyper.entropy * t["entropy"]


def meta_objective(
    params: PyTree, hyper: ACHyper, rollout: Rollout, apply_fn: ApplyFn
) -> jnp.ndarray:
    """The outer objective of meta-gradient RL: the loss without the entropy bonus.

    Used by the standard meta-gradient (evaluated at the updated parameters) and as the
    final gradient step of BMG's bootstrapped target. Minimised.
    """
    t = ac_terms(params, hyper, rollout, apply_fn)
    return t["pg"] + hyper.value_coef * t["value"]


def ac_update(params: PyTree, hyper: ACHyper, rollout: Rollout, apply_fn: ApplyFn) -> PyTree:
    """One SGD step ``theta - lr * grad ac_loss``; differentiable in ``hyper`` and ``params``."""
    g = jax.grad(ac_loss)(params, hyper, rollout, apply_fn)
    return jax.tree.map(lambda p, gi: p - hyper.lr * gi, params, g)


class ACState(NamedTuple):
    """Lifetime state of the actor-critic: parameters, batched env states, last obs."""

    params: PyTree
    env_state: Any
    obs: jnp.ndarray


def init(key, env: EnvFns, net: ACNet, num_envs: int) -> ACState:
    """Initialise network parameters and ``num_envs`` environments."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    k_net, k_env = jax.random.split(key)
    obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, num_envs))
    params = net.init(k_net, obs[0])
    return ACState(params=params, env_state=env_state, obs=obs)


@dataclass(frozen=True)
class ACConfig:
    """Static configuration of a whole actor-critic lifetime (:func:`make_train`).

    Attributes:
      env: the environment as :class:`EnvFns` (see :func:`from_gymnax` for gymnax envs).
      net: the :class:`ACNet`.
      num_envs, rollout_len, num_updates: sizes (>= 1).
      hyper: the traced hyperparameters used when ``train`` gets none (default
        :func:`make_hyper`'s).
    """

    env: EnvFns
    net: ACNet
    num_envs: int = 8
    rollout_len: int = 16
    num_updates: int = 100
    hyper: ACHyper | None = None


def from_gymnax(env: Any, env_params: Any) -> EnvFns:
    """Wrap a gymnax-style environment (``reset(key, params) -> (obs, state)``, ``step(key,
    state, action, params) -> (obs, state, reward, done, info)``, auto-resetting) as
    :class:`EnvFns` for :func:`collect` (the ``done`` flag is dropped: continuing returns)."""
    return EnvFns(
        reset=lambda key: env.reset(key, env_params),
        step=lambda key, s, a: env.step(key, s, a, env_params)[:3],
    )


def make_train(config: ACConfig) -> Callable[..., dict]:
    """``train(key, hyper=None) -> {"reward": [num_updates]}``: a whole lifetime as one scan.

    ``reward`` is the mean reward per env step of each update's rollout. ``hyper`` is traced
    (default ``config.hyper``), so ``jax.vmap(train)(keys)`` runs seeds and
    ``jax.vmap(train, in_axes=(None, 0))`` a grid of hyperparameters.
    """
    if not isinstance(config, ACConfig):
        raise TypeError(f"make_train takes an ACConfig; got {type(config).__name__}")
    env, net = config.env, config.net
    num_envs, rollout_len, num_updates = config.num_envs, config.rollout_len, config.num_updates
    if rollout_len < 1 or num_updates < 1:
        raise ValueError(
            f"ACConfig.rollout_len and ACConfig.num_updates must be >= 1, got {rollout_len}, "
            f"{num_updates}"
        )
    default_hyper = config.hyper if config.hyper is not None else make_hyper()

    def train(key, hyper: ACHyper | None = None) -> dict:
        hyper = default_hyper if hyper is None else hyper
        k_init, k_run = jax.random.split(key)
        state = init(k_init, env, net, num_envs)

        def body(st, k):
            ro, es, o = collect(k, st.params, env, st.env_state, st.obs, net.apply, rollout_len)
            params = ac_update(st.params, hyper, ro, net.apply)
            return ACState(params, es, o), jnp.mean(ro.rewards)

        _, rewards = lax.scan(body, state, jax.random.split(k_run, num_updates))
        return {"reward": rewards}

    return train


__all__ = [
    "ACConfig",
    "ACHyper",
    "ACNet",
    "ACState",
    "EnvFns",
    "Rollout",
    "ac_loss",
    "ac_terms",
    "ac_update",
    "collect",
    "from_gymnax",
    "init",
    "make_hyper",
    "make_train",
    "meta_objective",
]
