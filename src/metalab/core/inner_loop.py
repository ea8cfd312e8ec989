r"""Differentiable inner loops.

An inner loop applies an update rule ``K`` times to task parameters:

.. math:: \theta_{k+1} = \theta_k + u(\theta_k, \xi_k; w), \qquad k = 0, \dots, K-1,

where ``w`` are meta-parameters (an initialisation, a step size, warp layers, ...) and
``\xi_k`` the per-step inputs (a batch, a key). :func:`unroll` runs it as one ``lax.scan``
so that compile time does not grow with ``K`` and ``jax.grad`` can differentiate the final
parameters with respect to ``w`` and ``\theta_0``.

Options that every meta-learning method in metalab shares:

* ``truncation=T``: gradients flow only through the last ``T`` steps (truncated backprop):
  the inputs *and* outputs of every earlier step (its new parameters and its ``aux``) are
  wrapped in ``stop_gradient``, so a meta-parameter ``w`` used inside the step function is
  differentiated through exactly ``T`` updates (for :math:`x \leftarrow x + w` over K steps,
  :math:`\partial x_K / \partial w = T`).
* ``first_order=True``: the update ``u`` is treated as a constant in the backward pass
  (a first-order approximation: :math:`\partial\theta_{k+1}/\partial\theta_k = I`).
* ``checkpoint=True``: rematerialise each step in the backward pass, trading compute for
  memory (``jax.checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

PyTree = Any
StepFn = Callable[[PyTree, Any, int], tuple[PyTree, Any]]


def unroll(
    step_fn: StepFn,
    params: PyTree,
    xs: Any = None,
    *,
    num_steps: int | None = None,
    truncation: int | None = None,
    first_order: bool = False,
    checkpoint: bool = False,
) -> tuple[PyTree, Any]:
    """Run ``params <- step_fn(params, x_k, k)`` for each step; return final params and aux.

    Args:
      step_fn: ``(params, x_k, k) -> (new_params, aux_k)``; ``k`` is the step index (traced).
      params: initial task parameters (a pytree).
      xs: per-step inputs with a leading axis of length K (a pytree), or None.
      num_steps: K when ``xs`` is None.
      truncation: if set, backpropagate only through the last ``truncation`` steps.
      first_order: if True, drop second-order terms (the update is a constant to ``grad``).
      checkpoint: if True, rematerialise steps in the backward pass.

    Returns:
      ``(params_K, aux)`` where ``aux`` stacks each step's ``aux_k`` along axis 0.
    """
    if xs is None and num_steps is None:
        raise ValueError("unroll needs xs (per-step inputs) or num_steps")
    if xs is not None:
        lengths = {x.shape[0] for x in jax.tree.leaves(xs)}
        if len(lengths) != 1:
            raise ValueError(f"xs leaves disagree on the number of steps: {sorted(lengths)}")
        k_total = lengths.pop()
        if num_steps is not None and num_steps != k_total:
            raise ValueError(f"num_steps={num_steps} but xs has {k_total} steps")
    else:
        k_total = int(num_steps)
    if truncation is not None and truncation < 1:
        raise ValueError(f"truncation must be >= 1 or None, got {truncation}")

    def body(p, inp):
        x, k = inp
        if truncation is not None:
            cut = k < k_total - truncation
            p = _stop_where(cut, p)
        new_p, aux = step_fn(p, x, k)
        if first_order:
            delta = jax.tree.map(lambda n, o: lax.stop_gradient(n - o), new_p, p)
            new_p = jax.tree.map(jnp.add, p, delta)
        if truncation is not None:
            # a step outside the window contributes no gradient at all: neither through its
            # input (theta_0 and earlier steps) nor through what it uses inside (w).
            new_p, aux = _stop_where(cut, new_p), _stop_where(cut, aux)
        return new_p, aux

    if checkpoint:
        body = jax.checkpoint(body)
    steps = jnp.arange(k_total)
    return lax.scan(body, params, (xs, steps))


def _stop_where(cut: jnp.ndarray, tree: PyTree) -> PyTree:
    """``stop_gradient`` on every leaf where the traced flag ``cut`` is True."""
    return jax.tree.map(lambda a: jnp.where(cut, lax.stop_gradient(a), a), tree)


def sgd_step(loss_fn: Callable[..., jnp.ndarray], lr) -> StepFn:
    """A plain SGD update rule for :func:`unroll`: ``theta - lr * grad loss(theta, batch)``.

    ``loss_fn(params, batch) -> scalar``. ``aux`` is the pre-update loss. ``lr`` may be a
    traced scalar or a pytree matching ``params`` (per-parameter step sizes).
    """

    def step(params, batch, k):
        loss, g = jax.value_and_grad(loss_fn)(params, batch)
        if jax.tree.structure(lr) == jax.tree.structure(params):
            new = jax.tree.map(lambda p, a, gi: p - a * gi, params, lr, g)
        else:
            new = jax.tree.map(lambda p, gi: p - lr * gi, params, g)
        return new, loss

    return step
