r"""The one inner loop every metalearn method runs: SGD on a task, as a ``lax.scan``.

:func:`adapt` wraps :func:`metalab.core.inner_loop.unroll` (which already provides
truncation, first-order backprop and rematerialisation) and adds, inside the same scan, the
two things the scan's carry must hold for the methods of this package:

* **snapshots** of the task parameters at ``S`` fixed steps (WarpGrad's replay buffer
  stores them); they live in a fixed-size array in the carry, so memory does not grow with
  the number of inner steps;
* the **Leap meta-gradient**, accumulated step by step (:func:`leap_increment`), so Leap
  never stores or backpropagates through the trajectory.

The update rule is plain SGD, :math:`\theta_{k+1} = \theta_k - \alpha \nabla_\theta
\mathcal{L}(\theta_k; B_k)` (minimisation), with :math:`B_k` the support batch (the same
batch at every step) or the ``k``-th of ``K`` stacked mini-batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from metalab.core.inner_loop import unroll

PyTree = Any
LossFn = Callable[[PyTree, Any], jnp.ndarray]


class LeapOptions(NamedTuple):
    r"""Static switches of Leap's meta-gradient (Flennerhag et al., 2019, Sec. 3).

    Attributes:
      use_loss: include the loss as an extra coordinate of the task manifold
        (:math:`\gamma = (\theta, f(\theta))`); False keeps only parameter distances.
      normalise: divide each increment by the segment length :math:`\|\Delta\gamma\|`
        (path *length*, Leap's :math:`d_1`); False gives the path *energy* (:math:`d_2`).
      stabilise: replace :math:`\Delta f` by :math:`-|\Delta f|` so that segments where the
        loss went up still pull the initialisation towards lower loss.
    """

    use_loss: bool = True
    normalise: bool = True
    stabilise: bool = True


class AdaptResult(NamedTuple):
    r"""Output of :func:`adapt`.

    Attributes:
      params: final task parameters :math:`\theta_K`.
      losses: ``(K,)`` pre-update losses :math:`\mathcal{L}(\theta_k; B_k)`, k = 0..K-1.
      snapshots: task parameters at the snapshot steps, leaves ``(S, ...)`` (``None`` if S=0).
      leap_grad: Leap's meta-gradient for :math:`\theta_0` (``None`` without ``leap``).
    """

    params: PyTree
    losses: jnp.ndarray
    snapshots: PyTree
    leap_grad: PyTree


def leap_increment(
    theta_k: PyTree,
    theta_next: PyTree,
    grad_k: PyTree,
    loss_k: jnp.ndarray,
    loss_next: jnp.ndarray,
    options: LeapOptions,
) -> PyTree:
    r"""Leap's meta-gradient contribution of one segment :math:`\theta_k \to \theta_{k+1}`.

    With :math:`\Delta\theta = \theta_{k+1} - \theta_k` and :math:`\Delta f = f(\theta_{k+1})
    - f(\theta_k)` (both losses on the same batch), the gradient of the segment length with
    respect to its start point, the end point frozen and the Jacobian of the update taken as
    the identity, is

    .. math:: g_k = -\frac{\Delta\theta + \Delta f\, \nabla f(\theta_k)}{\|(\Delta\theta,
        \Delta f)\|_2}.

    Without the loss term :math:`\Delta f = 0`; without normalisation the denominator is 1,
    and then :math:`\sum_k g_k = \theta_0 - \theta_K`, Reptile's meta-gradient. The result is
    a *descent* direction's negative, i.e. a gradient: apply ``theta_0 -= beta * g``.
    """
    d_theta = jax.tree.map(lambda a, b: lax.stop_gradient(b - a), theta_k, theta_next)
    if options.use_loss:
        d_f = lax.stop_gradient(loss_next - loss_k)
        if options.stabilise:
            d_f = -jnp.abs(d_f)
    else:
        d_f = jnp.zeros((), jnp.result_type(loss_k))
    inc = jax.tree.map(lambda dt, g: -(dt + d_f * lax.stop_gradient(g)), d_theta, grad_k)
    if options.normalise:
        sq = sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(d_theta)) + jnp.square(d_f)
        norm = jnp.sqrt(sq)
        safe = jnp.where(norm > 0, norm, 1.0)
        inc = jax.tree.map(lambda x: jnp.where(norm > 0, x / safe, 0.0), inc)
    return inc


def snapshot_steps(num_steps: int, num_snapshots: int) -> np.ndarray:
    """``num_snapshots`` distinct step indices spread evenly over ``0..num_steps-1``."""
    if num_snapshots < 1 or num_snapshots > num_steps:
        raise ValueError(f"num_snapshots must be in 1..num_steps={num_steps}, got {num_snapshots}")
    return np.unique(np.linspace(0, num_steps - 1, num_snapshots).round().astype(np.int32))


def adapt(
    loss_fn: LossFn,
    params: PyTree,
    batch: Any,
    *,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
    per_step_batches: bool = False,
    first_order: bool = False,
    truncation: int | None = None,
    checkpoint: bool = False,
    num_snapshots: int = 0,
    leap: LeapOptions | None = None,
) -> AdaptResult:
    r"""Run ``num_steps`` SGD steps on ``loss_fn`` from ``params`` (differentiable).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` to minimise.
      params: initial task parameters :math:`\theta_0`.
      batch: the support batch, or (``per_step_batches=True``) a pytree of ``K`` stacked
        mini-batches with leading axis ``num_steps``.
      inner_lr: step size :math:`\alpha` (scalar, may be traced).
      num_steps: K.
      first_order, truncation, checkpoint: passed to :func:`~metalab.core.inner_loop.unroll`.
      num_snapshots: number S of parameter snapshots to keep (0 for none).
      leap: if given, accumulate Leap's meta-gradient with these options.

    Returns:
      An :class:`AdaptResult`.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    steps = snapshot_steps(num_steps, num_snapshots) if num_snapshots else None

    def step(carry, x, k):
        theta, snaps, acc = carry
        b = x if per_step_batches else batch
        loss, g = jax.value_and_grad(loss_fn)(theta, b)
        new = jax.tree.map(lambda p, gi: p - inner_lr * gi, theta, g)
        if steps is not None:
            hit = jnp.asarray(steps) == k
            snaps = jax.tree.map(
                lambda s, p: jnp.where(
                    hit.reshape((-1,) + (1,) * p.ndim), lax.stop_gradient(p)[None], s
                ),
                snaps,
                theta,
            )
        if leap is not None:
            loss_next = loss_fn(new, b) if leap.use_loss else loss
            inc = leap_increment(theta, new, g, loss, loss_next, leap)
            acc = jax.tree.map(jnp.add, acc, inc)
        return (new, snaps, acc), loss

    snaps0 = (
        None
        if steps is None
        else jax.tree.map(lambda p: jnp.zeros((len(steps),) + p.shape, p.dtype), params)
    )
    acc0 = None if leap is None else jax.tree.map(jnp.zeros_like, params)
    xs = batch if per_step_batches else None
    (theta, snaps, acc), losses = unroll(
        step,
        (params, snaps0, acc0),
        xs,
        num_steps=num_steps,
        first_order=first_order,
        truncation=truncation,
        checkpoint=checkpoint,
    )
    return AdaptResult(theta, losses, snaps, acc)


def training_curve(
    loss_fn: LossFn,
    params: PyTree,
    batch: Any,
    *,
    inner_lr: float | jnp.ndarray,
    num_steps: int,
    per_step_batches: bool = False,
) -> tuple[PyTree, jnp.ndarray]:
    """Adapt and return ``(theta_K, curve)`` with ``curve`` the K+1 losses at theta_0..theta_K.

    The last point is the loss of :math:`\\theta_K` on the last batch used. No gradient flows
    (evaluation only).
    """
    res = adapt(
        loss_fn,
        lax.stop_gradient(params),
        batch,
        inner_lr=inner_lr,
        num_steps=num_steps,
        per_step_batches=per_step_batches,
    )
    last = jax.tree.map(lambda x: x[-1], batch) if per_step_batches else batch
    final = loss_fn(res.params, last)
    return res.params, jnp.concatenate([res.losses, final[None]])
