r"""A tabular epsilon-greedy Q-learner on gymnax environments, with a traced epsilon.

Behaviour policy (differentiable in :math:`\epsilon`):

.. math:: \pi_\epsilon(a|s) = (1-\epsilon)\,\mathbb 1[a = \arg\max_b Q(s,b)] + \epsilon/|A|.

Learning: after each batch of ``T`` steps in ``E`` environments, one sweep of one-step
Q-learning over the batch in time order (the ``E`` transitions of a time step are applied
together with a scatter-add),

.. math:: Q(s,a) \leftarrow Q(s,a) + \alpha\big(r + \gamma (1-d) \max_b Q(s',b) - Q(s,a)\big).

Rewards are maximised. States are indexed by ``index_fn(env_state) -> int`` (the learner is
tabular over the environment's true state, e.g. (ball x, ball y, paddle x) in Catch). The
whole lifetime (:func:`make_train`) is one ``lax.scan``; ``epsilon`` is a traced argument so a
grid of fixed values is one ``vmap``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


class Transitions(NamedTuple):
    """``s``, ``a``, ``r``, ``s2``, ``done``: each [T, E] (states as table indices)."""

    s: jnp.ndarray
    a: jnp.ndarray
    r: jnp.ndarray
    s2: jnp.ndarray
    done: jnp.ndarray


class QLearnerState(NamedTuple):
    """Q table [S, A], batched gymnax env states, current state indices [E]."""

    q: jnp.ndarray
    env_state: Any
    s: jnp.ndarray


def epsilon_greedy_probs(q_s: jnp.ndarray, epsilon) -> jnp.ndarray:
    """:math:`\\pi_\\epsilon(\\cdot|s)` over the last axis of ``q_s`` (ties: first action)."""
    n = q_s.shape[-1]
    greedy = jax.nn.one_hot(jnp.argmax(q_s, -1), n)
    return (1.0 - epsilon) * greedy + epsilon / n


def q_update(q: jnp.ndarray, tr: Transitions, lr, discount) -> jnp.ndarray:
    """One Q-learning sweep over a batch in time order (see module docstring)."""

    def body(qq, x):
        s, a, r, s2, d = x
        target = r + discount * (1.0 - d) * jnp.max(qq[s2], -1)
        td = target - qq[s, a]
        return qq.at[s, a].add(lr * td), None

    q, _ = lax.scan(body, q, (tr.s, tr.a, tr.r, tr.s2, tr.done.astype(jnp.float32)))
    return q


def init(
    key, env, env_params, index_fn: Callable, num_states: int, num_actions: int, num_envs: int
) -> QLearnerState:
    """Zero Q table and ``num_envs`` reset environments."""
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    _, es = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, num_envs), env_params)
    return QLearnerState(
        q=jnp.zeros((num_states, num_actions)), env_state=es, s=jax.vmap(index_fn)(es)
    )


def collect(key, st: QLearnerState, epsilon, env, env_params, index_fn: Callable, T: int):
    """Act ``T`` steps with :math:`\\pi_\\epsilon(Q)` (Q frozen); returns ``(transitions, st)``."""
    num_envs = st.s.shape[0]
    q = lax.stop_gradient(st.q)
    eps = lax.stop_gradient(epsilon)

    def body(carry, k):
        es, s = carry
        k_a, k_e = jax.random.split(k)
        probs = epsilon_greedy_probs(q[s], eps)
        a = jax.random.categorical(k_a, jnp.log(probs + 1e-20))
        # gymnax >= 1.0: (obs, state, reward, terminated, truncated, info), auto-reset
        _, es2, r, term, trunc, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(k_e, num_envs), es, a, env_params
        )
        d = jnp.logical_or(term, trunc)
        s2 = jax.vmap(index_fn)(es2)
        return (es2, s2), Transitions(s, a, r.astype(jnp.float32), s2, d)

    (es, s), tr = lax.scan(body, (st.env_state, st.s), jax.random.split(key, T))
    # auto-reset: s2 of a terminal step is the next episode's start; done masks the bootstrap
    return tr, QLearnerState(q=st.q, env_state=es, s=s)


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
) -> Callable[[Any, Any], dict]:
    """``train(key, epsilon) -> {"reward": [num_batches]}`` with a fixed (traced) epsilon."""

    def train(key, epsilon):
        k0, k1 = jax.random.split(key)
        st = init(k0, env, env_params, index_fn, num_states, num_actions, num_envs)

        def body(st, k):
            tr, st = collect(k, st, epsilon, env, env_params, index_fn, batch_len)
            return st._replace(q=q_update(st.q, tr, lr, discount)), jnp.mean(tr.r)

        _, r = lax.scan(body, st, jax.random.split(k1, num_batches))
        return {"reward": r}

    return train


def catch_index(rows: int, columns: int) -> Callable:
    """State index of gymnax Catch: ``ball_x + C * (ball_y + R * paddle_x)``; ``R*C*C`` states."""

    def index(es):
        return es.ball_x + columns * (es.ball_y + rows * es.paddle_x)

    return index
