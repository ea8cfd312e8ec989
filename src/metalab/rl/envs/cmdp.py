"""Random tabular constrained MDPs (any number of constraints) with an exact LP solution.

A CMDP (Altman, 1999) asks for ``max_pi v_r(pi)`` subject to ``v_{c_k}(pi) <= b_k`` for
``k = 1..m``, where ``v_x(pi) = (1 - gamma) d0^T V_x^pi`` is the normalised discounted value of
``x``. A CMDP is a :class:`metalab.rl.exact.TabularMDP` with ``costs [m, S, A]`` and
``thresholds [m]``. The random family follows the ReLOAD paper's tabular experiments
(Moskovitz et al., 2023, arXiv:2302.01275) in spirit: Dirichlet transitions, uniform rewards
and costs, and thresholds placed so that every constraint binds at the optimum while a strictly
feasible policy exists (Slater's condition).

``random_cmdp`` is pure JAX (jit/vmap over keys); ``solve_lp`` is host-side scipy (the exact
reference optimum over occupancy measures, with one dual variable per constraint).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metalab.rl import exact
from metalab.rl.exact import TabularMDP

#: A constrained MDP is the shared tabular type with ``costs`` and ``thresholds`` set.
CMDP = TabularMDP


def make_cmdp(P, r, costs, thresholds, d0, gamma) -> TabularMDP:
    """Build and validate a CMDP. ``costs`` is ``[m, S, A]`` (or ``[S, A]`` for one constraint)
    and ``thresholds`` ``[m]`` (or a scalar); errors name the argument at fault."""
    costs = jnp.asarray(costs)
    thresholds = jnp.asarray(thresholds)
    if costs.ndim == 2:
        costs = costs[None]
    if thresholds.ndim == 0:
        thresholds = thresholds[None]
    return exact.validate(TabularMDP(P, r, d0, gamma, None, costs, thresholds))


def _greedy(q: jnp.ndarray) -> jnp.ndarray:
    return jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1])


def random_cmdp(
    key: jax.Array,
    n_states: int = 10,
    n_actions: int = 3,
    gamma: float = 0.9,
    concentration: float = 1.0,
    threshold_frac: float = 0.5,
    n_constraints: int = 1,
) -> TabularMDP:
    """Sample a random CMDP whose ``n_constraints`` cost constraints bind.

    ``P[s, a] ~ Dirichlet(concentration)``, ``r, c_k ~ U[0, 1]``, ``d0`` uniform. With ``f`` the
    policy greedy for ``-sum_k c_k`` (feasible by construction), ``c_k^f`` its normalised cost
    and ``c_k^hi`` that of the reward-maximising policy,
    ``b_k = c_k^f + threshold_frac * max(c_k^hi - c_k^f, 0)``. With one constraint ``f`` is the
    cost-minimising policy (the threshold lies between the smallest achievable cost and the
    reward-greedy policy's cost).

    Args:
      key: PRNG key. n_states, n_actions: sizes (>= 2). gamma: discount in (0, 1).
      concentration: Dirichlet concentration (> 0; small = near-deterministic transitions).
      threshold_frac: position of each ``b_k``, in (0, 1).
      n_constraints: number of cost functions ``m`` (>= 1).

    Returns:
      A :class:`TabularMDP` with ``costs [m, S, A]`` and ``thresholds [m]``.
    """
    if n_states < 2 or n_actions < 2:
        raise ValueError(f"n_states and n_actions must be >= 2; got {n_states}, {n_actions}")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1); got {gamma}")
    if not 0.0 < threshold_frac < 1.0:
        raise ValueError(f"threshold_frac must be in (0, 1); got {threshold_frac}")
    if concentration <= 0:
        raise ValueError(f"concentration must be > 0; got {concentration}")
    if n_constraints < 1:
        raise ValueError(f"n_constraints must be >= 1; got {n_constraints}")
    kp, kr, kc = jax.random.split(key, 3)
    P = jax.random.dirichlet(kp, concentration * jnp.ones(n_states), (n_states, n_actions))
    r = jax.random.uniform(kr, (n_states, n_actions))
    c = jax.random.uniform(kc, (n_constraints, n_states, n_actions))
    d0 = jnp.ones(n_states) / n_states

    def greedy_policy(x):
        v = exact.optimal_values(P, x, gamma, iters=int(20 / (1 - gamma)))
        return _greedy(x + gamma * jnp.einsum("sat,t->sa", P, v))

    def costs_of(pi):
        return jax.vmap(lambda ck: exact.normalised_value(P, pi, ck, d0, gamma))(c)

    c_f = costs_of(greedy_policy(-c.sum(0)))
    c_hi = costs_of(greedy_policy(r))
    b = c_f + threshold_frac * jnp.maximum(c_hi - c_f, 0.0)
    return TabularMDP(P, r, d0, gamma, None, c, b)


def solve_lp(cmdp: TabularMDP) -> dict[str, np.ndarray | float]:
    """Exact CMDP optimum by linear programming over normalised occupancy measures (scipy).

    ``max_mu <mu, r>`` s.t. ``sum_a mu(s', a) = (1 - gamma) d0(s') + gamma sum_{s,a}
    P(s'|s,a) mu(s, a)``, ``<mu, c_k> <= b_k`` for every k, ``mu >= 0``. Host-side (not traced).

    Returns:
      ``{"value": v_r*, "costs": [m] v_{c_k} at the optimum, "multipliers": [m] lambda_k* >= 0
      (the duals of the cost constraints), "policy": [S, A] optimal (stochastic) policy}``.
    """
    from scipy.optimize import linprog

    if cmdp.costs is None:
        raise ValueError("solve_lp needs a CMDP: cmdp.costs and cmdp.thresholds are None")
    exact.validate(cmdp)
    P, r, d0 = (np.asarray(x, dtype=np.float64) for x in (cmdp.P, cmdp.r, cmdp.d0))
    S, A = P.shape[:2]
    r = np.broadcast_to(r[:, None], (S, A)) if r.ndim == 1 else r
    c = np.asarray(cmdp.costs, dtype=np.float64)
    c = np.broadcast_to(c[..., None], (*c.shape, A)) if c.ndim == 2 else c
    b = np.asarray(cmdp.thresholds, dtype=np.float64)
    gamma = float(cmdp.gamma)
    # Flow constraints: for each s', sum_a mu(s',a) - gamma sum_{s,a} P(s'|s,a) mu(s,a).
    E = np.zeros((S, S * A))
    for s in range(S):
        E[s, s * A : (s + 1) * A] = 1.0
    E -= gamma * P.reshape(S * A, S).T
    res = linprog(
        -r.ravel(),
        A_ub=c.reshape(c.shape[0], S * A),
        b_ub=b,
        A_eq=E,
        b_eq=(1 - gamma) * d0,
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"CMDP linear program failed: {res.message}")
    mu = res.x.reshape(S, A)
    occ = mu.sum(axis=1, keepdims=True)
    policy = np.where(occ > 1e-12, mu / np.maximum(occ, 1e-12), 1.0 / A)
    return {
        "value": float(r.ravel() @ res.x),
        "costs": c.reshape(c.shape[0], S * A) @ res.x,
        "multipliers": -np.asarray(res.ineqlin.marginals),
        "policy": policy,
    }


__all__ = ["CMDP", "make_cmdp", "random_cmdp", "solve_lp"]
