r"""Random tabular MDPs ("Garnet"-style: Archibald et al. 1995) with exact evaluation.

``make_garnet(key, S, A, branching, gamma)`` draws, for every (s, a), ``branching`` distinct
successor states with probabilities from a flat Dirichlet, and rewards uniform in [0, 1].
All values are *maximised* and discounted by ``gamma``:

.. math::
   v^\pi = (I - \gamma P^\pi)^{-1} r^\pi, \qquad
   q^\pi(s, a) = r(s, a) + \gamma \sum_{s'} P(s' | s, a) v^\pi(s'),

and :math:`J(\pi) = \rho^\top v^\pi` for the start distribution :math:`\rho` (uniform).
The optimal values come from exact policy iteration (it terminates in at most
:math:`A^S` iterations, in practice a handful; we run a fixed number and it is tested).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from metalab.rl import exact
from metalab.rl.exact import TabularMDP


def GarnetMDP(P, R, gamma, rho) -> TabularMDP:  # noqa: N802 - kept for its callers
    """A Garnet MDP is a :class:`metalab.rl.exact.TabularMDP` (``r = R``, ``d0 = rho``).

    ``P``: [S, A, S] transitions; ``R``: [S, A] rewards; ``gamma``; ``rho``: [S] start. The
    result exposes ``mdp.R`` and ``mdp.rho`` as aliases of ``mdp.r`` and ``mdp.d0``.
    """
    return TabularMDP(P=P, r=R, d0=rho, gamma=gamma)


def make_garnet(key, num_states: int, num_actions: int, branching: int, gamma: float) -> TabularMDP:
    """A random Garnet MDP (see module docstring). Raises ``ValueError`` on bad sizes."""
    if num_states < 2:
        raise ValueError(f"num_states must be >= 2, got {num_states}")
    if num_actions < 2:
        raise ValueError(f"num_actions must be >= 2, got {num_actions}")
    if not 1 <= branching <= num_states:
        raise ValueError(f"branching must be in [1, num_states={num_states}], got {branching}")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"gamma must be in [0, 1), got {gamma}")
    k_next, k_prob, k_r = jax.random.split(key, 3)
    keys = jax.random.split(k_next, num_states * num_actions)
    # `branching` distinct successors: the top-k of iid uniforms is a uniform k-subset
    nxt = jax.vmap(lambda k: lax.top_k(jax.random.uniform(k, (num_states,)), branching)[1])(keys)
    probs = jax.random.dirichlet(k_prob, jnp.ones(branching), (num_states * num_actions,))
    P = jnp.zeros((num_states * num_actions, num_states))
    P = jax.vmap(lambda row, i, p: row.at[i].add(p))(P, nxt, probs)
    P = P.reshape(num_states, num_actions, num_states)
    R = jax.random.uniform(k_r, (num_states, num_actions))
    rho = jnp.full((num_states,), 1.0 / num_states)
    return GarnetMDP(P=P, R=R, gamma=jnp.asarray(gamma, jnp.float32), rho=rho)


def policy_values(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """Exact :math:`v^\\pi` ([S]) by a linear solve; ``pi`` is [S, A] (rows sum to 1)."""
    return exact.values(mdp, pi)


def q_values(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """Exact :math:`q^\\pi` ([S, A])."""
    return exact.q_values(mdp, pi)


def expected_return(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """:math:`J(\\pi) = \\rho^\\top v^\\pi` (maximised)."""
    return exact.expected_return(mdp, pi)


def discounted_visitation(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """Normalised discounted state occupancy.

    :math:`d^\\pi_\\rho = (1-\\gamma)\\rho^\\top(I-\\gamma P^\\pi)^{-1}`.
    """
    return exact.occupancy(mdp, pi)


def optimal_values(mdp: TabularMDP, iterations: int = 50) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(v*, greedy policy)`` by ``iterations`` steps of exact policy iteration."""
    return exact.policy_iteration(mdp.P, mdp.r, mdp.gamma, iterations)


__all__ = [
    "GarnetMDP",
    "make_garnet",
    "policy_values",
    "q_values",
    "expected_return",
    "discounted_visitation",
    "optimal_values",
]
