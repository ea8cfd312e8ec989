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

Inexact advantages (``AcceleratedPGConfig.adv_noise = sigma > 0``): every advantage the update
uses is :math:`A + \sigma\,\xi` with :math:`\xi \sim N(0, 1)` i.i.d. per (s, a) and iteration,
a stand-in for sampled estimates; with noise a large step overshoots, with exact advantages
NPG never does.

Protocol: ``train = make_train(AcceleratedPGConfig(method, num_iters))`` then
``train(mdp, PGParams(lr, beta, meta_lr), key) -> {"J": [T+1], "beta": [T+1]}`` (one
``lax.scan``). ``PGParams`` is traced, so a grid of step sizes is one ``vmap``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from metalab.rl.envs.garnet import GarnetMDP, discounted_visitation, expected_return, q_values

__all__ = [
    "METHODS",
    "AcceleratedPGConfig",
    "PGParams",
    "PGState",
    "advantage",
    "iterations_to_optimal",
    "make_train",
    "overshoot",
    "policy_gradient",
    "prediction_loss",
]

METHODS = ("pg", "npg", "optimistic-naive", "optimistic", "adaptive")


class PGState(NamedTuple):
    """``z``: logits [S, A]; ``z_prev``: previous logits; ``adv_prev``: previous advantage;
    ``beta``: prediction coefficient; ``beta_v``: running mean of squared meta-gradients."""

    z: jnp.ndarray
    z_prev: jnp.ndarray
    adv_prev: jnp.ndarray
    beta: jnp.ndarray
    beta_v: jnp.ndarray


class PGParams(NamedTuple):
    """Traced hyper-parameters: step size ``lr``, (initial) prediction coefficient ``beta`` of
    the optimistic methods, RMS-normalised meta step ``meta_lr`` on beta (adaptive)."""

    lr: jnp.ndarray
    beta: jnp.ndarray = 0.0
    meta_lr: jnp.ndarray = 0.0


@dataclass(frozen=True)
class AcceleratedPGConfig:
    """Static choices: ``method`` (one of ``METHODS``), ``num_iters``, ``beta_max`` (the
    adaptive coefficient's upper clip), ``adv_noise`` (std of the advantage noise; 0 = exact)."""

    method: str = "npg"
    num_iters: int = 100
    beta_max: float = 0.99
    adv_noise: float = 0.0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.num_iters < 1:
            raise ValueError(f"num_iters must be >= 1, got {self.num_iters}")
        if self.adv_noise < 0:
            raise ValueError(f"adv_noise must be >= 0, got {self.adv_noise}")


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


def _adv(cfg: AcceleratedPGConfig, mdp: GarnetMDP, z, key) -> jnp.ndarray:
    a = advantage(mdp, z)
    if cfg.adv_noise > 0:
        a = a + cfg.adv_noise * jax.random.normal(key, a.shape)
    return a


def _step(cfg: AcceleratedPGConfig, mdp: GarnetMDP, hp: PGParams, state: PGState, key):
    """One iteration of ``cfg.method``; see the module docstring."""
    z, m = state.z, cfg.method
    if m == "pg":
        pi = jax.nn.softmax(z, -1)
        d = discounted_visitation(mdp, pi)
        g = d[:, None] * pi * _adv(cfg, mdp, z, key) / (1.0 - mdp.gamma)
        return state._replace(z=z + hp.lr * g, z_prev=z)
    if m == "npg":
        return state._replace(z=z + hp.lr * _adv(cfg, mdp, z, key), z_prev=z)
    if m == "optimistic-naive":
        a = _adv(cfg, mdp, z, key)
        return state._replace(z=z + hp.lr * (2.0 * a - state.adv_prev), z_prev=z, adv_prev=a)
    y = z + state.beta * (z - state.z_prev)
    z_next = y + hp.lr * _adv(cfg, mdp, y, key)
    if m == "optimistic":
        return state._replace(z=z_next, z_prev=z)
    w = discounted_visitation(mdp, jax.nn.softmax(z, -1))
    g = jax.grad(prediction_loss)(state.beta, z, state.z_prev, z_next, w)
    v = state.beta_v + 0.1 * (g * g - state.beta_v)
    beta = jnp.clip(state.beta - hp.meta_lr * g / (jnp.sqrt(v) + 1e-12), 0.0, cfg.beta_max)
    return PGState(z=z_next, z_prev=z, adv_prev=state.adv_prev, beta=beta, beta_v=v)


def _body(cfg, mdp, hp, s, k):
    s2 = _step(cfg, mdp, hp, s, k)
    return s2, (expected_return(mdp, jax.nn.softmax(s2.z, -1)), s2.beta)


def make_train(config: AcceleratedPGConfig):
    """``train(mdp, PGParams, key=None) -> {"J": [T+1], "beta": [T+1]}`` from uniform logits.

    ``key`` draws the advantage noise (needed only when ``config.adv_noise > 0``).
    """

    def train(mdp: GarnetMDP, params: PGParams, key: jax.Array | None = None) -> dict:
        if key is None:
            key = jax.random.PRNGKey(0)
        S, A = mdp.R.shape
        z0 = jnp.zeros((S, A))
        hp = PGParams(*(jnp.asarray(x, jnp.float32) for x in params))
        s0 = PGState(z0, z0, advantage(mdp, z0), hp.beta, jnp.zeros(()))
        _, (J, b) = lax.scan(
            partial(_body, config, mdp, hp), s0, jax.random.split(key, config.num_iters)
        )
        J0 = expected_return(mdp, jax.nn.softmax(z0, -1))
        return {"J": jnp.concatenate([J0[None], J]), "beta": jnp.concatenate([hp.beta[None], b])}

    return train


def iterations_to_optimal(J: jnp.ndarray, J_star, eps_rel: float) -> jnp.ndarray:
    """First ``t`` with ``J* - J_t <= eps_rel * (J* - J_0)``; ``len(J)`` if never (censored)."""
    gap = (J_star - J) / jnp.maximum(J_star - J[0], 1e-12)
    hit = gap <= eps_rel
    return jnp.where(jnp.any(hit), jnp.argmax(hit), J.shape[0])


def overshoot(J: jnp.ndarray, J_star) -> jnp.ndarray:
    """Largest drop ``J_t - J_{t+1}`` between consecutive iterates, relative to ``J* - J_0``."""
    drops = jnp.maximum(J[:-1] - J[1:], 0.0)
    return jnp.max(drops) / jnp.maximum(J_star - J[0], 1e-12)
