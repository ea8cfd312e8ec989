"""Exact tabular successor features, values and policy gradients.

Successor features (Barreto et al., 2017, "Successor Features for Transfer in Reinforcement
Learning", arXiv:1606.05312) of a policy ``pi`` with features ``phi(s)`` are

    psi^pi(s) = E_pi[ sum_t gamma^t phi(s_t) | s_0 = s ]   =>   Psi = (I - gamma P_pi)^{-1} Phi,

with ``P_pi[s, s'] = sum_a pi(a|s) P(s'|s, a)``. The *expected, normalised* successor features
used by DOMiNO and Diverse Successive Policies (Zahavy et al., 2021/2022) are

    psi_pi = (1 - gamma) d0^T (I - gamma P_pi)^{-1} Phi = sum_s d_pi(s) phi(s),

where ``d_pi = (1 - gamma) d0^T (I - gamma P_pi)^{-1}`` is the normalised discounted state
occupancy (a distribution over states). With one-hot features ``psi_pi = d_pi``. The
normalised value of a reward ``r`` is ``v_pi = (1 - gamma) d0^T V^pi = d_pi . r_pi``.

Everything here is exact (a linear solve, no sampling), differentiable, and works under
``jit``/``vmap``; ``policy_gradient`` differentiates the exact normalised value through the
solve. Conventions: transitions ``P[s, a, s']`` (rows sum to one), policies ``pi[s, a]`` (rows
sum to one), rewards ``r[s]`` or ``r[s, a]`` (received on leaving ``s``), and values are
*maximised*. The functions are those of :mod:`metalab.rl.exact`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# The tabular-MDP type and exact evaluation live in metalab.rl.exact (one module shared by
# garnet, CMDPs, successor features, DOMiNO and ReLOAD); re-exported here under the SF names.
from metalab.rl.exact import (
    TabularMDP,
    action_values,
    expected_successor_features,
    natural_direction,
    normalised_value,
    optimal_normalised_value,
    optimal_values,
    policy_gradient,
    policy_reward,
    policy_transitions,
    softmax_policy,
    state_occupancy,
    state_values,
    successor_features,
)


def sf_td_error(
    phi_tm1: jnp.ndarray, discount_t, psi_tm1: jnp.ndarray, psi_t: jnp.ndarray
) -> jnp.ndarray:
    """One-step SF TD error ``phi_{t-1} + gamma_t psi_t - psi_{t-1}`` (vector, rlax suffixes).

    The SF analogue of ``rlax.td_learning``; ``psi_t`` should be held fixed (stop-gradient)
    when used as a target.
    """
    return phi_tm1 + discount_t * jax.lax.stop_gradient(psi_t) - psi_tm1


__all__ = [
    "TabularMDP",
    "action_values",
    "expected_successor_features",
    "natural_direction",
    "normalised_value",
    "optimal_normalised_value",
    "optimal_values",
    "policy_gradient",
    "policy_reward",
    "policy_transitions",
    "sf_td_error",
    "softmax_policy",
    "state_occupancy",
    "state_values",
    "successor_features",
]
