r"""Reptile (Nichol, Achiam & Schulman, 2018, arXiv:1803.02999).

Run K SGD steps on each task from :math:`\theta_0` and move the initialisation towards the
adapted parameters. Written as a meta-*gradient* to be minimised with any optax optimiser:

.. math:: g = \mathbb{E}_\tau\, (\theta_0 - \theta_K^\tau), \qquad
    \theta_0 \leftarrow \theta_0 - \beta g \quad (\text{SGD}),

no backpropagation through the inner loop. This ``g`` is Leap's meta-gradient with neither
loss term nor normalisation (the increments :math:`-(\theta_{k+1} - \theta_k)` telescope to
:math:`\theta_0 - \theta_K`), and is computed as such; the identity is tested against the
direct difference.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from metalab.metalearn.adapt import LeapConfig, LossFn
from metalab.metalearn.leap import leap, leap_meta_grad
from metalab.metalearn.learner import MetaLearner

PyTree = Any
__all__ = ["REPTILE_AS_LEAP", "reptile", "reptile_meta_grad"]

#: Leap's static choices under which its meta-gradient is Reptile's.
REPTILE_AS_LEAP = LeapConfig(use_loss=False, normalise=False, stabilise=False)


def reptile_meta_grad(params: PyTree, tasks: Any, **inner: Any) -> tuple[jnp.ndarray, PyTree]:
    """Reptile's meta-gradient :math:`\\mathbb{E}_\\tau(\\theta_0 - \\theta_K)` over a task batch.

    ``inner`` are :func:`~metalab.metalearn.leap.leap_meta_grad`'s ``loss_fn``, ``inner_lr``
    and ``num_steps``. Returns ``(mean last-step support loss, meta_grad)``.
    """
    return leap_meta_grad(params, tasks, config=REPTILE_AS_LEAP, **inner)


def reptile(loss_fn: LossFn, **kwargs: Any) -> MetaLearner:
    """Reptile as a :class:`~metalab.metalearn.learner.MetaLearner`: keyword arguments
    ``inner_lr``, ``num_steps``, ``outer`` as :func:`~metalab.metalearn.leap.leap` (it is
    Leap under :data:`REPTILE_AS_LEAP`). With ``outer=optax.sgd(beta)`` this is the paper's
    batched step :math:`\\theta_0 \\leftarrow \\theta_0 + \\beta\\,\\mathbb{E}_\\tau(\\theta_K -
    \\theta_0)`."""
    return leap(loss_fn, config=REPTILE_AS_LEAP, **kwargs)
