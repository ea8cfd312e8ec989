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
*maximised*.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class TabularMDP(NamedTuple):
    """A finite discounted MDP.

    Attributes:
      P: ``[S, A, S]`` transition probabilities ``P[s, a, s']``.
      r: ``[S, A]`` (or ``[S]``) extrinsic reward, maximised.
      d0: ``[S]`` initial state distribution.
      phi: ``[S, d]`` state features used for successor features.
      gamma: discount in ``[0, 1)``.
    """

    P: jnp.ndarray
    r: jnp.ndarray
    d0: jnp.ndarray
    phi: jnp.ndarray
    gamma: float


def _check_policy(P: jnp.ndarray, pi: jnp.ndarray) -> None:
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"P must have shape [S, A, S]; got {P.shape}")
    if pi.shape != P.shape[:2]:
        raise ValueError(f"pi must have shape [S, A] = {P.shape[:2]}; got {pi.shape}")


def softmax_policy(logits: jnp.ndarray) -> jnp.ndarray:
    """Tabular softmax policy ``pi[s, a] = exp(logits[s, a]) / sum_b exp(logits[s, b])``."""
    return jax.nn.softmax(logits, axis=-1)


def policy_transitions(P: jnp.ndarray, pi: jnp.ndarray) -> jnp.ndarray:
    """State-to-state transition matrix ``P_pi[s, s'] = sum_a pi(a|s) P(s'|s, a)``."""
    _check_policy(P, pi)
    return jnp.einsum("sa,sat->st", pi, P)


def policy_reward(r: jnp.ndarray, pi: jnp.ndarray) -> jnp.ndarray:
    """Expected one-step reward ``r_pi[s]``: ``r[s]`` if state-based, else ``sum_a pi r``."""
    if r.ndim == 1:
        return r
    if r.shape != pi.shape:
        raise ValueError(f"r must have shape [S] or [S, A] = {pi.shape}; got {r.shape}")
    return jnp.sum(pi * r, axis=-1)


def successor_features(P: jnp.ndarray, pi: jnp.ndarray, phi: jnp.ndarray, gamma) -> jnp.ndarray:
    """Per-state successor features ``Psi = (I - gamma P_pi)^{-1} Phi`` (unnormalised).

    Args:
      P: ``[S, A, S]`` transitions.
      pi: ``[S, A]`` policy.
      phi: ``[S, d]`` state features, or ``[S, A, d]`` state-action features (then the
        policy's expected feature ``sum_a pi(a|s) phi(s, a)`` is used).
      gamma: discount in ``[0, 1)``.

    Returns:
      ``[S, d]`` successor features ``psi^pi(s)``.
    """
    P_pi = policy_transitions(P, pi)
    phi_pi = jnp.einsum("sa,sad->sd", pi, phi) if phi.ndim == 3 else phi
    S = P.shape[0]
    return jnp.linalg.solve(jnp.eye(S) - gamma * P_pi, phi_pi)


def state_occupancy(P: jnp.ndarray, pi: jnp.ndarray, d0: jnp.ndarray, gamma) -> jnp.ndarray:
    """Normalised discounted occupancy ``d_pi = (1 - gamma) d0^T (I - gamma P_pi)^{-1}``.

    Returns a ``[S]`` distribution (sums to one).
    """
    P_pi = policy_transitions(P, pi)
    S = P.shape[0]
    return (1.0 - gamma) * jnp.linalg.solve((jnp.eye(S) - gamma * P_pi).T, d0)


def expected_successor_features(
    P: jnp.ndarray, pi: jnp.ndarray, phi: jnp.ndarray, d0: jnp.ndarray, gamma
) -> jnp.ndarray:
    """Normalised expected SFs ``psi_pi = (1 - gamma) d0^T Psi = sum_s d_pi(s) phi_pi(s)``."""
    d = state_occupancy(P, pi, d0, gamma)
    phi_pi = jnp.einsum("sa,sad->sd", pi, phi) if phi.ndim == 3 else phi
    return d @ phi_pi


