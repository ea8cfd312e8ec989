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
    idx = uniform_indices(key, jnp.maximum(state.size, 1), int(batch_size))
    return jax.tree.map(lambda buf: buf[idx], state.data)


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))  # Threefry-2x32's rotation schedule


def _threefry2x32(k0: jax.Array, k1: jax.Array, x0: jax.Array, x1: jax.Array):
    """Threefry-2x32 (20 rounds) of counters ``(x0, x1)`` under key ``(k0, k1)``, unrolled.

    The same hash as JAX's ``threefry2x32`` primitive, whose CPU lowering is a rolled loop (5
    iterations of 4 rounds): for a 128-item minibatch XLA-CPU ran the two loops of
    ``jax.random.randint`` as while loops of small kernels, ~25 us per environment step at
    bsuite's boot_dqn agent (~2% of its step). Written out, the 20 rounds are one elementwise
    fusion. Why not just ``randint``: that cost, in every agent's hot loop.
    """
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = ((x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))) ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def uniform_indices(key: jax.Array, maxval: jax.Array, num: int) -> jax.Array:
    """``jax.random.randint(key, (num,), 0, maxval)`` (int32, ``maxval >= 1``), bit for bit.

    For raw threefry keys with ``jax_threefry_partitionable`` (JAX's default) this replays
    ``randint``'s recipe (two 32-bit draws from a split key, combined modulo the span) with
    the unrolled hash of :func:`_threefry2x32`; any other key type or setting calls
    ``jax.random.randint`` itself. Tested equal to it.
    """
    raw = not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    threefry = jax.config.jax_default_prng_impl == "threefry2x32"
    if not (raw and threefry and jax.config.jax_threefry_partitionable):
        return jax.random.randint(key, (num,), 0, maxval)
    lo = jnp.arange(num, dtype=jnp.uint32)  # 64-bit counters 0..num-1 as (hi, lo) words
    hi = jnp.zeros_like(lo)

    def bits(k):
        b0, b1 = _threefry2x32(k[0], k[1], hi, lo)
        return b0 ^ b1

    k_hi, k_lo = jax.random.split(key)
    span = jnp.asarray(maxval, jnp.int32).astype(jnp.uint32)
    mult = jnp.uint32(2**16) % span
    mult = (mult * mult) % span  # 2^32 mod span
    offset = ((bits(k_hi) % span) * mult + bits(k_lo) % span) % span
    return offset.astype(jnp.int32)
