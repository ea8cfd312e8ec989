"""Ensembles of small Q-networks whose first layer is a table lookup on a one-hot input.

For a one-hot observation ``x = e_i`` (Deep Sea's grid, any tabular state), a dense first
layer ``x @ W + b`` equals ``W[i] + b``: a gather of one row instead of an ``n x H`` matmul.
The networks here take the integer index ``i`` (``i = n`` means the all-zero observation, e.g.
Deep Sea's terminal null observation, whose first-layer pre-activation is just ``b``) and are
otherwise MLPs with ReLU. Parameters of an ensemble are stacked on a leading member axis and
applied with ``jax.vmap``.

Plain JAX rather than flax.linen: the lookup-with-null-row layer, the stacked-member layout
and a precomputed prior table are simpler to express (and to match haiku's initialiser, which
bsuite's agents use) as explicit arrays.

Initialisation matches ``haiku.Linear``'s default (bsuite's baselines): weights from a normal
truncated at two standard deviations with std ``1 / sqrt(fan_in)`` (``fan_in = n`` for the
lookup layer, the width of the one-hot input), biases zero.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Params = dict[str, jax.Array]


def init_lookup_mlp(
    key: jax.Array, num_cells: int, hidden: Sequence[int], num_outputs: int
) -> Params:
    """Parameters of one lookup-MLP ``num_cells -> hidden... -> num_outputs``.

    Args:
      key: PRNG key.
      num_cells: width ``n`` of the one-hot input (number of table rows).
      hidden: hidden layer widths (at least one).
      num_outputs: output width (number of actions).

    Returns:
      ``{"w0": [n, H1], "b0": [H1], "w1": [H1, H2], "b1": ..., "wL": [H_L, A], "bL": [A]}``.
    """
    hidden = tuple(int(h) for h in hidden)
    if num_cells < 1 or num_outputs < 1 or not hidden or min(hidden) < 1:
        raise ValueError(
            "lookup MLP: num_cells, num_outputs and every hidden width must be >= 1 and hidden "
            f"non-empty; got num_cells={num_cells}, hidden={hidden}, num_outputs={num_outputs}"
        )
    sizes = (int(num_cells), *hidden, int(num_outputs))
    keys = jax.random.split(key, len(sizes) - 1)
    params = {}
    for i, (k, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:], strict=True)):
        std = 1.0 / jnp.sqrt(fan_in)
        params[f"w{i}"] = std * jax.random.truncated_normal(k, -2.0, 2.0, (fan_in, fan_out))
        params[f"b{i}"] = jnp.zeros((fan_out,))
    return params


def init_ensemble(
    key: jax.Array, num_members: int, num_cells: int, hidden: Sequence[int], num_outputs: int
) -> Params:
    """``num_members`` independent lookup-MLPs stacked on a leading axis."""
    if num_members < 1:
        raise ValueError(f"ensemble: num_members must be >= 1, got {num_members}")
    keys = jax.random.split(key, num_members)
    return jax.vmap(lambda k: init_lookup_mlp(k, num_cells, hidden, num_outputs))(keys)


def num_layers(params: Params) -> int:
    return len(params) // 2


def apply_lookup_mlp(params: Params, cell: jax.Array) -> jax.Array:
    """Outputs ``[num_outputs]`` of one member at integer input ``cell`` in ``[0, n]``.

    ``cell == n`` (out of the table) is the all-zero input: its first-layer row is zero.
    """
    h = params["w0"].at[cell].get(mode="fill", fill_value=0.0) + params["b0"]
    for i in range(1, num_layers(params)):
        h = jax.nn.relu(h)
        h = h @ params[f"w{i}"] + params[f"b{i}"]
    return h


def apply_member(
    params: Params, member: jax.Array, cell: jax.Array, cell_major: bool = False
) -> jax.Array:
    """Outputs of member ``member`` of a stacked ensemble at ``cell``, reading only the one
    first-layer row it needs (no copy of the member's table); equals
    ``apply_lookup_mlp(tree_map(lambda x: x[member], params), cell)``. ``cell_major``: the
    first-layer table is stored ``[cells, members, H]`` (boot_dqn's sparse agent) instead of
    ``[members, cells, H]``."""
    w0 = params["w0"]
    at = (cell, member) if cell_major else (member, cell)
    row = w0.at[at].get(mode="fill", fill_value=0.0)
    h = row + params["b0"][member]
    for i in range(1, num_layers(params)):
        h = jax.nn.relu(h)
        h = h @ params[f"w{i}"][member] + params[f"b{i}"][member]
    return h


def apply_dense_mlp(params: Params, x: jax.Array) -> jax.Array:
    """The same network on a dense (e.g. one-hot) input ``x`` of width ``n``: the reference."""
    h = x @ params["w0"] + params["b0"]
    for i in range(1, num_layers(params)):
        h = jax.nn.relu(h)
        h = h @ params[f"w{i}"] + params[f"b{i}"]
    return h


def full_table(params: Params, cells: np.ndarray | None = None) -> jax.Array:
    """Outputs at every input ``0..n`` (``n`` = null input) as dense matmuls: ``[n + 1, A]``.

    Same values as :func:`output_table` (every first-layer row, plus the zero row of the null
    input), computed as one batch of ``n + 1`` rows instead of ``n + 1`` gathers. ``cells``
    (optional, static, distinct, in ``0..n``): compute only those rows; the others are zero.
    """
    w0 = params["w0"]
    h = jnp.concatenate([w0, jnp.zeros((1, w0.shape[-1]), w0.dtype)])
    if cells is not None:
        h = h[np.asarray(cells)]
    h = h + params["b0"]
    for i in range(1, num_layers(params)):
        h = jax.nn.relu(h)
        h = h @ params[f"w{i}"] + params[f"b{i}"]
    if cells is None:
        return h
    return jnp.zeros((w0.shape[0] + 1, h.shape[-1]), h.dtype).at[np.asarray(cells)].set(h)


def output_table(params: Params, num_cells: int) -> jax.Array:
    """Outputs at every input ``0..n`` (``n`` = null input): ``[n + 1, num_outputs]``."""
    return jax.vmap(lambda c: apply_lookup_mlp(params, c))(jnp.arange(num_cells + 1))
