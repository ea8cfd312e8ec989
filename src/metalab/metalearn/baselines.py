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
from metalab.metalearn.learner import MetaLearner, from_meta_grad
from metalab.metalearn.tasks import Task

PyTree = Any
__all__ = ["pretrain", "scratch"]


def pretrain(
    loss_fn: LossFn,
    *,
    inner_lr: float | jnp.ndarray | None = None,
    num_steps: int | None = None,
    outer: optax.GradientTransformation = optax.adam(1e-3),
) -> MetaLearner:
    """Multi-task pretraining on the pooled support and query data of each task batch.

    ``inner_lr`` and ``num_steps`` are accepted so that every factory has one signature;
    pretraining has no inner loop and ignores them.
    """
    del inner_lr, num_steps

    def meta_grad(params, key, tasks: Task):
        del key

        def pooled(p):
            per = jax.vmap(lambda t: 0.5 * (loss_fn(p, t.support) + loss_fn(p, t.query)))(tasks)
            return jnp.mean(per)

        loss, g = jax.value_and_grad(pooled)(params)
        return loss, g, {}

    return from_meta_grad(meta_grad, outer)


def scratch(
    loss_fn: LossFn,
    *,
    inner_lr: float | jnp.ndarray | None = None,
    num_steps: int | None = None,
    outer: optax.GradientTransformation = optax.adam(1e-3),
) -> MetaLearner:
    """No pretraining: the meta-gradient is zero and the update is the identity (the outer
    optimiser is never applied, so its state stays as initialised). ``info["loss"]`` is the
    mean support loss at the initialisation."""
    del inner_lr, num_steps
    learner = from_meta_grad(lambda p, k, t: (jnp.zeros(()), otu.tree_zeros_like(p), {}), outer)

    def update(state, key, tasks: Task):
        loss = jnp.mean(jax.vmap(lambda t: loss_fn(state.params, t.support))(tasks))
        return state, {"loss": loss}

    return learner._replace(update=update)
