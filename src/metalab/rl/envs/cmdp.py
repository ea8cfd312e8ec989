"""Random tabular constrained MDPs with exact values (and an exact LP solution).

A CMDP (Altman, 1999) asks for ``max_pi v_r(pi)`` subject to ``v_c(pi) <= b``, where
``v_x(pi) = (1 - gamma) d0^T V_x^pi`` is the normalised discounted value of reward ``x``. The
random family follows the ReLOAD paper's tabular experiments (Moskovitz et al., 2023,
arXiv:2302.01275) in spirit: Dirichlet transitions, uniform rewards and costs, and a
threshold placed strictly between the smallest achievable cost and the cost of the
reward-greedy policy so that the constraint is active at the optimum.

``random_cmdp`` is pure JAX (jit/vmap over keys); ``solve_lp`` is host-side scipy (the exact
reference optimum over occupancy measures, with the constraint's dual variable).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metalab.rl.successor_features import normalised_value, optimal_values


class CMDP(NamedTuple):
    """A finite discounted CMDP: maximise ``v_r`` subject to ``v_c <= threshold``.

    Attributes:
      P: ``[S, A, S]`` transitions. r, c: ``[S, A]`` reward (maximised) and cost.
      d0: ``[S]`` initial distribution. gamma: discount. threshold: the bound ``b`` on the
        normalised cost value ``v_c``.
    """

    P: jnp.ndarray
    r: jnp.ndarray
    c: jnp.ndarray
    d0: jnp.ndarray
    gamma: float
    threshold: jnp.ndarray


def _greedy(q: jnp.ndarray) -> jnp.ndarray:
    return jax.nn.one_hot(jnp.argmax(q, axis=-1), q.shape[-1])


def random_cmdp(
    key: jax.Array,
    n_states: int = 10,
    n_actions: int = 3,
    gamma: float = 0.9,
    concentration: float = 1.0,
    threshold_frac: float = 0.5,
) -> CMDP:
    """Sample a random CMDP whose cost constraint binds.

    ``P[s, a] ~ Dirichlet(concentration)``, ``r, c ~ U[0, 1]``, ``d0`` uniform. With ``c_lo``
    the normalised cost of the cost-minimising policy and ``c_hi`` that of the
    reward-maximising policy, ``b = c_lo + threshold_frac (c_hi - c_lo)``.

    Args:
      key: PRNG key. n_states, n_actions: sizes (>= 2). gamma: discount in (0, 1).
      concentration: Dirichlet concentration (> 0; small = near-deterministic transitions).
      threshold_frac: position of ``b`` between ``c_lo`` and ``c_hi``, in (0, 1).
    """
    if n_states < 2 or n_actions < 2:
        raise ValueError(f"n_states and n_actions must be >= 2; got {n_states}, {n_actions}")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1); got {gamma}")
    if not 0.0 < threshold_frac < 1.0:
        raise ValueError(f"threshold_frac must be in (0, 1); got {threshold_frac}")
    if concentration <= 0:
        raise ValueError(f"concentration must be > 0; got {concentration}")
    kp, kr, kc = jax.random.split(key, 3)
    P = jax.random.dirichlet(kp, concentration * jnp.ones(n_states), (n_states, n_actions))
    r = jax.random.uniform(kr, (n_states, n_actions))
    c = jax.random.uniform(kc, (n_states, n_actions))
    d0 = jnp.ones(n_states) / n_states

    def greedy_policy(x):
        v = optimal_values(P, x, gamma, iters=int(20 / (1 - gamma)))
        return _greedy(x + gamma * jnp.einsum("sat,t->sa", P, v))

    c_lo = normalised_value(P, greedy_policy(-c), c, d0, gamma)
    c_hi = normalised_value(P, greedy_policy(r), c, d0, gamma)
    b = c_lo + threshold_frac * (c_hi - c_lo)
    return CMDP(P, r, c, d0, gamma, b)


def solve_lp(cmdp: CMDP) -> dict[str, np.ndarray | float]:
    """Exact CMDP optimum by linear programming over normalised occupancy measures (scipy).

    ``max_mu <mu, r>`` s.t. ``sum_a mu(s', a) = (1 - gamma) d0(s') + gamma sum_{s,a}
    P(s'|s,a) mu(s, a)``, ``<mu, c> <= b``, ``mu >= 0``. Host-side (not traced).

    Returns:
      ``{"value": v_r*, "cost": v_c at the optimum, "multiplier": lambda* >= 0 (the dual of
      the cost constraint), "policy": [S, A] optimal (stochastic) policy}``.
    """
    from scipy.optimize import linprog

    P, r, c, d0 = (np.asarray(x, dtype=np.float64) for x in (cmdp.P, cmdp.r, cmdp.c, cmdp.d0))
    gamma, b = float(cmdp.gamma), float(cmdp.threshold)
    S, A = r.shape
    # Flow constraints: for each s', sum_a mu(s',a) - gamma sum_{s,a} P(s'|s,a) mu(s,a).
    E = np.zeros((S, S * A))
    for s in range(S):
        E[s, s * A : (s + 1) * A] = 1.0
    E -= gamma * P.reshape(S * A, S).T
    res = linprog(
        -r.ravel(),
        A_ub=c.ravel()[None, :],
        b_ub=[b],
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
        "cost": float(c.ravel() @ res.x),
        "multiplier": float(-res.ineqlin.marginals[0]),
        "policy": policy,
    }
