r"""Leap: transferring knowledge across learning processes (Flennerhag, Moreno, Lawrence &
Damianou, ICLR 2019, arXiv:1812.01054).

Leap meta-learns an initialisation :math:`\theta_0` that shortens the expected length of the
learning path on the task manifold :math:`\gamma_k = (\theta_k, f_\tau(\theta_k))`:

.. math:: \min_{\theta_0}\; \mathbb{E}_\tau \sum_{k=0}^{K-1} \|\gamma_{k+1} - \gamma_k\|_2

(path length :math:`d_1`; without the norm's square root, path energy :math:`d_2`). Freezing
the forward points and taking the update Jacobian as the identity gives the meta-gradient

.. math:: \nabla F(\theta_0) = -\mathbb{E}_\tau \sum_{k} \frac{\Delta\theta_k + \Delta f_k\,
    \nabla f_\tau(\theta_k)}{\|\Delta\gamma_k\|},

accumulated *during* the inner loop (:func:`metalab.metalearn.adapt.leap_increment`): memory
and compute are those of plain training, independent of K for the meta-gradient. The
stabiliser replaces :math:`\Delta f_k` by :math:`-|\Delta f_k|`. With no loss term and no
normalisation the sum telescopes to :math:`\theta_0 - \theta_K`: Reptile.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metalab.metalearn.adapt import LeapOptions, LossFn, adapt, leap_increment
from metalab.metalearn.tasks import Task

PyTree = Any
__all__ = [
    "LeapOptions",
    "LeapState",
    "leap_increment",
    "leap_init",
    "leap_meta_grad",
    "leap_update",
]


class LeapState(NamedTuple):
    """Meta-learner state: the initialisation and its outer optimiser state."""

    params: PyTree
    opt_state: optax.OptState


def leap_init(params: PyTree, optimizer: optax.GradientTransformation) -> LeapState:
    """Initial state for an initialisation ``params`` and an outer ``optimizer``."""
    return LeapState(params, optimizer.init(params))


def leap_meta_grad(
    params: PyTree,
    tasks: Task,
    *,
    loss_fn: LossFn,
    inner_lr: float,
    num_steps: int,
    options: LeapOptions = LeapOptions(),
) -> tuple[jnp.ndarray, PyTree]:
    """Leap's meta-gradient averaged over a batch of tasks (gradient of the path length).

    Args:
      params: initialisation :math:`\\theta_0`.
      tasks: a :class:`Task` with a leading task axis; the inner loop trains on ``support``.
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` to minimise.
      inner_lr, num_steps: inner SGD step size and number of steps.
      options: loss term / normalisation / stabiliser switches.

    Returns:
      ``(mean last-step support loss, meta_grad)``; apply as a gradient (descent).
    """
    p0 = lax.stop_gradient(params)

    def one(task):
        res = adapt(loss_fn, p0, task.support, inner_lr=inner_lr, num_steps=num_steps, leap=options)
        return res.losses[-1], res.leap_grad

    losses, grads = jax.vmap(one)(tasks)
    return jnp.mean(losses), jax.tree.map(lambda d: jnp.mean(d, axis=0), grads)


def leap_update(
    state: LeapState,
    tasks: Task,
    *,
    optimizer: optax.GradientTransformation,
    loss_fn: LossFn,
    inner_lr: float,
    num_steps: int,
    options: LeapOptions = LeapOptions(),
) -> tuple[LeapState, jnp.ndarray]:
    """One Leap meta-step; returns the new state and the monitoring loss."""
    loss, g = leap_meta_grad(
        state.params,
        tasks,
        loss_fn=loss_fn,
        inner_lr=inner_lr,
        num_steps=num_steps,
        options=options,
    )
    updates, opt_state = optimizer.update(g, state.opt_state, state.params)
    return LeapState(optax.apply_updates(state.params, updates), opt_state), loss
