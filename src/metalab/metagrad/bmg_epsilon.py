r"""BMG for the exploration rate of an epsilon-greedy Q-learner (Flennerhag et al. 2021, Sec. 6).

:math:`\epsilon` enters only the behaviour policy, not the Q-learning update, so the standard
meta-gradient through the update rule is zero. BMG needs no backpropagation through the update:
the target is the learner's own *greedy* policy ``L`` Q-learning updates ahead,

.. math::
   \tilde\pi(\cdot|s) = \mathrm{greedy}\big(Q_{t+L}\big)(s), \qquad
   \mathcal L(\phi) = \frac{1}{|B|}\sum_{s\in B}
      \mathrm{KL}\big(\tilde\pi(\cdot|s)\,\Vert\,\pi_{\epsilon(\phi)}(\cdot|s; Q_t)\big),
   \quad \epsilon(\phi) = \sigma(\phi),

where :math:`Q_{t+L}` is ``L`` sweeps of Q-learning over the latest batch ``B`` from
:math:`Q_t` (stopped). Where the greedy action is stable the KL pulls :math:`\epsilon` down;
where it is about to change, the target puts mass on a non-greedy action and the KL pushes
:math:`\epsilon` up: exploration tracks the instability of the greedy policy. ``phi`` is
minimised with Adam.

Protocol: ``epsilon_meta_gradient(lr, discount, num_bootstrap)`` returns the pure
``meta_loss(phi, q, transitions)`` / ``meta_grad``; ``make_train(EpsilonConfig) ->
train(key, EpsilonParams)`` is a whole lifetime as one ``lax.scan``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metalab.core.bootstrap import bootstrap_target
from metalab.metagrad.bmg import MetaGradient, matching_loss
from metalab.rl import q_learning as ql

__all__ = [
    "EpsilonConfig",
    "EpsilonParams",
    "epsilon_meta_gradient",
    "epsilon_meta_loss",
    "make_train",
]


def _kl_probs(t: jnp.ndarray, o: jnp.ndarray) -> jnp.ndarray:
    """KL(t || o) between probability vectors (the epsilon-greedy policy is not a softmax)."""
    return jnp.sum(jnp.where(t > 0, t * (jnp.log(jnp.maximum(t, 1e-20)) - jnp.log(o)), 0.0))


def epsilon_meta_loss(
    phi, q: jnp.ndarray, target_q: jnp.ndarray, states: jnp.ndarray
) -> jnp.ndarray:
    """Mean over ``states`` of KL(greedy(target_q) || pi_sigmoid(phi)(q)); minimise in ``phi``."""
    n = q.shape[-1]
    target = jax.nn.one_hot(jnp.argmax(target_q[states], -1), n)
    online = ql.epsilon_greedy_probs(q[states], jax.nn.sigmoid(phi))
    return matching_loss(online, target, _kl_probs) / states.size


def epsilon_meta_gradient(lr, discount, num_bootstrap: int = 1) -> MetaGradient:
    """BMG's meta-gradient for epsilon with the Q-learning step ``lr`` and ``discount`` fixed.

    Returns :class:`~metalab.metagrad.bmg.MetaGradient` with
    ``meta_loss(phi, q, transitions)``: the target is the greedy policy of ``q`` after
    ``num_bootstrap`` Q-learning sweeps over ``transitions`` (stopped); the KL is averaged over
    the batch's states.
    """
    if num_bootstrap < 1:
        raise ValueError(
            f"num_bootstrap (L) must be >= 1 for the epsilon target, got {num_bootstrap}"
        )

    def meta_loss(phi, q: jnp.ndarray, tr: ql.Transitions) -> jnp.ndarray:
        target_q = bootstrap_target(
            lambda qq, i: ql.q_update(qq, tr, lr, discount), q, num_bootstrap
        )
        return epsilon_meta_loss(phi, q, target_q, tr.s.reshape(-1))

    return MetaGradient(meta_loss, jax.value_and_grad(meta_loss))


@dataclass(frozen=True)
class EpsilonConfig:
    """Static configuration of a Q-learning lifetime with a BMG-learned epsilon.

    ``env``/``env_params`` a gymnax environment; ``index_fn(env_state) -> int`` the table index
    of a state (``num_states`` of them); ``batch_len`` steps in ``num_envs`` environments per
    Q-learning sweep; ``num_batches`` sweeps (= meta-updates); ``lr`` and ``discount`` of
    Q-learning; ``num_bootstrap`` = L; ``meta_lr`` the Adam step on logit(epsilon).
    """

    env: Any
    env_params: Any
    index_fn: Callable
    num_states: int
    num_actions: int
    num_envs: int = 16
    batch_len: int = 10
    num_batches: int = 100
    lr: float = 0.1
    discount: float = 0.99
    num_bootstrap: int = 1
    meta_lr: float = 0.01

    def __post_init__(self):
        if self.num_bootstrap < 1:
            raise ValueError(
                f"num_bootstrap (L) must be >= 1 for the epsilon target, got {self.num_bootstrap}"
            )
        for f in ("num_envs", "batch_len", "num_batches"):
            if getattr(self, f) < 1:
                raise ValueError(f"EpsilonConfig.{f} must be >= 1, got {getattr(self, f)}")


class EpsilonParams(NamedTuple):
    """Traced input of a lifetime: the initial epsilon (in (0, 1))."""

    epsilon0: jnp.ndarray


def _step(cfg: EpsilonConfig, mg: MetaGradient, opt, carry, k):
    st, phi, opt_state = carry
    eps = jax.nn.sigmoid(phi)
    tr, st = ql.collect(k, st, eps, cfg.env, cfg.env_params, cfg.index_fn, cfg.batch_len)
    _, g = mg.meta_grad(phi, st.q, tr)
    upd, opt_state = opt.update(g, opt_state, phi)
    phi = optax.apply_updates(phi, upd)
    q = ql.q_update(st.q, tr, cfg.lr, cfg.discount)
    return (st._replace(q=q), phi, opt_state), (jnp.mean(tr.r), eps)


def make_train(config: EpsilonConfig) -> Callable[[jax.Array, EpsilonParams], dict]:
    """``train(key, EpsilonParams(epsilon0)) -> {"reward": [B], "epsilon": [B]}``.

    ``reward`` is the mean reward per env step of each batch; ``epsilon`` the behaviour
    epsilon used to collect it.
    """
    mg = epsilon_meta_gradient(config.lr, config.discount, config.num_bootstrap)
    opt = optax.adam(config.meta_lr)
    c = config

    def train(key: jax.Array, params: EpsilonParams) -> dict:
        k0, k1 = jax.random.split(key)
        st = ql.init(k0, c.env, c.env_params, c.index_fn, c.num_states, c.num_actions, c.num_envs)
        e0 = jnp.asarray(params.epsilon0, jnp.float32)
        phi = jnp.log(e0) - jnp.log1p(-e0)
        _, (r, e) = lax.scan(
            partial(_step, c, mg, opt),
            (st, phi, opt.init(phi)),
            jax.random.split(k1, c.num_batches),
        )
        return {"reward": r, "epsilon": e}

    return train
