r"""WarpGrad: meta-learning with warped gradient descent (Flennerhag, Rusu, Pascanu, Visin,
Yin & Hadsell, ICLR 2020, arXiv:1909.00025).

A warped model interleaves *task layers* :math:`\theta` (adapted in the inner loop) with
*warp layers* :math:`\phi` (meta-learned, fixed in the inner loop); see
:func:`metalab.metalearn.nets.warped_apply`. Plain SGD on :math:`\theta` through the warp
layers is preconditioned gradient descent: for a linear warp :math:`\Omega(h) = hV` after a
linear task layer :math:`h = xW`, the effective map :math:`M = WV` follows
:math:`M \leftarrow M - \alpha\, \nabla_M \mathcal{L}\, V^\top V`, i.e. GD preconditioned by
:math:`V^\top V` (in the column convention :math:`z = V^\top W^\top x` of the paper, by
:math:`P P^\top` with :math:`P = V^\top`), tested.

Warp parameters are meta-learned with the one-step objective over a replay buffer of
task-parameter snapshots :math:`\theta \sim p(\theta \mid \tau)` (no backpropagation through
the inner loop, so memory is flat in K):

.. math:: L(\phi) = \mathbb{E}_{\tau}\, \mathbb{E}_{\theta \sim p(\theta|\tau)}\,
    \mathcal{L}\big(\theta - \alpha \nabla_\theta \mathcal{L}(\theta, \phi; S_\tau),\,
    \phi;\, Q_\tau\big), \qquad \theta \text{ treated as a constant}.

The initialisation :math:`\theta_0` is meta-learned alongside with any initialisation
objective: Leap's (Warp-Leap), MAML's (Warp-MAML), Reptile's, or none. All signs: losses are
minimised; meta-gradients are applied with optax (descent).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metalab.metalearn.adapt import LeapOptions, adapt
from metalab.metalearn.tasks import Task

PyTree = Any
WarpLossFn = Callable[[PyTree, PyTree, Any], jnp.ndarray]
INIT_METHODS = ("leap", "maml", "reptile", "none")


class ReplayBuffer(NamedTuple):
    """Fixed-capacity ring buffer of task-parameter snapshots and their tasks.

    Attributes:
      params: snapshot task parameters, leaves ``(capacity, ...)``.
      tasks: the task each snapshot came from, leaves ``(capacity, ...)``.
      size: number of valid entries (int32 scalar).
      ptr: next write position (int32 scalar).
    """

    params: PyTree
    tasks: Task
    size: jnp.ndarray
    ptr: jnp.ndarray


def buffer_init(params: PyTree, task: Task, capacity: int) -> ReplayBuffer:
    """An empty buffer shaped like one ``params`` snapshot and one (unbatched) ``task``."""
    if int(capacity) < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    z = lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.result_type(x))
    return ReplayBuffer(jax.tree.map(z, params), jax.tree.map(z, task), jnp.int32(0), jnp.int32(0))


def buffer_add(buf: ReplayBuffer, params: PyTree, tasks: Task) -> ReplayBuffer:
    """Write ``n`` snapshots (leading axis n on both ``params`` and ``tasks``) into the ring."""
    cap = jax.tree.leaves(buf.params)[0].shape[0]
    n = jax.tree.leaves(params)[0].shape[0]
    if n > cap:
        raise ValueError(f"adding {n} snapshots to a buffer of capacity {cap}")
    idx = (buf.ptr + jnp.arange(n)) % cap
    put = lambda b, x: b.at[idx].set(lax.stop_gradient(x))
    return ReplayBuffer(
        jax.tree.map(put, buf.params, params),
        jax.tree.map(put, buf.tasks, tasks),
        jnp.minimum(buf.size + n, cap).astype(jnp.int32),
        ((buf.ptr + n) % cap).astype(jnp.int32),
    )


def buffer_sample(buf: ReplayBuffer, key: jax.Array, n: int) -> tuple[PyTree, Task]:
    """Sample ``n`` entries uniformly (with replacement) among the valid ones."""
    i = jax.random.randint(key, (n,), 0, jnp.maximum(buf.size, 1))
    take = lambda x: x[i]
    return jax.tree.map(take, buf.params), jax.tree.map(take, buf.tasks)


def warp_objective(
    warp: PyTree,
    params: PyTree,
    tasks: Task,
    *,
    warp_loss_fn: WarpLossFn,
    inner_lr: float,
) -> jnp.ndarray:
    """WarpGrad's one-step objective averaged over snapshots (differentiate in ``warp``).

    Args:
      warp: warp parameters :math:`\\phi`.
      params: snapshots :math:`\\theta`, leaves with a leading sample axis (held constant).
      tasks: the matching tasks (leading sample axis).
      warp_loss_fn: ``warp_loss_fn(task_params, warp_params, (x, y)) -> scalar``.
      inner_lr: the inner step size :math:`\\alpha`.

    Returns:
      Mean query loss after one warped SGD step from each snapshot.
    """

    def one(theta, task):
        theta = lax.stop_gradient(theta)
        g = jax.grad(warp_loss_fn)(theta, warp, task.support)
        stepped = jax.tree.map(lambda p, gi: p - inner_lr * gi, theta, g)
        return warp_loss_fn(stepped, warp, task.query)

    return jnp.mean(jax.vmap(one)(params, tasks))


class WarpGradState(NamedTuple):
    """WarpGrad meta-learner state.

    Attributes:
      init: the task-parameter initialisation :math:`\\theta_0`.
      warp: the warp parameters :math:`\\phi`.
      init_opt_state, warp_opt_state: the two outer optimisers' states.
      buffer: the replay buffer of snapshots.
    """

    init: PyTree
    warp: PyTree
    init_opt_state: optax.OptState
    warp_opt_state: optax.OptState
    buffer: ReplayBuffer


def warpgrad_init(
    init: PyTree,
    warp: PyTree,
    example_task: Task,
    *,
    init_optimizer: optax.GradientTransformation,
    warp_optimizer: optax.GradientTransformation,
    capacity: int,
) -> WarpGradState:
    """Initial state; ``example_task`` is one unbatched task fixing the buffer's shapes."""
    return WarpGradState(
        init,
        warp,
        init_optimizer.init(init),
        warp_optimizer.init(warp),
        buffer_init(init, example_task, capacity),
    )


