"""On-device uniform replay buffer (a ring buffer of pytrees), jit/vmap/scan compatible.

Same semantics as bsuite's ``baselines.utils.replay.Replay``: fixed capacity, the oldest item
is overwritten once full, and ``sample`` draws ``batch_size`` indices uniformly *with
replacement* from the items stored so far. Unlike bsuite's numpy buffer it lives in JAX arrays,
so an agent's whole training loop (acting, storing, sampling, learning) is one ``lax.scan``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class ReplayState(NamedTuple):
    """Replay contents.

    Attributes:
      data: pytree of arrays with leading axis ``capacity``.
      pos: next slot to write.
      size: number of valid items (``<= capacity``).
    """

    data: Any
    pos: jax.Array
    size: jax.Array


def init(example: Any, capacity: int) -> ReplayState:
    """An empty buffer for items shaped like ``example`` (a pytree of arrays or scalars).

    Args:
      example: one item; only its shapes and dtypes are used.
      capacity: maximum number of items (>= 1).
    """
    if int(capacity) < 1:
        raise ValueError(f"replay: capacity must be >= 1, got {capacity}")
    data = jax.tree.map(
        lambda x: jnp.zeros((int(capacity), *jnp.shape(x)), jnp.asarray(x).dtype), example
    )
    return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def capacity(state: ReplayState) -> int:
    """Static capacity of the buffer."""
    return jax.tree.leaves(state.data)[0].shape[0]


def add(state: ReplayState, item: Any) -> ReplayState:
    """Store one item at ``pos`` (overwriting the oldest once full)."""
    cap = capacity(state)
    data = jax.tree.map(lambda buf, x: buf.at[state.pos].set(x), state.data, item)
    return ReplayState(data, (state.pos + 1) % cap, jnp.minimum(state.size + 1, cap))


def sample(state: ReplayState, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` items drawn uniformly with replacement from the stored ones.

    An empty buffer returns slot 0 (zeros); callers gate learning on ``state.size``.
    """
    idx = jax.random.randint(key, (int(batch_size),), 0, jnp.maximum(state.size, 1))
    return jax.tree.map(lambda buf: buf[idx], state.data)
