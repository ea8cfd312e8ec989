r"""Optimistic and adaptive policy optimisation on tabular MDPs (Chelu et al. 2023,
"Acceleration in Policy Optimization", arXiv:2306.10587).

Policies are tabular softmax :math:`\pi_z(a|s) \propto \exp z(s,a)`; :math:`A^\pi` is the exact
advantage (:mod:`metalab.rl.envs.garnet`). The objective :math:`J(\pi)=\rho^\top v^\pi` is
*maximised*. Update rules on the logits ``z``:

* softmax policy gradient: :math:`z \leftarrow z + \eta\,\nabla_z J`, with
  :math:`\nabla_{z(s,a)} J = \frac{1}{1-\gamma} d^{\pi}_\rho(s)\,\pi(a|s) A^\pi(s,a)`;
* natural policy gradient (NPG, = policy mirror descent with KL):
  :math:`z \leftarrow z + \eta A^{\pi_z}`;
* naive optimistic NPG (optimistic mirror descent): :math:`z_{t+1} = z_t + \eta(2A_t - A_{t-1})`;
* optimistic (look-ahead) NPG: predict the next policy by extrapolating the last step and
  improve from the prediction,

  .. math:: y_t = z_t + \beta (z_t - z_{t-1}), \qquad z_{t+1} = y_t + \eta A^{\pi_{y_t}};

* adaptive optimistic NPG: the same, with the prediction coefficient :math:`\beta_t` corrected
  online by a meta-gradient against the bootstrapped target :math:`\mathrm{sg}(z_{t+1})`:

  .. math::
     \ell_t(\beta) = \sum_s d^{\pi_{z_t}}_\rho(s)\,
        \mathrm{KL}\big(\pi_{\mathrm{sg}(z_{t+1})}(\cdot|s)\,\Vert\,\pi_{y_t(\beta)}(\cdot|s)\big),
     \qquad \beta_{t+1} = \mathrm{clip}\big(\beta_t - \mu\,g_t/(\sqrt{v_t}+10^{-12}),
        0, \beta_{\max}\big),

  with :math:`g_t = \partial_\beta \ell_t` and :math:`v_t` a running mean (rate 0.1) of
  :math:`g_t^2` (an RMSProp meta-step: the raw gradient vanishes as the policy converges).
  The prediction is pulled towards where the policy actually went: :math:`\beta` grows
  while successive steps agree and shrinks after an overshoot.

``solve(mdp, method, ...)`` runs ``num_iters`` iterations in one ``lax.scan`` and returns the
curve of :math:`J(\pi_t)` (and :math:`\beta_t`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from metalab.rl.envs.garnet import GarnetMDP, discounted_visitation, expected_return, q_values

METHODS = ("pg", "npg", "optimistic-naive", "optimistic", "adaptive")


class PGState(NamedTuple):
    """``z``: logits [S, A]; ``z_prev``: previous logits; ``adv_prev``: previous advantage;
    ``beta``: prediction coefficient; ``beta_v``: running mean of squared meta-gradients."""

    z: jnp.ndarray
    z_prev: jnp.ndarray
    adv_prev: jnp.ndarray
    beta: jnp.ndarray
    beta_v: jnp.ndarray


def advantage(mdp: GarnetMDP, z: jnp.ndarray) -> jnp.ndarray:
    """Exact :math:`A^{\\pi_z}(s,a) = q^{\\pi_z}(s,a) - v^{\\pi_z}(s)`."""
    pi = jax.nn.softmax(z, -1)
    q = q_values(mdp, pi)
    return q - jnp.sum(pi * q, -1, keepdims=True)


def policy_gradient(mdp: GarnetMDP, z: jnp.ndarray) -> jnp.ndarray:
    """Exact :math:`\\nabla_z J(\\pi_z)` for the softmax parametrisation (ascent direction)."""
    pi = jax.nn.softmax(z, -1)
    d = discounted_visitation(mdp, pi)
    return d[:, None] * pi * advantage(mdp, z) / (1.0 - mdp.gamma)


def prediction_loss(beta, z, z_prev, target, weights) -> jnp.ndarray:
    """:math:`\\ell(\\beta)`: weighted KL from the target policy to the predicted policy."""
    y = z + beta * (z - z_prev)
    lt = jax.nn.log_softmax(lax.stop_gradient(target), -1)
    ly = jax.nn.log_softmax(y, -1)
    return jnp.sum(weights * jnp.sum(jnp.exp(lt) * (lt - ly), -1))


def step(
    mdp: GarnetMDP,
    state: PGState,
    method: str,
    lr,
    meta_lr=0.0,
    beta_max=0.99,
) -> PGState:
    """One iteration of ``method`` (one of ``METHODS``); see the module docstring."""
    z = state.z
    if method == "pg":
        return state._replace(z=z + lr * policy_gradient(mdp, z), z_prev=z)
    if method == "npg":
        return state._replace(z=z + lr * advantage(mdp, z), z_prev=z)
    if method == "optimistic-naive":
        a = advantage(mdp, z)
        return state._replace(z=z + lr * (2.0 * a - state.adv_prev), z_prev=z, adv_prev=a)
    if method in ("optimistic", "adaptive"):
        y = z + state.beta * (z - state.z_prev)
        z_next = y + lr * advantage(mdp, y)
        beta = state.beta
        if method == "adaptive":
            w = discounted_visitation(mdp, jax.nn.softmax(z, -1))
            g = jax.grad(prediction_loss)(state.beta, z, state.z_prev, z_next, w)
            v = state.beta_v + 0.1 * (g * g - state.beta_v)
            beta = jnp.clip(state.beta - meta_lr * g / (jnp.sqrt(v) + 1e-12), 0.0, beta_max)
            return PGState(z=z_next, z_prev=z, adv_prev=state.adv_prev, beta=beta, beta_v=v)
        return state._replace(z=z_next, z_prev=z)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def solve(
    mdp: GarnetMDP,
    method: str,
    num_iters: int,
    lr: float,
    beta: float = 0.0,
    meta_lr: float = 0.0,
    beta_max: float = 0.99,
) -> dict[str, jnp.ndarray]:
    """Run ``num_iters`` iterations from uniform logits; returns ``{"J": [T+1], "beta": [T+1]}``.

    ``beta`` is the (initial) prediction coefficient of the optimistic methods.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if num_iters < 1:
        raise ValueError(f"num_iters must be >= 1, got {num_iters}")
    if not isinstance(lr, jax.Array) and lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if not isinstance(beta, jax.Array) and not 0.0 <= beta <= beta_max:
        raise ValueError(f"beta must be in [0, beta_max={beta_max}], got {beta}")
    S, A = mdp.R.shape
    z0 = jnp.zeros((S, A))
    s0 = PGState(
        z=z0,
        z_prev=z0,
        adv_prev=advantage(mdp, z0),
        beta=jnp.asarray(beta, jnp.float32),
        beta_v=jnp.zeros(()),
    )

    def body(s, _):
        s2 = step(mdp, s, method, lr, meta_lr, beta_max)
        return s2, (expected_return(mdp, jax.nn.softmax(s2.z, -1)), s2.beta)

    _, (J, b) = lax.scan(body, s0, None, length=num_iters)
    J0 = expected_return(mdp, jax.nn.softmax(z0, -1))
    return {"J": jnp.concatenate([J0[None], J]), "beta": jnp.concatenate([s0.beta[None], b])}


def iterations_to_optimal(J: jnp.ndarray, J_star, eps_rel: float) -> jnp.ndarray:
    """First ``t`` with ``J* - J_t <= eps_rel * (J* - J_0)``; ``len(J)`` if never (censored)."""
    gap = (J_star - J) / jnp.maximum(J_star - J[0], 1e-12)
    hit = gap <= eps_rel
    return jnp.where(jnp.any(hit), jnp.argmax(hit), J.shape[0])


def overshoot(J: jnp.ndarray, J_star) -> jnp.ndarray:
    """Largest drop ``J_t - J_{t+1}`` between consecutive iterates, relative to ``J* - J_0``."""
    drops = jnp.maximum(J[:-1] - J[1:], 0.0)
    return jnp.max(drops) / jnp.maximum(J_star - J[0], 1e-12)


__all__ = [
    "METHODS",
    "PGState",
    "advantage",
    "iterations_to_optimal",
    "overshoot",
    "policy_gradient",
    "prediction_loss",
    "solve",
    "step",
]
