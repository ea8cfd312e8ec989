r"""Reptile (Nichol, Achiam & Schulman, 2018, arXiv:1803.02999).

Run K SGD steps on each task from :math:`\theta_0` and move the initialisation towards the
adapted parameters. Written as a meta-*gradient* to be minimised with any optax optimiser:

.. math:: g = \mathbb{E}_\tau\, (\theta_0 - \theta_K^\tau), \qquad
    \theta_0 \leftarrow \theta_0 - \beta g \quad (\text{SGD}),

no backpropagation through the inner loop. Leap with neither loss term nor normalisation
reduces to exactly this ``g`` (tested).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax
from jax import lax
from optax import tree_utils as otu

from metalab.metalearn.adapt import LossFn, adapt
from metalab.metalearn.learner import MetaLearner, from_meta_grad, task_mean
from metalab.metalearn.tasks import Task

PyTree = Any
__all__ = ["reptile", "reptile_meta_grad"]


def reptile_meta_grad(
    params: PyTree,
    tasks: Task,
    *,
    loss_fn: LossFn,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
) -> tuple[jnp.ndarray, PyTree]:
    """Reptile's meta-gradient :math:`\\mathbb{E}_\\tau(\\theta_0 - \\theta_K)` over a task batch.

    Returns:
      ``(mean last-step support loss, meta_grad)``.
    """
    p0 = lax.stop_gradient(params)

    def one(task: Task):
        res = adapt(loss_fn, p0, task.support, inner_lr=inner_lr, num_steps=num_steps)
        return res.losses[-1], otu.tree_sub(p0, res.params)

    return task_mean(one, tasks)


def reptile(
    loss_fn: LossFn,
    *,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
    outer: optax.GradientTransformation = optax.adam(1e-3),
) -> MetaLearner:
    """Reptile as a :class:`~metalab.metalearn.learner.MetaLearner` (arguments as
    :func:`~metalab.metalearn.leap.leap`). With ``outer=optax.sgd(beta)`` this is the
    paper's batched Reptile step :math:`\\theta_0 \\leftarrow \\theta_0 + \\beta
    \\mathbb{E}_\\tau(\\theta_K - \\theta_0)`."""

    def meta_grad(params, key, tasks):
        del key
        loss, g = reptile_meta_grad(
            params, tasks, loss_fn=loss_fn, inner_lr=inner_lr, num_steps=num_steps
        )
        return loss, g, {}

    return from_meta_grad(meta_grad, outer)
