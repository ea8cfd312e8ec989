r"""Leap: transferring knowledge across learning processes (Flennerhag, Moreno, Lawrence &
Damianou, ICLR 2019, arXiv:1812.01054).

Leap meta-learns an initialisation :math:`\theta_0` that shortens the expected length of the
learning path on the task manifold :math:`\gamma_k = (\theta_k, f_\tau(\theta_k))`:

.. math:: \min_{\theta_0}\; \mathbb{E}_\tau \sum_{k=0}^{K-1} \|\gamma_{k+1} - \gamma_k\|_2^p

(path length :math:`d_1`, p = 1; path energy :math:`d_2`, p = 2). Freezing the forward points
and taking the update Jacobian as the identity gives the meta-gradient

.. math:: \nabla F(\theta_0) = -\mathbb{E}_\tau \sum_{k} \frac{\Delta\theta_k + \Delta f_k\,
    \nabla f_\tau(\theta_k)}{\|\Delta\gamma_k\|^{2-p}},

accumulated *during* the inner loop (:func:`metalab.metalearn.adapt.leap_increment`): memory
and compute are those of plain training. The stabiliser replaces :math:`\Delta f_k` by
:math:`-|\Delta f_k|`. With no loss term and no normalisation the sum telescopes to
:math:`\theta_0 - \theta_K`: Reptile (tested).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax
from jax import lax

from metalab.metalearn.adapt import LeapConfig, LossFn, adapt, leap_accumulator
from metalab.metalearn.learner import MetaLearner, bind, task_mean
from metalab.metalearn.tasks import Task

PyTree = Any
__all__ = ["leap", "leap_meta_grad"]


def leap_meta_grad(
    params: PyTree,
    tasks: Task,
    *,
    loss_fn: LossFn,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
    config: LeapConfig = LeapConfig(),
) -> tuple[jnp.ndarray, PyTree]:
    """Leap's meta-gradient averaged over a batch of tasks (the inner loop trains on support).

    Returns:
      ``(mean last-step support loss, meta_grad)``; apply as a gradient (descent).
    """
    p0 = lax.stop_gradient(params)
    acc = leap_accumulator(loss_fn, config)

    def one(task: Task):
        res = adapt(
            loss_fn, p0, task.support, inner_lr=inner_lr, num_steps=num_steps, accumulate=acc
        )
        return res.losses[-1], res.accumulated

    return task_mean(one, tasks)


def leap(
    loss_fn: LossFn,
    *,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
    outer: optax.GradientTransformation = optax.adam(1e-3),
    config: LeapConfig = LeapConfig(),
) -> MetaLearner:
    """Leap as a :class:`~metalab.metalearn.learner.MetaLearner`.

    Args:
      loss_fn: ``loss_fn(params, (x, y)) -> scalar`` to minimise.
      inner_lr: inner SGD step size (float or traced scalar).
      num_steps: inner SGD steps K per task.
      outer: the outer optimiser of the initialisation.
      config: :class:`~metalab.metalearn.adapt.LeapConfig` (default: path energy with the
        loss term and the stabiliser).
    """

    return bind(
        leap_meta_grad,
        outer,
        loss_fn=loss_fn,
        inner_lr=inner_lr,
        num_steps=num_steps,
        config=config,
    )
