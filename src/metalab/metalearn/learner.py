r"""The one protocol of :mod:`metalab.metalearn`: a method is a factory returning a
:class:`MetaLearner`.

.. code-block:: python

    learner = metalearn.leap(loss_fn, inner_lr=0.1, num_steps=100, outer=optax.adam(1e-3))
    state = learner.init(params, key)
    state, info = learner.update(state, key, tasks)   # same for every method

Every method is defined by its *meta-gradient*, ``meta_grad(params, key, tasks) -> (loss,
grads, info)``, a pure function of the meta-parameters (an initialisation, or an
initialisation and warp layers), a PRNG key and a batch of tasks (a
:class:`~metalab.metalearn.tasks.Task` with a leading task axis). :func:`from_meta_grad`
turns it into a learner whose outer optimiser, given once at construction, is any optax
``GradientTransformation``; the state is the same :class:`MetaState` for every method.
All signs: losses are minimised and meta-gradients are applied as gradients (descent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

PyTree = Any
MetaGradFn = Callable[[PyTree, jax.Array, Any], tuple[jnp.ndarray, PyTree, dict]]

__all__ = ["MetaLearner", "MetaState", "bind", "from_meta_grad", "meta_train", "task_mean"]


class MetaState(NamedTuple):
    """State of every meta-learner: the meta-parameters and the outer optimiser's state."""

    params: PyTree
    opt_state: optax.OptState


class MetaLearner(NamedTuple):
    """A meta-learning method as two pure functions (jit/vmap-compatible).

    Attributes:
      init: ``init(params, key) -> MetaState``.
      update: ``update(state, key, tasks) -> (state, info)``; ``info["loss"]`` is the
        method's monitoring loss before the update (a scalar), other entries are
        method-specific scalars.
      meta_grad: ``meta_grad(params, key, tasks) -> (loss, grads, info)``, the meta-gradient
        the update applies (for users who bring their own outer loop).
    """

    init: Callable[[PyTree, jax.Array], MetaState]
    update: Callable[[MetaState, jax.Array, Any], tuple[MetaState, dict]]
    meta_grad: MetaGradFn


def from_meta_grad(meta_grad: MetaGradFn, outer: optax.GradientTransformation) -> MetaLearner:
    """Build a :class:`MetaLearner` that applies ``meta_grad`` with the optimiser ``outer``."""

    def init(params: PyTree, key: jax.Array) -> MetaState:
        del key  # every current method's state is deterministic given params
        return MetaState(params, outer.init(params))

    def update(state: MetaState, key: jax.Array, tasks: Any) -> tuple[MetaState, dict]:
        loss, grads, info = meta_grad(state.params, key, tasks)
        updates, opt_state = outer.update(grads, state.opt_state, state.params)
        return MetaState(optax.apply_updates(state.params, updates), opt_state), {
            "loss": loss,
            **info,
        }

    return MetaLearner(init, update, meta_grad)


def bind(
    meta_grad_fn: Callable[..., tuple[jnp.ndarray, PyTree]],
    outer: optax.GradientTransformation,
    **kwargs: Any,
) -> MetaLearner:
    """A :class:`MetaLearner` whose meta-gradient is ``meta_grad_fn(params, tasks, **kwargs)
    -> (loss, grads)`` (a key-free method), applied with ``outer``."""

    def meta_grad(params: PyTree, key: jax.Array, tasks: Any):
        del key
        loss, grads = meta_grad_fn(params, tasks, **kwargs)
        return loss, grads, {}

    return from_meta_grad(meta_grad, outer)


def task_mean(fn: Callable[[Any], Any], tasks: Any) -> Any:
    """The mean over tasks of every leaf of ``fn(task)`` (vmapped over the task axis)."""
    return jax.tree.map(lambda d: jnp.mean(d, axis=0), jax.vmap(fn)(tasks))


def meta_train(
    learner: MetaLearner,
    params: PyTree,
    key: jax.Array,
    sample: Callable[[jax.Array], Any],
    *,
    num_iters: int,
    batch_size: int,
) -> tuple[MetaState, dict]:
    """Meta-train ``learner`` from ``params`` for ``num_iters`` updates (one ``lax.scan``).

    Args:
      learner: any :class:`MetaLearner`.
      params: initial meta-parameters.
      key: PRNG key (split for init, task draws and updates).
      sample: ``sample(key) -> Task`` draws one task; ``batch_size`` are vmapped per update.
      num_iters, batch_size: meta-iterations and tasks per meta-iteration.

    Returns:
      ``(final state, info)`` with every ``info`` entry stacked over iterations.
    """
    k_init, k_loop = jax.random.split(key)

    def body(state, k):
        k_t, k_u = jax.random.split(k)
        tasks = jax.vmap(sample)(jax.random.split(k_t, batch_size))
        return learner.update(state, k_u, tasks)

    return jax.lax.scan(body, learner.init(params, k_init), jax.random.split(k_loop, num_iters))
