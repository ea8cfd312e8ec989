r"""The one inner loop every metalearn method runs: SGD on a task, as a ``lax.scan``.

:func:`adapt` wraps :func:`metalab.core.inner_loop.unroll` (which provides truncation,
first-order backprop and rematerialisation) and adds one thing to the scan's carry: a
**per-step accumulator** ``accumulate(step) -> pytree`` summed over the K steps. Leap's
meta-gradient (:func:`leap_increment`) and WarpGrad's trajectory objective are both sums over
the steps of one learning process, so neither method stores or backpropagates through the
trajectory: memory is flat in K.

The update rule is plain SGD, :math:`\theta_{k+1} = \theta_k - \alpha \nabla_\theta
\mathcal{L}(\theta_k; B_k)` (minimisation), with :math:`B_k` the support batch (the same
batch at every step) or the ``k``-th of ``K`` stacked mini-batches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from optax import tree_utils as otu

from metalab.core.inner_loop import unroll

PyTree = Any
LossFn = Callable[[PyTree, Any], jnp.ndarray]

__all__ = [
    "AdaptResult",
    "LeapConfig",
    "Step",
    "adapt",
    "leap_increment",
    "training_curve",
]


@dataclass(frozen=True)
class LeapConfig:
    r"""Static choices of Leap's meta-gradient (Flennerhag et al., 2019, Sec. 3).

    The defaults are the variant that works in this library's experiments: the loss as an
    extra manifold coordinate, the path *energy* (:math:`d_2`, no normalisation) and the
    stabiliser. The normalised path length (:math:`d_1`) gives every late, near-converged
    step a unit-length increment as large as an early one; with Adam as the outer optimiser
    it drifted away from good initialisations (docs/metalearn.md).

    Attributes:
      use_loss: include the loss as an extra coordinate of the task manifold
        (:math:`\gamma = (\theta, f(\theta))`); False keeps only parameter distances.
      normalise: divide each increment by the segment length :math:`\|\Delta\gamma\|`
        (path *length*, :math:`d_1`); False gives the path *energy* (:math:`d_2`).
      stabilise: replace :math:`\Delta f` by :math:`-|\Delta f|` so that segments where the
        loss went up still pull the initialisation towards lower loss.
    """

    use_loss: bool = True
    normalise: bool = False
    stabilise: bool = True


class Step(NamedTuple):
    """What an accumulator sees of one inner step ``k`` (all values gradient-stopped).

    Attributes:
      params: :math:`\\theta_k`; new_params: :math:`\\theta_{k+1}`; grad: the task gradient
      at :math:`\\theta_k`; loss: :math:`\\mathcal{L}(\\theta_k; B_k)`; batch: :math:`B_k`.
    """

    params: PyTree
    new_params: PyTree
    grad: PyTree
    loss: jnp.ndarray
    batch: Any


class AdaptResult(NamedTuple):
    r"""Output of :func:`adapt`.

    Attributes:
      params: final task parameters :math:`\theta_K`.
      losses: ``(K,)`` pre-update losses :math:`\mathcal{L}(\theta_k; B_k)`, k = 0..K-1.
      accumulated: the sum over steps of ``accumulate`` (``None`` without one).
    """

    params: PyTree
    losses: jnp.ndarray
    accumulated: PyTree


def leap_increment(
    theta_k: PyTree,
    theta_next: PyTree,
    grad_k: PyTree,
    loss_k: jnp.ndarray,
    loss_next: jnp.ndarray,
    config: LeapConfig,
) -> PyTree:
    r"""Leap's meta-gradient contribution of one segment :math:`\theta_k \to \theta_{k+1}`.

    With :math:`\Delta\theta = \theta_{k+1} - \theta_k` and :math:`\Delta f = f(\theta_{k+1})
    - f(\theta_k)` (both losses on the same batch), the gradient of the segment's length
    (energy) with respect to its start point, the end point frozen and the Jacobian of the
    update taken as the identity, is

    .. math:: g_k = -\frac{\Delta\theta + \Delta f\, \nabla f(\theta_k)}{\|(\Delta\theta,
        \Delta f)\|_2} \quad (d_1), \qquad g_k = -(\Delta\theta + \Delta f\, \nabla
        f(\theta_k)) \quad (d_2).

    Without the loss term :math:`\Delta f = 0`; without normalisation
    :math:`\sum_k g_k = \theta_0 - \theta_K`, Reptile's meta-gradient. The result is a
    gradient: apply ``theta_0 -= beta * g``.
    """
    d_theta = lax.stop_gradient(otu.tree_sub(theta_next, theta_k))
    if config.use_loss:
        d_f = lax.stop_gradient(loss_next - loss_k)
        if config.stabilise:
            d_f = -jnp.abs(d_f)
    else:
        d_f = jnp.zeros((), jnp.result_type(loss_k))
    inc = otu.tree_scale(-1.0, otu.tree_add_scale(d_theta, d_f, lax.stop_gradient(grad_k)))
    if config.normalise:
        norm = jnp.sqrt(otu.tree_vdot(d_theta, d_theta) + jnp.square(d_f))
        inc = otu.tree_scale(jnp.where(norm > 0, 1.0 / jnp.where(norm > 0, norm, 1.0), 0.0), inc)
    return inc


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
    accumulate: Callable[[Step], PyTree] | None = None,
) -> AdaptResult:
    r"""Run ``num_steps`` SGD steps on ``loss_fn`` from ``params`` (differentiable).

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` to minimise.
      params: initial task parameters :math:`\theta_0`.
      batch: the support batch, or (``per_step_batches=True``) a pytree of ``K`` stacked
        mini-batches with leading axis ``num_steps``.
      inner_lr: step size :math:`\alpha` (a float or a traced scalar: it can be vmapped).
      num_steps: K.
      first_order, truncation, checkpoint: passed to :func:`~metalab.core.inner_loop.unroll`.
      accumulate: ``accumulate(Step) -> pytree``, summed over the K steps in the carry.

    Returns:
      An :class:`AdaptResult`.
    """
    if int(num_steps) < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")

    def step(carry, x, k):
        theta, acc = carry
        b = x if per_step_batches else batch
        loss, g = jax.value_and_grad(loss_fn)(theta, b)
        new = otu.tree_add_scale(theta, -inner_lr, g)
        if accumulate is not None:
            seen = lax.stop_gradient(Step(theta, new, g, loss, b))
            acc = otu.tree_add(acc, accumulate(seen))
        return (new, acc), loss

    acc0 = None
    if accumulate is not None:
        b0 = jax.tree.map(lambda a: a[0], batch) if per_step_batches else batch
        shape = jax.eval_shape(lambda p: accumulate(Step(p, p, p, jnp.zeros(()), b0)), params)
        acc0 = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shape)
    (theta, acc), losses = unroll(
        step,
        (params, acc0),
        batch if per_step_batches else None,
        num_steps=num_steps,
        first_order=first_order,
        truncation=truncation,
        checkpoint=checkpoint,
    )
    return AdaptResult(theta, losses, acc)


def leap_accumulator(loss_fn: LossFn, config: LeapConfig) -> Callable[[Step], PyTree]:
    """The accumulator of Leap's meta-gradient for :func:`adapt` (one :func:`leap_increment`
    per step; the loss after the step is re-evaluated on the same batch when needed)."""

    def acc(s: Step) -> PyTree:
        loss_next = loss_fn(s.new_params, s.batch) if config.use_loss else s.loss
        return leap_increment(s.params, s.new_params, s.grad, s.loss, loss_next, config)

    return acc


def training_curve(
    loss_fn: LossFn, params: PyTree, batch: Any, *, inner_lr: float | jnp.ndarray, num_steps: int
) -> tuple[PyTree, jnp.ndarray]:
    """Adapt on ``batch`` and return ``(theta_K, curve)``, ``curve`` the K+1 losses at
    theta_0..theta_K on ``batch``. No gradient flows (evaluation only)."""
    res = adapt(loss_fn, lax.stop_gradient(params), batch, inner_lr=inner_lr, num_steps=num_steps)
    final = loss_fn(res.params, batch)
    return res.params, jnp.concatenate([res.losses, final[None]])