def state_values(P: jnp.ndarray, pi: jnp.ndarray, r: jnp.ndarray, gamma) -> jnp.ndarray:
    """Exact ``V^pi = (I - gamma P_pi)^{-1} r_pi`` (unnormalised discounted return)."""
    P_pi = policy_transitions(P, pi)
    S = P.shape[0]
    return jnp.linalg.solve(jnp.eye(S) - gamma * P_pi, policy_reward(r, pi))


def action_values(P: jnp.ndarray, pi: jnp.ndarray, r: jnp.ndarray, gamma) -> jnp.ndarray:
    """Exact ``Q^pi[s, a] = r(s, a) + gamma sum_s' P(s'|s, a) V^pi(s')``."""
    v = state_values(P, pi, r, gamma)
    r_sa = r[:, None] * jnp.ones(P.shape[:2]) if r.ndim == 1 else r
    return r_sa + gamma * jnp.einsum("sat,t->sa", P, v)


def normalised_value(P: jnp.ndarray, pi: jnp.ndarray, r: jnp.ndarray, d0: jnp.ndarray, gamma):
    """``v_pi = (1 - gamma) d0^T V^pi``: the average per-step reward under ``d_pi`` (maximised)."""
    return (1.0 - gamma) * d0 @ state_values(P, pi, r, gamma)


def policy_gradient(
    P: jnp.ndarray, logits: jnp.ndarray, r: jnp.ndarray, d0: jnp.ndarray, gamma
) -> jnp.ndarray:
    """Exact gradient of the normalised value w.r.t. softmax logits (ascent direction).

    ``d/dtheta (1 - gamma) d0^T V^{pi_theta}`` with ``r`` held fixed, which by the policy
    gradient theorem equals ``d_pi(s) pi(a|s) A^pi(s, a)`` (see ``natural_direction``).
    """
    return jax.grad(lambda th: normalised_value(P, softmax_policy(th), r, d0, gamma))(logits)


def natural_direction(P: jnp.ndarray, logits: jnp.ndarray, r: jnp.ndarray, gamma) -> jnp.ndarray:
    """Natural policy gradient direction for softmax logits: the advantage ``A^pi(s, a)``.

    For the tabular softmax parameterisation, the NPG step ``theta += eta * A^pi / (1 - gamma)``
    is the per-state multiplicative-weights (mirror-descent) update ``pi <- pi exp(eta Q)``
    (Kakade 2001; Agarwal et al. 2021). Here the advantage is returned in units of the
    normalised value, i.e. multiplied by ``(1 - gamma)``. Ascent direction.
    """
    pi = softmax_policy(logits)
    q = action_values(P, pi, r, gamma)
    v = jnp.sum(pi * q, axis=-1, keepdims=True)
    return (1.0 - gamma) * (q - v)


def optimal_values(P: jnp.ndarray, r: jnp.ndarray, gamma, iters: int = 1000) -> jnp.ndarray:
    """Optimal ``V*`` by value iteration (``iters`` sweeps, a ``lax.fori_loop``)."""
    r_sa = r[:, None] * jnp.ones(P.shape[:2]) if r.ndim == 1 else r

    def body(_, v):
        return jnp.max(r_sa + gamma * jnp.einsum("sat,t->sa", P, v), axis=-1)

    return jax.lax.fori_loop(0, iters, body, jnp.zeros(P.shape[0]))


def optimal_normalised_value(P, r, d0, gamma, iters: int = 1000):
    """``(1 - gamma) d0^T V*``: the best achievable normalised value."""
    return (1.0 - gamma) * d0 @ optimal_values(P, r, gamma, iters)


def sf_td_error(
    phi_tm1: jnp.ndarray, discount_t, psi_tm1: jnp.ndarray, psi_t: jnp.ndarray
) -> jnp.ndarray:
    """One-step SF TD error ``phi_{t-1} + gamma_t psi_t - psi_{t-1}`` (vector, rlax suffixes).

    The SF analogue of ``rlax.td_learning``; ``psi_t`` should be held fixed (stop-gradient)
    when used as a target.
    """
    return phi_tm1 + discount_t * jax.lax.stop_gradient(psi_t) - psi_tm1
