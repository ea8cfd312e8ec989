r"""Small functional networks for gradient-based meta-learning, with optional warp layers.

Parameters are plain pytrees (a tuple of ``{"w", "b"}`` dicts), so that an inner loop can
differentiate the *task* parameters while the *warp* parameters stay a separate pytree
(WarpGrad, Flennerhag et al. 2019). flax.linen could express the same network with two
variable collections, but a meta-learner then has to split and merge collections at every
inner step; a tuple of layers is the simplest pytree that jit/vmap/grad see directly.

Warped MLP (``warped_apply``), for task layers :math:`T_0, \dots, T_{L-1}` and warp layers
:math:`\Omega_0, \dots, \Omega_{M-1}` (``M <= L``):

.. math::
    h_0 = x, \qquad a_{l} = T_l(h_l) = h_l W_l + b_l, \qquad
    h_{l+1} = \Omega_l(\sigma(a_l)) \;(l < M), \qquad \text{output} = a_{L-1}
    \text{ (or } \Omega_{L-1}(a_{L-1}) \text{ if } M = L).

:math:`\sigma` is ReLU on hidden layers and the identity on the last task layer. Warp layers
are linear, ``\Omega(h) = h V + c``, initialised to the identity, so a freshly initialised
warped network computes the same function as the plain MLP.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

Layer = dict[str, jnp.ndarray]
Params = tuple[Layer, ...]


def _check_sizes(sizes: Sequence[int]) -> None:
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list >= 2 positive layer widths, got {tuple(sizes)}")


def mlp_init(key: jax.Array, sizes: Sequence[int], dtype: Any = jnp.float32) -> Params:
    """He-initialised MLP parameters for layer widths ``sizes`` (input first, output last).

    Args:
      key: PRNG key.
      sizes: e.g. ``(1, 40, 40, 1)``.
      dtype: parameter dtype.

    Returns:
      A tuple of ``{"w": (n_in, n_out), "b": (n_out,)}`` layers.
    """
    _check_sizes(sizes)
    keys = jax.random.split(key, len(sizes) - 1)
    layers = []
    for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True):
        w = jax.random.normal(k, (n_in, n_out), dtype) * jnp.sqrt(2.0 / n_in).astype(dtype)
        layers.append({"w": w, "b": jnp.zeros((n_out,), dtype)})
    return tuple(layers)


def mlp_apply(params: Params, x: jnp.ndarray) -> jnp.ndarray:
    """Apply an MLP: ReLU on hidden layers, linear output. ``x`` is ``(..., n_in)``."""
    h = x
    for i, layer in enumerate(params):
        h = h @ layer["w"] + layer["b"]
        if i < len(params) - 1:
            h = jax.nn.relu(h)
    return h


def warp_init(sizes: Sequence[int], dtype: Any = jnp.float32) -> Params:
    """Identity-initialised linear warp layers, one of width ``n`` per entry of ``sizes``."""
    if any(int(s) < 1 for s in sizes):
        raise ValueError(f"warp widths must be positive, got {tuple(sizes)}")
    return tuple({"w": jnp.eye(n, dtype=dtype), "b": jnp.zeros((n,), dtype)} for n in sizes)


def warped_init(
    key: jax.Array, sizes: Sequence[int], *, warp_output: bool = False, dtype: Any = jnp.float32
) -> tuple[Params, Params]:
    """Task layers of an MLP plus identity warp layers after each hidden task layer.

    Args:
      key: PRNG key for the task layers (warp layers are deterministic: the identity).
      sizes: task-layer widths, input first.
      warp_output: also put a warp layer after the output task layer.

    Returns:
      ``(task_params, warp_params)``.
    """
    task = mlp_init(key, sizes, dtype)
    widths = list(sizes[1:-1]) + ([sizes[-1]] if warp_output else [])
    return task, warp_init(widths, dtype)


def warped_apply(task: Params, warp: Params, x: jnp.ndarray) -> jnp.ndarray:
    """Apply task layers interleaved with warp layers (see the module docstring)."""
    if len(warp) > len(task):
        raise ValueError(f"{len(warp)} warp layers for {len(task)} task layers: at most one each")
    h = x
    for i, layer in enumerate(task):
        h = h @ layer["w"] + layer["b"]
        if i < len(task) - 1:
            h = jax.nn.relu(h)
        if i < len(warp):
            h = h @ warp[i]["w"] + warp[i]["b"]
    return h


def mse(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """Squared error of one example (summed over output dims): ``sum((pred - target)**2)``."""
    return jnp.sum(jnp.square(pred - target))


def cross_entropy(logits: jnp.ndarray, label: jnp.ndarray) -> jnp.ndarray:
    """Softmax cross-entropy of one example with an integer label."""
    return -jax.nn.log_softmax(logits)[label]


def batch_loss(per_example, pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """Mean of a one-example loss over a batch (vmapped over the leading axis)."""
    return jnp.mean(jax.vmap(per_example)(pred, target))


def accuracy(logits: jnp.ndarray, labels: jnp.ndarray) -> jnp.ndarray:
    """Fraction of argmax predictions equal to the integer labels."""
    return jnp.mean(jnp.argmax(logits, axis=-1) == labels)
