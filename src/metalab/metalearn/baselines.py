r"""Baselines for initialisation meta-learning: multi-task pretraining ("fine-tuning") and no
pretraining, as :class:`~metalab.metalearn.learner.MetaLearner` s like every method.

*Pretraining* (the fine-tuning baseline of Leap and MAML): train one set of parameters jointly
on the meta-training tasks by the pooled loss, then fine-tune it on each new task,

.. math:: \theta_0 \leftarrow \theta_0 - \beta\, \nabla_{\theta_0}\, \mathbb{E}_\tau\,
    \tfrac12\big(\mathcal{L}(\theta_0; S_\tau) + \mathcal{L}(\theta_0; Q_\tau)\big),

i.e. MAML with zero inner steps. *No pretraining* (``scratch``) starts every task from the
random initialisation: its update leaves the state as it is.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax import tree_utils as otu

from metalab.metalearn.adapt import LossFn
from metalab.metalearn.learner import MetaLearner, bind, from_meta_grad
from metalab.metalearn.tasks import Task

PyTree = Any
__all__ = ["pretrain", "pretrain_meta_grad", "scratch"]


def pretrain_meta_grad(
    params: PyTree, tasks: Task, *, loss_fn: LossFn
) -> tuple[jnp.ndarray, PyTree]:
    """The pooled loss over a task batch's support and query data, and its gradient."""

    def pooled(p):
        per = jax.vmap(lambda t: 0.5 * (loss_fn(p, t.support) + loss_fn(p, t.query)))(tasks)
        return jnp.mean(per)

    return jax.value_and_grad(pooled)(params)


def pretrain(
    loss_fn: LossFn, *, outer: optax.GradientTransformation = optax.adam(1e-3), **ignored: Any
) -> MetaLearner:
    """Multi-task pretraining on the pooled support and query data of each task batch.

    Other keyword arguments (``inner_lr``, ``num_steps``) are accepted so that every factory
    takes the same arguments; pretraining has no inner loop and ignores them.
    """
    return bind(pretrain_meta_grad, outer, loss_fn=loss_fn)


def scratch(loss_fn: LossFn, **kwargs: Any) -> MetaLearner:
    """No pretraining: the meta-gradient is zero and the update is the identity. The keyword
    arguments of every factory are accepted; ``outer`` (default Adam) only shapes the state,
    which stays as initialised. ``info["loss"]`` is the mean support loss at the
    initialisation."""
    outer = kwargs.get("outer", optax.adam(1e-3))
    zero = lambda p, k, t: (jnp.zeros(()), otu.tree_zeros_like(p), {})
    learner = from_meta_grad(zero, outer)

    def update(state, key, tasks: Task):
        loss = jnp.mean(jax.vmap(lambda t: loss_fn(state.params, t.support))(tasks))
        return state, {"loss": loss}

    return learner._replace(update=update)
