r"""One tabular-MDP type and exact (linear-solve) evaluation, shared by every tabular method.

Garnet MDPs (:mod:`metalab.rl.envs.garnet`), constrained MDPs (:mod:`metalab.rl.envs.cmdp`),
the diversity grid (:mod:`metalab.rl.envs.diversity_grid`), successor features, DOMiNO,
Diverse Successive Policies and ReLOAD all use :class:`TabularMDP` and the functions below.

Conventions: transitions ``P[s, a, s']`` (rows sum to one), policies ``pi[s, a]`` (rows sum to
one), rewards ``r[s]`` or ``r[s, a]`` (received on leaving ``s``). Values are *maximised*.

.. math::
   P_\pi[s, s'] = \sum_a \pi(a|s) P(s'|s, a),\qquad
   V^\pi = (I - \gamma P_\pi)^{-1} r_\pi,\qquad
   Q^\pi = r + \gamma P V^\pi,

   d_\pi = (1 - \gamma)\, d_0^\top (I - \gamma P_\pi)^{-1}\ \text{(normalised occupancy)},
   \qquad v_\pi(r) = (1 - \gamma) d_0^\top V^\pi = d_\pi^\top r_\pi,
   \qquad J(\pi) = d_0^\top V^\pi .

Every function is pure JAX (``jit``/``vmap``/``grad``); shape errors name the argument at fault.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class TabularMDP(NamedTuple):
    """A finite discounted (constrained) MDP.

    Attributes:
      P: ``[S, A, S]`` transitions ``P[s, a, s']``.
      r: ``[S, A]`` or ``[S]`` reward (maximised).
      d0: ``[S]`` initial-state distribution.
      gamma: discount in ``[0, 1)`` (a float or a traced scalar).
      phi: ``[S, d]`` state features for successor features, or ``None``.
      costs: ``[m, S, A]`` (or ``[m, S]``) costs of ``m`` constraints, or ``None``.
      thresholds: ``[m]`` bounds ``b_k`` of the constraints ``v_{c_k}(pi) <= b_k``, or ``None``.

    ``R`` and ``rho`` are read-only aliases of ``r`` and ``d0`` (the Garnet names).
    """

    P: jnp.ndarray
    r: jnp.ndarray
    d0: jnp.ndarray
    gamma: Any
    phi: jnp.ndarray | None = None
    costs: jnp.ndarray | None = None
    thresholds: jnp.ndarray | None = None

    @property
    def R(self) -> jnp.ndarray:  # noqa: N802 - the Garnet name
        return self.r

    @property
    def rho(self) -> jnp.ndarray:
        return self.d0

    @property
    def num_states(self) -> int:
        return self.P.shape[0]

    @property
    def num_actions(self) -> int:
        return self.P.shape[1]

    @property
    def num_constraints(self) -> int:
        return 0 if self.costs is None else self.costs.shape[0]


def validate(mdp: TabularMDP) -> TabularMDP:
    """Check shapes (static); raise ``ValueError`` naming the field at fault. Returns ``mdp``."""
    P = mdp.P
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"TabularMDP.P must have shape [S, A, S]; got {P.shape}")
    S, A = P.shape[:2]
    if mdp.r.shape not in ((S,), (S, A)):
        raise ValueError(
            f"TabularMDP.r must have shape [S]=({S},) or [S, A]=({S}, {A}); got {mdp.r.shape}"
        )
    if mdp.d0.shape != (S,):
        raise ValueError(f"TabularMDP.d0 must have shape [S]=({S},); got {mdp.d0.shape}")
    if mdp.phi is not None and (mdp.phi.ndim != 2 or mdp.phi.shape[0] != S):
        raise ValueError(f"TabularMDP.phi must have shape [S={S}, d]; got {mdp.phi.shape}")
    if (mdp.costs is None) != (mdp.thresholds is None):
        raise ValueError("TabularMDP.costs and TabularMDP.thresholds must be given together")
    if mdp.costs is not None:
        c, b = mdp.costs, mdp.thresholds
        if c.ndim not in (2, 3) or c.shape[1:] not in ((S,), (S, A)):
            raise ValueError(
                f"TabularMDP.costs must have shape [m, S, A] = [m, {S}, {A}] (or [m, S]); got "
                f"{c.shape} (a single cost needs a leading axis of size 1)"
            )
        if b.shape != (c.shape[0],):
            raise ValueError(
                f"TabularMDP.thresholds must have shape [m]=({c.shape[0]},), one per cost in "
                f"TabularMDP.costs; got {b.shape}"
            )
    return mdp


def as_jax(mdp: TabularMDP, dtype=jnp.float32) -> TabularMDP:
    """The same MDP with every array field as a JAX array of ``dtype`` (``gamma`` kept)."""
    conv = lambda x: None if x is None else jnp.asarray(x, dtype)
    return TabularMDP(
        conv(mdp.P),
        conv(mdp.r),
        conv(mdp.d0),
        mdp.gamma,
        conv(mdp.phi),
        conv(mdp.costs),
        conv(mdp.thresholds),
    )


def _check_policy(P: jnp.ndarray, pi: jnp.ndarray, name: str = "pi") -> None:
    if P.ndim != 3 or P.shape[0] != P.shape[2]:
        raise ValueError(f"P must have shape [S, A, S]; got {P.shape}")
    if pi.shape != P.shape[:2]:
        raise ValueError(f"{name} must have shape [S, A] = {P.shape[:2]}; got {pi.shape}")


def softmax_policy(logits: jnp.ndarray) -> jnp.ndarray:
    """Tabular softmax policy ``pi[s, a] = exp(logits[s, a]) / sum_b exp(logits[s, b])``."""
    return jax.nn.softmax(logits, axis=-1)


def policy_transitions(P: jnp.ndarray, pi: jnp.ndarray) -> jnp.ndarray:
    """State-to-state transition matrix ``P_pi[s, s'] = sum_a pi(a|s) P(s'|s, a)``."""
    _check_policy(P, pi)
    return jnp.einsum("sa,sat->st", pi, P)


def policy_reward(r: jnp.ndarray, pi: jnp.ndarray, name: str = "r") -> jnp.ndarray:
    """Expected one-step reward ``r_pi[s]``: ``r[s]`` if state-based, else ``sum_a pi r``.

    ``name`` is the argument named in the error (e.g. ``"costs[k]"``).
    """
    if r.ndim == 1 and r.shape[0] == pi.shape[0]:
        return r
    if r.shape != pi.shape:
        raise ValueError(
            f"{name} must have shape [S]=({pi.shape[0]},) or [S, A]={pi.shape}; got {r.shape}"
            + (
                " (several rewards/costs: evaluate them one at a time or with vmap)"
                if r.ndim == 3
                else ""
            )
        )
    return jnp.sum(pi * r, axis=-1)


def _state_action(r: jnp.ndarray, P: jnp.ndarray) -> jnp.ndarray:
    return r[:, None] * jnp.ones(P.shape[:2], r.dtype) if r.ndim == 1 else r


def state_values(P: jnp.ndarray, pi: jnp.ndarray, r: jnp.ndarray, gamma, name: str = "r"):
    """Exact ``V^pi = (I - gamma P_pi)^{-1} r_pi`` (unnormalised discounted return)."""
    P_pi = policy_transitions(P, pi)
    S = P.shape[0]
    return jnp.linalg.solve(jnp.eye(S) - gamma * P_pi, policy_reward(r, pi, name))


def action_values(P: jnp.ndarray, pi: jnp.ndarray, r: jnp.ndarray, gamma, name: str = "r"):
    """Exact ``Q^pi[s, a] = r(s, a) + gamma sum_s' P(s'|s, a) V^pi(s')``."""
    v = state_values(P, pi, r, gamma, name)
    return _state_action(r, P) + gamma * jnp.einsum("sat,t->sa", P, v)


def state_occupancy(P: jnp.ndarray, pi: jnp.ndarray, d0: jnp.ndarray, gamma) -> jnp.ndarray:
    """Normalised discounted occupancy ``d_pi = (1 - gamma) d0^T (I - gamma P_pi)^{-1}`` ([S])."""
    P_pi = policy_transitions(P, pi)
    S = P.shape[0]
    if d0.shape != (S,):
        raise ValueError(f"d0 must have shape [S]=({S},); got {d0.shape}")
    return (1.0 - gamma) * jnp.linalg.solve((jnp.eye(S) - gamma * P_pi).T, d0)


def normalised_value(P, pi, r, d0, gamma, name: str = "r") -> jnp.ndarray:
    """``v_pi = (1 - gamma) d0^T V^pi``: the average per-step reward under ``d_pi`` (maximised)."""
    return (1.0 - gamma) * d0 @ state_values(P, pi, r, gamma, name)


def successor_features(P: jnp.ndarray, pi: jnp.ndarray, phi: jnp.ndarray, gamma) -> jnp.ndarray:
    """Per-state successor features ``Psi = (I - gamma P_pi)^{-1} Phi`` (``[S, d]``).

    ``phi`` is ``[S, d]`` (state features) or ``[S, A, d]`` (then ``sum_a pi(a|s) phi(s, a)``).
    """
    P_pi = policy_transitions(P, pi)
    phi_pi = jnp.einsum("sa,sad->sd", pi, phi) if phi.ndim == 3 else phi
    S = P.shape[0]
    if phi_pi.shape[0] != S:
        raise ValueError(f"phi must have shape [S={S}, d] or [S, A, d]; got {phi.shape}")
    return jnp.linalg.solve(jnp.eye(S) - gamma * P_pi, phi_pi)


def expected_successor_features(P, pi, phi, d0, gamma) -> jnp.ndarray:
    """Normalised expected SFs ``psi_pi = (1 - gamma) d0^T Psi = sum_s d_pi(s) phi_pi(s)``."""
    d = state_occupancy(P, pi, d0, gamma)
    phi_pi = jnp.einsum("sa,sad->sd", pi, phi) if phi.ndim == 3 else phi
    return d @ phi_pi


def policy_gradient(P, logits, r, d0, gamma) -> jnp.ndarray:
    """Exact gradient of the normalised value w.r.t. softmax logits (ascent direction)."""
    return jax.grad(lambda th: normalised_value(P, softmax_policy(th), r, d0, gamma))(logits)


def natural_direction(P, logits, r, gamma) -> jnp.ndarray:
    """Natural policy gradient direction for softmax logits: ``(1 - gamma) A^pi(s, a)``.

    The tabular NPG step ``theta += eta A^pi`` is the per-state multiplicative-weights
    (mirror-descent) update ``pi <- pi exp(eta Q)`` (Kakade 2001; Agarwal et al. 2021), here in
    units of the normalised value. Ascent direction.
    """
    pi = softmax_policy(logits)
    q = action_values(P, pi, r, gamma)
    v = jnp.sum(pi * q, axis=-1, keepdims=True)
    return (1.0 - gamma) * (q - v)


def optimal_values(P: jnp.ndarray, r: jnp.ndarray, gamma, iters: int = 1000) -> jnp.ndarray:
    """Optimal ``V*`` by value iteration (``iters`` sweeps, a ``lax.fori_loop``)."""
    r_sa = _state_action(r, P)

    def body(_, v):
        return jnp.max(r_sa + gamma * jnp.einsum("sat,t->sa", P, v), axis=-1)

    return jax.lax.fori_loop(0, iters, body, jnp.zeros(P.shape[0], r_sa.dtype))


def optimal_normalised_value(P, r, d0, gamma, iters: int = 1000) -> jnp.ndarray:
    """``(1 - gamma) d0^T V*``: the best achievable normalised value."""
    return (1.0 - gamma) * d0 @ optimal_values(P, r, gamma, iters)


def policy_iteration(P, r, gamma, iterations: int = 50) -> tuple[jnp.ndarray, jnp.ndarray]:
    """``(V*, greedy deterministic policy [S, A])`` by ``iterations`` steps of exact policy
    iteration from the uniform policy (it terminates in a handful of steps in practice)."""
    S, A = P.shape[:2]

    def body(_, pi):
        return jax.nn.one_hot(jnp.argmax(action_values(P, pi, r, gamma), axis=-1), A)

    pi = jax.lax.fori_loop(0, iterations, body, jnp.full((S, A), 1.0 / A))
    return state_values(P, pi, r, gamma), pi


# ---- MDP-level conveniences -------------------------------------------------------------


def values(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """``V^pi`` of the MDP's reward ([S])."""
    return state_values(mdp.P, pi, mdp.r, mdp.gamma)


def q_values(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """``Q^pi`` of the MDP's reward ([S, A])."""
    return action_values(mdp.P, pi, mdp.r, mdp.gamma)


def expected_return(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """``J(pi) = d0^T V^pi`` (unnormalised, maximised)."""
    return mdp.d0 @ values(mdp, pi)


def occupancy(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """Normalised discounted state occupancy ``d_pi`` ([S], sums to one)."""
    return state_occupancy(mdp.P, pi, mdp.d0, mdp.gamma)


def reward_value(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """Normalised value ``v_pi(r)`` of the MDP's reward."""
    return normalised_value(mdp.P, pi, mdp.r, mdp.d0, mdp.gamma)


def cost_values(mdp: TabularMDP, pi: jnp.ndarray) -> jnp.ndarray:
    """Normalised values ``v_pi(c_k)`` of every constraint's cost (``[m]``)."""
    if mdp.costs is None:
        raise ValueError("cost_values needs TabularMDP.costs (this MDP has no constraints)")
    d = occupancy(mdp, pi)
    return jax.vmap(lambda c: d @ policy_reward(c, pi, "costs[k]"))(mdp.costs)


__all__ = [
    "TabularMDP",
    "validate",
    "as_jax",
    "softmax_policy",
    "policy_transitions",
    "policy_reward",
    "state_values",
    "action_values",
    "state_occupancy",
    "normalised_value",
    "successor_features",
    "expected_successor_features",
    "policy_gradient",
    "natural_direction",
    "optimal_values",
    "optimal_normalised_value",
    "policy_iteration",
    "values",
    "q_values",
    "expected_return",
    "occupancy",
    "reward_value",
    "cost_values",
]
