r"""MAML and first-order MAML (Finn, Abbeel & Levine, 2017, arXiv:1703.03400).

For tasks :math:`\tau` with support batch :math:`S_\tau` and query batch :math:`Q_\tau`, the
inner loop runs K SGD steps from the initialisation :math:`\theta_0`,
:math:`\theta_{k+1} = \theta_k - \alpha \nabla \mathcal{L}(\theta_k; S_\tau)`, and the
meta-objective (minimised) is the query loss after adaptation,

.. math:: F(\theta_0) = \mathbb{E}_\tau\, \mathcal{L}(\theta_K(\theta_0); Q_\tau),
    \qquad \nabla F = \mathbb{E}_\tau\, \Big[\prod_{k=0}^{K-1} (I - \alpha H_k)\Big]
    \nabla \mathcal{L}(\theta_K; Q_\tau).

MAML backpropagates through the whole inner loop (memory grows with K); FOMAML drops the
Hessian terms, :math:`\nabla F \approx \mathbb{E}_\tau \nabla \mathcal{L}(\theta_K; Q_\tau)`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from metalab.metalearn.adapt import LossFn, adapt
from metalab.metalearn.learner import MetaLearner, bind
from metalab.metalearn.tasks import Task

PyTree = Any
__all__ = ["fomaml", "maml", "maml_meta_grad"]


def maml_meta_grad(
    params: PyTree,
    tasks: Task,
    *,
    loss_fn: LossFn,
    inner_lr: float | jnp.ndarray,
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

    def task_loss(p, task):
        res = adapt(
            loss_fn,
            p,
            task.support,
            inner_lr=inner_lr,
            num_steps=num_steps,
            first_order=first_order,
            truncation=truncation,
        )
        return loss_fn(res.params, task.query)

    def meta_loss(p):
        return jnp.mean(jax.vmap(lambda t: task_loss(p, t))(tasks))

    return jax.value_and_grad(meta_loss)(params)


def maml(
    loss_fn: LossFn,
    *,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
    outer: optax.GradientTransformation = optax.adam(1e-3),
    first_order: bool = False,
    truncation: int | None = None,
) -> MetaLearner:
    """MAML as a :class:`~metalab.metalearn.learner.MetaLearner`; ``info["loss"]`` is the
    meta-loss (mean query loss after adaptation). Arguments as
    :func:`~metalab.metalearn.leap.leap`, plus ``first_order`` and ``truncation``."""

    return bind(
        maml_meta_grad,
        outer,
        loss_fn=loss_fn,
        inner_lr=inner_lr,
        num_steps=num_steps,
        first_order=first_order,
        truncation=truncation,
    )


def fomaml(loss_fn: LossFn, **kwargs: Any) -> MetaLearner:
    """First-order MAML: :func:`maml` with ``first_order=True`` (keyword arguments
    ``inner_lr``, ``num_steps``, ``outer``, ``truncation`` as :func:`maml`)."""
    return maml(loss_fn, first_order=True, **kwargs)
