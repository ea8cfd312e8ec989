"""Pytree helpers.

Arithmetic on pytrees comes from :mod:`optax.tree_utils` (re-exported here so that method code
has one import); this module adds only what optax does not have: stacking and indexing along a
leading axis, flattening to a vector, and finiteness checks used by the lab's NaN guard.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from optax.tree_utils import (  # noqa: F401  (re-exports)
    tree_add,
    tree_add_scale,
    tree_norm,
    tree_scale,
    tree_sub,
    tree_vdot,
    tree_where,
    tree_zeros_like,
)

PyTree = Any


def tree_stack(trees: list[PyTree]) -> PyTree:
    """Stack a list of same-structure pytrees along a new leading axis."""
    if not trees:
        raise ValueError("tree_stack needs at least one tree")
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def tree_index(tree: PyTree, i) -> PyTree:
    """Select entry ``i`` of the leading axis of every leaf."""
    return jax.tree.map(lambda x: x[i], tree)


def tree_flatten_vector(tree: PyTree) -> jnp.ndarray:
    """Concatenate all leaves into one 1-d vector (see ``jax.flatten_util`` for the inverse)."""
    return jax.flatten_util.ravel_pytree(tree)[0]


def tree_sq_norm(tree: PyTree) -> jnp.ndarray:
    """Sum of squares of all leaves."""
    return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))


def tree_all_finite(tree: PyTree) -> jnp.ndarray:
    """True iff every element of every leaf is finite (jit-compatible)."""
    leaves = jax.tree.leaves(tree)
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def first_nonfinite(metrics: dict[str, Any]) -> tuple[str, int] | None:
    """Find the first non-finite value in a metrics dict (numpy, host side).

    Returns ``(key, step)`` where ``step`` is the first index along the leading axis of a curve
    that holds a NaN/Inf (0 for scalars), or None if everything is finite.
    """
    for key in sorted(metrics):
        a = np.asarray(metrics[key])
        if a.dtype.kind not in "fc":
            continue
        bad = ~np.isfinite(a)
        if bad.any():
            if a.ndim == 0:
                return key, 0
            per_step = bad.reshape(a.shape[0], -1).any(axis=1)
            return key, int(np.argmax(per_step))
    return None
