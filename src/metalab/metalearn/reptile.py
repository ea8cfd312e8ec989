r"""Reptile (Nichol, Achiam & Schulman, 2018, arXiv:1803.02999).

Run K SGD steps on each task from :math:`\theta_0` and move the initialisation towards the
adapted parameters. Written as a meta-*gradient* to be minimised with any optax optimiser:

.. math:: g = \mathbb{E}_\tau\, (\theta_0 - \theta_K^\tau), \qquad
    \theta_0 \leftarrow \theta_0 - \beta g \quad (\text{SGD}),

no backpropagation through the inner loop. Leap with neither loss term nor normalisation
reduces to exactly this ``g`` (tested).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metalab.metalearn.adapt import LossFn, adapt
from metalab.metalearn.tasks import Task

PyTree = Any


class ReptileState(NamedTuple):
    """Meta-learner state: the initialisation and its outer optimiser state."""

    params: PyTree
    opt_state: optax.OptState


def reptile_init(params: PyTree, optimizer: optax.GradientTransformation) -> ReptileState:
    """Initial state for an initialisation ``params`` and an outer ``optimizer``."""
    return ReptileState(params, optimizer.init(params))


def reptile_meta_grad(
    params: PyTree,
    tasks: Task,
    *,
    loss_fn: LossFn,
    inner_lr: float,
    num_steps: int,
) -> tuple[jnp.ndarray, PyTree]:
    """Reptile's meta-gradient :math:`\\mathbb{E}_\\tau(\\theta_0 - \\theta_K)` over a task batch.

    Returns:
      ``(mean final support loss, meta_grad)``; the loss is the mean pre-update loss of the
      last inner step (for monitoring).
    """
    p0 = lax.stop_gradient(params)

    def one(task):
        res = adapt(loss_fn, p0, task.support, inner_lr=inner_lr, num_steps=num_steps)
        return res.losses[-1], jax.tree.map(jnp.subtract, p0, res.params)

    losses, deltas = jax.vmap(one)(tasks)
    return jnp.mean(losses), jax.tree.map(lambda d: jnp.mean(d, axis=0), deltas)


def reptile_update(
    state: ReptileState,
    tasks: Task,
    *,
    optimizer: optax.GradientTransformation,
    loss_fn: LossFn,
    inner_lr: float,
    num_steps: int,
) -> tuple[ReptileState, jnp.ndarray]:
    """One Reptile meta-step; returns the new state and the monitoring loss."""
    loss, g = reptile_meta_grad(
        state.params, tasks, loss_fn=loss_fn, inner_lr=inner_lr, num_steps=num_steps
    )
    updates, opt_state = optimizer.update(g, state.opt_state, state.params)
    return ReptileState(optax.apply_updates(state.params, updates), opt_state), loss
