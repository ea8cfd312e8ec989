r"""Baselines for initialisation meta-learning: multi-task pretraining ("fine-tuning") and no
pretraining.

*Fine-tuning* (the baseline of Leap and MAML): pretrain one set of parameters jointly on the
meta-training tasks by SGD on the pooled loss, then fine-tune it on each new task,

.. math:: \theta_0 \leftarrow \theta_0 - \beta\, \nabla_{\theta_0}\, \mathbb{E}_\tau\,
    \mathcal{L}(\theta_0; S_\tau \cup Q_\tau),

i.e. MAML with zero inner steps. *No pretraining* starts every task from a fresh random
initialisation (nothing to learn; it is the identity here).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metalab.metalearn.adapt import LossFn
from metalab.metalearn.tasks import Task

PyTree = Any


class PretrainState(NamedTuple):
    """Pretraining state: the shared parameters and their optimiser state."""

    params: PyTree
    opt_state: optax.OptState


def pretrain_init(params: PyTree, optimizer: optax.GradientTransformation) -> PretrainState:
    """Initial pretraining state."""
    return PretrainState(params, optimizer.init(params))


def pretrain_update(
    state: PretrainState,
    tasks: Task,
    *,
    optimizer: optax.GradientTransformation,
    loss_fn: LossFn,
) -> tuple[PretrainState, jnp.ndarray]:
    """One joint-training step on the pooled support and query data of a task batch."""

    def pooled(p):
        per = jax.vmap(lambda t: 0.5 * (loss_fn(p, t.support) + loss_fn(p, t.query)))(tasks)
        return jnp.mean(per)

    loss, g = jax.value_and_grad(pooled)(state.params)
    updates, opt_state = optimizer.update(g, state.opt_state, state.params)
    return PretrainState(optax.apply_updates(state.params, updates), opt_state), loss


def no_pretraining(params: PyTree) -> PyTree:
    """The no-pretraining baseline: use the random initialisation as is."""
    return params
