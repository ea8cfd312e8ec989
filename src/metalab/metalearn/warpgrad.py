r"""WarpGrad: meta-learning with warped gradient descent (Flennerhag, Rusu, Pascanu, Visin,
Yin & Hadsell, ICLR 2020, arXiv:1909.00025).

A warped model interleaves *task layers* :math:`\theta` (adapted in the inner loop) with
*warp layers* :math:`\phi` (meta-learned, fixed in the inner loop); see
:mod:`metalab.metalearn.nets` (non-linear residual warps for MLPs, convolutional warps for
convnets). Plain SGD on :math:`\theta` through the warp layers is gradient descent
preconditioned by the warps' Jacobians; for a linear warp :math:`\Omega(h) = hV` after a
linear task layer :math:`h = xW`, the effective map :math:`M = WV` moves as
:math:`M \leftarrow M - \alpha\, \nabla_M \mathcal{L}\, V^\top V` (tested).

Warp parameters are meta-learned with WarpGrad's trajectory objective, online (the paper's
Algorithm 1): for every step :math:`k` of every task's learning process, the query loss after
one warped step from the (constant) task parameters :math:`\theta_k`,

.. math:: L(\phi) = \mathbb{E}_{\tau}\, \frac1K \sum_{k=0}^{K-1}
    \mathcal{L}\big(\theta_k - \alpha \nabla_\theta \mathcal{L}(\theta_k, \phi; S_\tau),\,
    \phi;\, Q_\tau\big), \qquad \theta_k \text{ held constant},

its gradient accumulated step by step in the inner loop's carry
(:func:`metalab.metalearn.adapt.adapt`), so nothing backpropagates through the learning
process and memory is flat in K. The initialisation :math:`\theta_0` is meta-learned
alongside with an initialisation objective (``init_objective``): Leap's (Warp-Leap), MAML's
(Warp-MAML), Reptile's, or none. Losses are minimised; meta-gradients are applied with optax.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax
from optax import tree_utils as otu

from metalab.metalearn.adapt import LeapConfig, Step, adapt, leap_accumulator
from metalab.metalearn.learner import MetaLearner, from_meta_grad, task_mean
from metalab.metalearn.tasks import Task

PyTree = Any
WarpLossFn = Callable[[PyTree, PyTree, Any], jnp.ndarray]
INIT_OBJECTIVES = ("leap", "maml", "reptile", "none")

__all__ = ["INIT_OBJECTIVES", "WarpParams", "one_step_loss", "warpgrad"]


class WarpParams(NamedTuple):
    """WarpGrad's meta-parameters: the task-layer initialisation and the warp layers."""

    init: PyTree
    warp: PyTree


def one_step_loss(
    warp: PyTree,
    theta: PyTree,
    task: Task,
    *,
    warp_loss_fn: WarpLossFn,
    inner_lr: float | jnp.ndarray,
) -> jnp.ndarray:
    """Query loss after one warped SGD step from constant task parameters ``theta`` (the
    summand of WarpGrad's objective; differentiate in ``warp``)."""
    theta = lax.stop_gradient(theta)
    g = jax.grad(warp_loss_fn)(theta, warp, task.support)
    return warp_loss_fn(otu.tree_add_scale(theta, -inner_lr, g), warp, task.query)


def _outer_for_both(outer, warp_outer):
    if warp_outer is None:
        return outer
    labels = lambda p: WarpParams(
        jax.tree.map(lambda _: "init", p.init), jax.tree.map(lambda _: "warp", p.warp)
    )
    return optax.multi_transform({"init": outer, "warp": warp_outer}, labels)


def warpgrad(
    warp_loss_fn: WarpLossFn,
    *,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
    outer: optax.GradientTransformation = optax.adam(1e-3),
    warp_outer: optax.GradientTransformation | None = None,
    init_objective: str = "leap",
    leap_config: LeapConfig = LeapConfig(),
) -> MetaLearner:
    """WarpGrad as a :class:`~metalab.metalearn.learner.MetaLearner` over
    :class:`WarpParams` (``learner.init(WarpParams(theta0, phi), key)``).

    Args:
      warp_loss_fn: ``warp_loss_fn(task_params, warp_params, (x, y)) -> scalar``.
      inner_lr, num_steps: the inner loop (warped SGD on the support set).
      outer: outer optimiser of the initialisation (and of the warps if ``warp_outer`` is
        None).
      warp_outer: optional separate optimiser for the warp layers.
      init_objective: ``"leap"`` (Warp-Leap), ``"maml"`` (Warp-MAML, second order through the
        warped inner loop with the warps held fixed), ``"reptile"`` or ``"none"``.
      leap_config: Leap's static choices when ``init_objective="leap"``.

    ``info``: ``loss`` (the init objective's monitoring loss: the query loss after
    adaptation for Warp-MAML, the last support loss otherwise) and ``warp_loss`` (the
    trajectory objective before the update).
    """
    if init_objective not in INIT_OBJECTIVES:
        raise ValueError(f"init_objective must be one of {INIT_OBJECTIVES}, got {init_objective!r}")

    def meta_grad(params: WarpParams, key, tasks: Task):
        del key
        phi = lax.stop_gradient(params.warp)
        loss_fn = lambda theta, b: warp_loss_fn(theta, phi, b)
        leap_acc = leap_accumulator(loss_fn, leap_config)

        def one(task: Task):
            def acc(s: Step):
                val, g_w = jax.value_and_grad(one_step_loss)(
                    phi,
                    s.params,
                    Task(s.batch, task.query),
                    warp_loss_fn=warp_loss_fn,
                    inner_lr=inner_lr,
                )
                inc = leap_acc(s) if init_objective == "leap" else None
                return g_w, val, inc

            def run(p0):
                res = adapt(
                    loss_fn,
                    p0,
                    task.support,
                    inner_lr=inner_lr,
                    num_steps=num_steps,
                    accumulate=acc,
                )
                return loss_fn(res.params, task.query), res

            if init_objective == "maml":
                (loss, res), g_init = jax.value_and_grad(run, has_aux=True)(params.init)
            else:
                p0 = lax.stop_gradient(params.init)
                _, res = run(p0)
                loss = res.losses[-1]
                if init_objective == "leap":
                    g_init = res.accumulated[2]
                elif init_objective == "reptile":
                    g_init = otu.tree_sub(p0, res.params)
                else:
                    g_init = otu.tree_zeros_like(p0)
            g_w, w_loss, _ = res.accumulated
            scale = 1.0 / num_steps
            return (loss, w_loss * scale), WarpParams(g_init, otu.tree_scale(scale, g_w))

        (loss, w_loss), grads = task_mean(one, tasks)
        return loss, grads, {"warp_loss": w_loss}

    return from_meta_grad(meta_grad, _outer_for_both(outer, warp_outer))
