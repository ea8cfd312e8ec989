r"""MAML and first-order MAML (Finn, Abbeel & Levine, 2017, arXiv:1703.03400).

For tasks :math:`\tau` with support batch :math:`S_\tau` and query batch :math:`Q_\tau`, the
inner loop runs K SGD steps from the initialisation :math:`\theta_0`,
:math:`\theta_{k+1} = \theta_k - \alpha \nabla \mathcal{L}(\theta_k; S_\tau)`, and the
meta-objective (minimised) is the query loss after adaptation,

.. math:: F(\theta_0) = \mathbb{E}_\tau\, \mathcal{L}(\theta_K(\theta_0); Q_\tau),
    \qquad \nabla F = \mathbb{E}_\tau\, \Big[\prod_{k=0}^{K-1} (I - \alpha H_k)\Big]
    \nabla \mathcal{L}(\theta_K; Q_\tau).

MAML backpropagates through the whole inner loop (memory grows with K); FOMAML
(``first_order=True``) drops the Hessian terms, :math:`\nabla F \approx \mathbb{E}_\tau
\nabla \mathcal{L}(\theta_K; Q_\tau)`. Both run on :func:`metalab.metalearn.adapt.adapt`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metalab.metalearn.adapt import LossFn, adapt
from metalab.metalearn.tasks import Task

PyTree = Any


class MAMLState(NamedTuple):
    """Meta-learner state: the initialisation and its outer optimiser state."""

    params: PyTree
    opt_state: optax.OptState


def maml_init(params: PyTree, optimizer: optax.GradientTransformation) -> MAMLState:
    """Initial state for an initialisation ``params`` and an outer ``optimizer``."""
    return MAMLState(params, optimizer.init(params))


def maml_task_loss(
    params: PyTree,
    task: Task,
    *,
    loss_fn: LossFn,
    inner_lr: float,
    num_steps: int,
    first_order: bool = False,
    truncation: int | None = None,
) -> jnp.ndarray:
    """Query loss of one task after ``num_steps`` SGD steps on its support set (minimise)."""
    res = adapt(
        loss_fn,
        params,
        task.support,
        inner_lr=inner_lr,
        num_steps=num_steps,
        first_order=first_order,
        truncation=truncation,
    )
    return loss_fn(res.params, task.query)


def maml_meta_grad(
    params: PyTree,
    tasks: Task,
    *,
    loss_fn: LossFn,
    inner_lr: float,
    num_steps: int,
    first_order: bool = False,
    truncation: int | None = None,
) -> tuple[jnp.ndarray, PyTree]:
    """Mean post-adaptation query loss over a batch of tasks and its gradient in ``params``.

    Args:
      params: initialisation :math:`\\theta_0`.
      tasks: a :class:`Task` with a leading task axis (vmapped).
      loss_fn: ``loss_fn(params, (x, y)) -> scalar``.
      inner_lr, num_steps: inner SGD step size and number of steps.
      first_order: FOMAML if True.
      truncation: backpropagate through the last ``truncation`` inner steps only.

    Returns:
      ``(meta_loss, meta_grad)``.
    """

    def meta_loss(p):
        per_task = jax.vmap(
            lambda t: maml_task_loss(
                p,
                t,
                loss_fn=loss_fn,
                inner_lr=inner_lr,
                num_steps=num_steps,
                first_order=first_order,
                truncation=truncation,
            )
        )(tasks)
        return jnp.mean(per_task)

    return jax.value_and_grad(meta_loss)(params)


def maml_update(
    state: MAMLState,
    tasks: Task,
    *,
    optimizer: optax.GradientTransformation,
    loss_fn: LossFn,
    inner_lr: float,
    num_steps: int,
    first_order: bool = False,
) -> tuple[MAMLState, jnp.ndarray]:
    """One MAML (or FOMAML) meta-step; returns the new state and the meta-loss."""
    loss, g = maml_meta_grad(
        state.params,
        tasks,
        loss_fn=loss_fn,
        inner_lr=inner_lr,
        num_steps=num_steps,
        first_order=first_order,
    )
    updates, opt_state = optimizer.update(g, state.opt_state, state.params)
    return MAMLState(optax.apply_updates(state.params, updates), opt_state), loss