def _init_grad_and_snapshots(
    init,
    warp,
    tasks,
    *,
    warp_loss_fn,
    init_method,
    inner_lr,
    num_steps,
    num_snapshots,
    leap_options,
):
    """Per-task init meta-gradient (by ``init_method``) and S snapshots, vmapped over tasks."""
    phi = lax.stop_gradient(warp)
    loss_fn = lambda theta, b: warp_loss_fn(theta, phi, b)

    def one(task):
        if init_method == "maml":

            def query_loss(p0):
                res = adapt(
                    loss_fn,
                    p0,
                    task.support,
                    inner_lr=inner_lr,
                    num_steps=num_steps,
                    num_snapshots=num_snapshots,
                )
                return loss_fn(res.params, task.query), res

            (_, res), g = jax.value_and_grad(query_loss, has_aux=True)(init)
        else:
            p0 = lax.stop_gradient(init)
            res = adapt(
                loss_fn,
                p0,
                task.support,
                inner_lr=inner_lr,
                num_steps=num_steps,
                num_snapshots=num_snapshots,
                leap=leap_options if init_method == "leap" else None,
            )
            if init_method == "leap":
                g = res.leap_grad
            elif init_method == "reptile":
                g = jax.tree.map(jnp.subtract, p0, res.params)
            else:
                g = jax.tree.map(jnp.zeros_like, p0)
        return res.losses[-1], g, res.snapshots

    return jax.vmap(one)(tasks)


def warpgrad_update(
    state: WarpGradState,
    key: jax.Array,
    tasks: Task,
    *,
    warp_loss_fn: WarpLossFn,
    init_optimizer: optax.GradientTransformation,
    warp_optimizer: optax.GradientTransformation,
    inner_lr: float,
    num_steps: int,
    init_method: str = "leap",
    num_snapshots: int = 4,
    warp_batch: int = 32,
    leap_options: LeapOptions = LeapOptions(),
) -> tuple[WarpGradState, dict[str, jnp.ndarray]]:
    """One WarpGrad meta-step on a batch of tasks.

    1. Adapt each task's parameters from ``init`` for ``num_steps`` warped SGD steps, keeping
       ``num_snapshots`` snapshots, and compute the initialisation meta-gradient
       (``init_method``: ``"leap"`` = Warp-Leap, ``"maml"`` = Warp-MAML, ``"reptile"``,
       ``"none"``).
    2. Push the snapshots (with their tasks) into the replay buffer.
    3. Sample ``warp_batch`` snapshots and take one optimiser step on
       :func:`warp_objective` for the warp parameters.

    Returns:
      ``(new_state, info)`` with ``info["task_loss"]`` (last inner-step support loss) and
      ``info["warp_loss"]`` (the one-step objective before the update).
    """
    if init_method not in INIT_METHODS:
        raise ValueError(f"init_method must be one of {INIT_METHODS}, got {init_method!r}")
    losses, g_init, snaps = _init_grad_and_snapshots(
        state.init,
        state.warp,
        tasks,
        warp_loss_fn=warp_loss_fn,
        init_method=init_method,
        inner_lr=inner_lr,
        num_steps=num_steps,
        num_snapshots=num_snapshots,
        leap_options=leap_options,
    )
    g_init = jax.tree.map(lambda d: jnp.mean(d, axis=0), g_init)
    n_tasks = losses.shape[0]
    n_snap = jax.tree.leaves(snaps)[0].shape[1]
    flat = jax.tree.map(lambda s: s.reshape((n_tasks * n_snap,) + s.shape[2:]), snaps)
    rep = jax.tree.map(lambda t: jnp.repeat(t, n_snap, axis=0), tasks)
    buf = buffer_add(state.buffer, flat, rep)
    sp, st = buffer_sample(buf, key, warp_batch)
    w_loss, g_warp = jax.value_and_grad(warp_objective)(
        state.warp, sp, st, warp_loss_fn=warp_loss_fn, inner_lr=inner_lr
    )
    up_i, init_os = init_optimizer.update(g_init, state.init_opt_state, state.init)
    up_w, warp_os = warp_optimizer.update(g_warp, state.warp_opt_state, state.warp)
    new = WarpGradState(
        optax.apply_updates(state.init, up_i),
        optax.apply_updates(state.warp, up_w),
        init_os,
        warp_os,
        buf,
    )
    return new, {"task_loss": jnp.mean(losses), "warp_loss": w_loss}
