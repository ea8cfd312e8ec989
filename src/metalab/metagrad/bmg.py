r"""Bootstrapped meta-gradients (Flennerhag et al. 2021, "Bootstrapped Meta-Learning", ICLR 2022).

Given meta-parameters :math:`w` and an update rule :math:`\varphi`, ``K`` inner updates give
:math:`x_K(w)`; the meta-loss is then either

* the **standard meta-gradient** (``num_bootstrap = 0``, Xu et al. 2018):
  :math:`\mathcal L(w) = f(x_K(w))`, the outer objective at the updated parameters; or
* **BMG** (``num_bootstrap = L >= 1``): a target bootstrapped from :math:`x_K` by ``L - 1``
  further updates with the current (stopped) meta-parameters and a final gradient step on ``f``,

  .. math::
     \tilde x = \mathrm{sg}\big[x_{K+L-1} - \alpha \nabla f(x_{K+L-1})\big], \qquad
     \mathcal L(w) = \mu\big(\Pi(\tilde x), \Pi(x_K(w))\big),

  with :math:`\mu` the KL divergence between the target's and the learner's policies
  (``match="kl"``, :math:`\Pi` maps parameters to logits on the batch's states) or half the
  squared distance between parameters (``match="l2"``, :math:`\Pi` = identity).

Protocol (the metagrad family's): a factory fixes the hyper-parameters and returns pure
functions,

.. code-block:: python

   mg = bmg.meta_gradient(update_fn, objective_fn, num_bootstrap=2, match="l2")
   loss = mg.meta_loss(meta, params, inner_xs, target_x)
   loss, grad = mg.meta_grad(meta, params, inner_xs, target_x)

All losses are *minimised* with respect to ``meta``; ``f`` is minimised by the learner.
Identity (tested): with ``L = 1``, ``match="l2"`` and a target step ``alpha``, the BMG
meta-gradient equals ``alpha`` times the standard (``L = 0``) meta-gradient.

The inner loop runs through :func:`metalab.core.inner_loop.unroll` (one ``lax.scan``; supports
truncation) and the target through :func:`metalab.core.bootstrap.bootstrap_target`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax
from jax import lax

from metalab.core.bootstrap import bootstrap_target, kl_categorical, squared_distance
from metalab.core.inner_loop import unroll

__all__ = [
    "MATCHES",
    "MetaGradient",
    "check_bmg_args",
    "matching_loss",
    "meta_gradient",
]

PyTree = Any
MATCHES = ("kl", "l2")
UpdateFn = Callable[[PyTree, PyTree, Any], PyTree]
ObjectiveFn = Callable[[PyTree, Any], Any]


class MetaGradient(NamedTuple):
    """Pure functions of one meta-gradient method (hyper-parameters fixed at construction).

    ``meta_loss(meta, params, inner_xs, target_x) -> scalar`` (minimised in ``meta``) and
    ``meta_grad(meta, params, inner_xs, target_x) -> (loss, d loss / d meta)``.
    """

    meta_loss: Callable[..., Any]
    meta_grad: Callable[..., tuple[Any, PyTree]]


def check_bmg_args(num_bootstrap: int, match: str, target_step: float) -> None:
    """Raise ``ValueError`` naming the field if a BMG setting is impossible."""
    if int(num_bootstrap) < 0:
        raise ValueError(
            f"num_bootstrap (L) must be >= 0 (0 = standard meta-gradient), got {num_bootstrap}"
        )
    if match not in MATCHES:
        raise ValueError(f"match must be one of {MATCHES}, got {match!r}")
    if not isinstance(target_step, jax.Array) and float(target_step) <= 0:
        raise ValueError(f"target_step must be > 0, got {target_step}")


def matching_loss(
    online: PyTree,
    target: PyTree,
    match: Callable[[PyTree, PyTree], Any] = squared_distance,
) -> Any:
    """BMG's matching loss ``match(sg(target), online)``; differentiate it w.r.t. ``online``."""
    return match(lax.stop_gradient(target), online)


def _inner_updates(meta, params, update_fn: UpdateFn, inner_xs, truncation):
    final, _ = unroll(
        lambda p, x, k: (update_fn(p, meta, x), None), params, inner_xs, truncation=truncation
    )
    return final


def _target(meta, params_k, update_fn, objective_fn, target_x, num_bootstrap, target_step):
    """The stopped target :math:`\\mathrm{sg}[x_{K+L-1} - \\alpha\\nabla f(x_{K+L-1})]`; the
    ``L - 1`` bootstrap updates reuse ``target_x`` with stopped ``meta``."""
    meta_sg = lax.stop_gradient(meta)

    def final(p):
        g = jax.grad(objective_fn)(p, target_x)
        return optax.tree_utils.tree_add_scale(p, -target_step, g)

    return bootstrap_target(
        lambda p, i: update_fn(p, meta_sg, target_x), params_k, num_bootstrap - 1, final
    )


def meta_gradient(
    update_fn: UpdateFn,
    objective_fn: ObjectiveFn,
    *,
    num_bootstrap: int = 0,
    match: str = "kl",
    target_step: float = 1.0,
    project_fn: Callable[[PyTree, Any], Any] | None = None,
    truncation: int | None = None,
) -> MetaGradient:
    """The standard meta-gradient (``num_bootstrap=0``) or BMG (``num_bootstrap=L >= 1``).

    Args:
      update_fn: ``(params, meta, x) -> params``, the learner's update rule (differentiable).
      objective_fn: ``(params, x) -> scalar`` outer objective ``f`` (minimised).
      num_bootstrap: ``L``; 0 gives the standard meta-gradient.
      match: ``"kl"`` (policies; needs ``project_fn`` returning logits) or ``"l2"`` (parameters).
      target_step: ``alpha``, the step size of the target's final gradient step.
      project_fn: ``(params, x) -> logits`` for ``match="kl"``.
      truncation: backpropagate through only the last ``truncation`` inner updates.

    Returns:
      :class:`MetaGradient` whose functions take ``(meta, params, inner_xs, target_x)``:
      ``meta`` any pytree, ``params`` the learner's ``x_0``, ``inner_xs`` the ``K`` inner
      batches (leading axis K), ``target_x`` the batch of ``f`` (L = 0) or of the target.
    """
    check_bmg_args(num_bootstrap, match, target_step)
    if num_bootstrap >= 1 and match == "kl" and project_fn is None:
        raise ValueError("match='kl' needs project_fn(params, x) -> logits")

    def meta_loss(meta: PyTree, params: PyTree, inner_xs: Any, target_x: Any) -> Any:
        params_k = _inner_updates(meta, params, update_fn, inner_xs, truncation)
        if num_bootstrap == 0:
            return objective_fn(params_k, target_x)
        target = _target(
            meta, params_k, update_fn, objective_fn, target_x, num_bootstrap, target_step
        )
        if match == "l2":
            return matching_loss(params_k, target, squared_distance)
        return matching_loss(
            project_fn(params_k, target_x), project_fn(target, target_x), kl_categorical
        )

    return MetaGradient(meta_loss, jax.value_and_grad(meta_loss))
