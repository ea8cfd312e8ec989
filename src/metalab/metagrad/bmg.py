r"""Bootstrapped meta-gradients (Flennerhag et al. 2021, "Bootstrapped Meta-Learning", ICLR 2022).

Given meta-parameters :math:`w` and an update rule :math:`\varphi`, ``K`` inner updates give
:math:`x_K(w)`; the meta-loss is then either

* the **standard meta-gradient** (``L = 0``, Xu et al. 2018):
  :math:`\mathcal L(w) = f(x_K(w))`, the outer objective at the updated parameters; or
* **BMG** (``L >= 1``): a target bootstrapped from :math:`x_K` by ``L - 1`` further updates with
  the current (stopped) meta-parameters and a final gradient step on ``f``,

  .. math::
     \tilde x = \mathrm{sg}\big[x_{K+L-1} - \alpha \nabla f(x_{K+L-1})\big], \qquad
     \mathcal L(w) = \mu\big(\Pi(\tilde x), \Pi(x_K(w))\big),

  with :math:`\mu` the KL divergence between the target's and the learner's policies
  (``match="kl"``, :math:`\Pi` maps parameters to logits on the batch's states) or half the
  squared distance between parameters (``match="l2"``, :math:`\Pi` = identity).

All losses are *minimised* with respect to ``w``; ``f`` is minimised by the learner.
Identity (tested): with ``L = 1``, ``match="l2"`` and a target step ``alpha``, the BMG
meta-gradient equals ``alpha`` times the standard (``L = 0``) meta-gradient.

The inner loop runs through :func:`metalab.core.inner_loop.unroll` (one ``lax.scan``; supports
truncation) and the target through :func:`metalab.core.bootstrap.bootstrap_target`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from jax import lax

from metalab.core.bootstrap import bmg_loss, bootstrap_target, kl_categorical, squared_distance
from metalab.core.inner_loop import unroll

PyTree = Any
MATCHES = ("kl", "l2")


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


def inner_updates(
    meta: PyTree,
    params: PyTree,
    update_fn: Callable[[PyTree, PyTree, Any], PyTree],
    inner_xs: Any,
    truncation: int | None = None,
) -> PyTree:
    """:math:`x_K(w)`: apply ``update_fn(params, meta, x_k)`` for each ``x_k`` in ``inner_xs``."""
    final, _ = unroll(
        lambda p, x, k: (update_fn(p, meta, x), None), params, inner_xs, truncation=truncation
    )
    return final


def bmg_target(
    meta: PyTree,
    params_k: PyTree,
    update_fn: Callable[[PyTree, PyTree, Any], PyTree],
    objective_fn: Callable[[PyTree, Any], Any],
    target_x: Any,
    num_bootstrap: int,
    target_step: float,
) -> PyTree:
    """The stopped target :math:`\\mathrm{sg}[x_{K+L-1} - \\alpha\\nabla f(x_{K+L-1})]`.

    The ``L - 1`` bootstrap updates reuse the batch ``target_x`` with stopped ``meta``.
    """
    if num_bootstrap < 1:
        raise ValueError(f"bmg_target needs num_bootstrap (L) >= 1, got {num_bootstrap}")
    meta_sg = lax.stop_gradient(meta)

    def final(p):
        g = jax.grad(objective_fn)(p, target_x)
        return jax.tree.map(lambda a, b: a - target_step * b, p, g)

    return bootstrap_target(
        lambda p, i: update_fn(p, meta_sg, target_x), params_k, num_bootstrap - 1, final
    )


def meta_loss(
    meta: PyTree,
    params: PyTree,
    *,
    update_fn: Callable[[PyTree, PyTree, Any], PyTree],
    objective_fn: Callable[[PyTree, Any], Any],
    inner_xs: Any,
    target_x: Any,
    num_bootstrap: int = 0,
    match: str = "kl",
    target_step: float = 1.0,
    project_fn: Callable[[PyTree, Any], Any] | None = None,
    truncation: int | None = None,
) -> Any:
    """The meta-loss of the standard meta-gradient (``L = 0``) or BMG (``L >= 1``).

    Minimised with respect to ``meta``.

    Args:
      meta: meta-parameters ``w`` (any pytree).
      params: learner parameters ``x_0`` before the ``K`` inner updates.
      update_fn: ``(params, meta, x) -> params``, the learner's update rule (differentiable).
      objective_fn: ``(params, x) -> scalar`` outer objective ``f`` (minimised).
      inner_xs: the ``K`` inner batches (leading axis K).
      target_x: the batch for ``f`` (``L = 0``) or for the target and matching (``L >= 1``).
      num_bootstrap: ``L``; 0 gives the standard meta-gradient.
      match: ``"kl"`` (policies; needs ``project_fn`` returning logits) or ``"l2"`` (parameters).
      target_step: ``alpha``, the step size of the target's final gradient step.
      project_fn: ``(params, x) -> logits`` for ``match="kl"``.
      truncation: backpropagate through only the last ``truncation`` inner updates.
    """
    check_bmg_args(num_bootstrap, match, target_step)
    params_k = inner_updates(meta, params, update_fn, inner_xs, truncation)
    if num_bootstrap == 0:
        return objective_fn(params_k, target_x)
    target = bmg_target(
        meta, params_k, update_fn, objective_fn, target_x, num_bootstrap, target_step
    )
    if match == "l2":
        return bmg_loss(params_k, target, squared_distance)
    if project_fn is None:
        raise ValueError("match='kl' needs project_fn(params, x) -> logits")
    return bmg_loss(project_fn(params_k, target_x), project_fn(target, target_x), kl_categorical)


def meta_gradient(meta: PyTree, params: PyTree, **kwargs) -> tuple[Any, PyTree]:
    """``(meta_loss, d meta_loss / d meta)``; keyword arguments as in :func:`meta_loss`."""
    return jax.value_and_grad(meta_loss)(meta, params, **kwargs)
