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
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metalab.core.bootstrap import bmg_loss, bootstrap_target
from metalab.rl import q_learning as ql


def epsilon_meta_loss(
    phi, q: jnp.ndarray, target_q: jnp.ndarray, states: jnp.ndarray
) -> jnp.ndarray:
    """Mean over ``states`` of KL(greedy(target_q) || pi_sigmoid(phi)(q)); minimise in ``phi``."""
    n = q.shape[-1]
    target = jax.nn.one_hot(jnp.argmax(target_q[states], -1), n)
    online = ql.epsilon_greedy_probs(q[states], jax.nn.sigmoid(phi))

    def kl(t, o):  # probabilities, not logits: the epsilon-greedy policy is not a softmax
        return jnp.sum(jnp.where(t > 0, t * (jnp.log(jnp.maximum(t, 1e-20)) - jnp.log(o)), 0.0))

    return bmg_loss(online, target, kl) / states.size


def make_train(
    env,
    env_params,
    index_fn: Callable,
    num_states: int,
    num_actions: int,
    *,
    num_envs: int,
    batch_len: int,
    num_batches: int,
    lr: float,
    discount: float,
    num_bootstrap: int = 1,
    meta_lr: float = 0.01,
) -> Callable[[Any, Any], dict]:
    """``train(key, epsilon0) -> {"reward", "epsilon"}`` with epsilon meta-learned by BMG."""
    if num_bootstrap < 1:
        raise ValueError(
            f"num_bootstrap (L) must be >= 1 for the epsilon target, got {num_bootstrap}"
        )
    opt = optax.adam(meta_lr)

    def train(key, epsilon0):
        k0, k1 = jax.random.split(key)
        st = ql.init(k0, env, env_params, index_fn, num_states, num_actions, num_envs)
        phi = jnp.log(epsilon0) - jnp.log1p(-epsilon0)

        def body(carry, k):
            st, phi, opt_state = carry
            eps = jax.nn.sigmoid(phi)
            tr, st = ql.collect(k, st, eps, env, env_params, index_fn, batch_len)
            q_next = ql.q_update(st.q, tr, lr, discount)
            target_q = bootstrap_target(
                lambda q, i: ql.q_update(q, tr, lr, discount), q_next, num_bootstrap - 1
            )
            g = jax.grad(epsilon_meta_loss)(phi, st.q, target_q, tr.s.reshape(-1))
            upd, opt_state = opt.update(g, opt_state, phi)
            phi = optax.apply_updates(phi, upd)
            return (st._replace(q=q_next), phi, opt_state), (jnp.mean(tr.r), eps)

        _, (r, e) = lax.scan(body, (st, phi, opt.init(phi)), jax.random.split(k1, num_batches))
        return {"reward": r, "epsilon": e}

    return train


__all__ = ["epsilon_meta_loss", "make_train"]
