r"""Bootstrapped targets and matching functions.

A bootstrapped meta-objective replaces :math:`f(x_K(w))` by a distance to a *target* built
from the learner's own future (as in Flennerhag et al.'s bootstrapped meta-learning; the
method itself lives in :mod:`metalab.metagrad.bmg`):

.. math::
   \tilde x = \mathrm{sg}\big[\, \underbrace{x_{K+L-1}}_{L-1 \text{ more updates}}
              - \alpha \nabla f(x_{K+L-1}) \big], \qquad
   \mathcal L(w) = \mu\big(\tilde x,\, x_K(w)\big),

where ``sg`` stops gradients and :math:`\mu` is a (pseudo-)metric: the squared Euclidean
distance in supervised settings or a KL divergence between the target's and the learner's
policies in RL.

Identity (tested): with ``L = 1`` (no extra updates, one gradient step) and
:math:`\mu = \tfrac12\lVert\cdot\rVert^2`, the bootstrapped meta-gradient equals
:math:`\alpha\,\nabla_w f(x_K(w))`, the plain meta-gradient times the target step size.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

PyTree = Any

__all__ = ["bootstrap_target", "gradient_step_target", "kl_categorical", "squared_distance"]


def squared_distance(target: PyTree, online: PyTree) -> jnp.ndarray:
    r""":math:`\tfrac12 \lVert \text{target} - \text{online} \rVert^2` summed over all leaves."""
    diffs = jax.tree.map(lambda t, o: jnp.sum(jnp.square(t - o)), target, online)
    return 0.5 * sum(jax.tree.leaves(diffs))


def kl_categorical(target_logits: jnp.ndarray, online_logits: jnp.ndarray) -> jnp.ndarray:
    r""":math:`\mathrm{KL}(\pi_{\text{target}} \,\Vert\, \pi_{\text{online}})` over the last axis,
    summed over leading axes (states). Inputs are unnormalised logits."""
    lt = jax.nn.log_softmax(target_logits, axis=-1)
    lo = jax.nn.log_softmax(online_logits, axis=-1)
    return jnp.sum(jnp.exp(lt) * (lt - lo))


def gradient_step_target(
    loss_fn: Callable[[PyTree], jnp.ndarray], params: PyTree, step_size
) -> PyTree:
    """``sg(params - step_size * grad loss(params))``: the simplest bootstrapped target."""
    g = jax.grad(loss_fn)(params)
    return lax.stop_gradient(jax.tree.map(lambda p, gi: p - step_size * gi, params, g))


def bootstrap_target(
    update_fn: Callable[[PyTree, int], PyTree],
    params: PyTree,
    num_updates: int,
    final_fn: Callable[[PyTree], PyTree] | None = None,
) -> PyTree:
    """Roll ``params`` forward ``num_updates`` times with ``update_fn(p, i)``, then ``final_fn``.

    The result is wrapped in ``stop_gradient``: the target is a constant for the meta-gradient.
    ``num_updates = 0`` returns ``final_fn(params)`` (or ``params``). Typical use: ``update_fn``
    applies the learner's update rule with the *current* meta-parameters, and ``final_fn`` a
    gradient step (or a greedy policy improvement in RL) that the update rule cannot express.
    """
    p = lax.stop_gradient(params)
    if num_updates > 0:
        p = lax.fori_loop(0, num_updates, lambda i, q: update_fn(q, i), p)
    if final_fn is not None:
        p = final_fn(p)
    return lax.stop_gradient(p)
