r"""Small functional networks for gradient-based meta-learning, with optional warp layers.

Parameters are plain pytrees (a tuple of layer dicts), so that an inner loop differentiates
the *task* parameters while the *warp* parameters stay a separate pytree (WarpGrad,
Flennerhag et al. 2020). A tuple of layers is the simplest pytree jit/vmap/grad see directly.

Warped networks interleave task layers :math:`T_l` (adapted in the inner loop) with warp
layers :math:`\Omega_l` (meta-learned, fixed during adaptation):

.. math:: h_{l+1} = \Omega_l(\sigma(T_l(h_l))), \qquad \text{output} = T_{L-1}(h_{L-1})
    \;(\text{or } \Omega_{L-1}(T_{L-1}(h_{L-1})) \text{ with a warp on the output}).

Warp layers (``kind``):

* ``"linear"``: :math:`\Omega(h) = hV + c`, identity-initialised. SGD through it is gradient
  descent preconditioned by :math:`V^\top V` (tested); the paper's special case.
* ``"residual"`` (default): the paper's non-linear warp, a residual block
  :math:`\Omega(h) = h + \mathrm{relu}(hU + a)V + c` with :math:`V = 0, c = 0` at
  initialisation, so a fresh warped network computes the plain network's function while the
  preconditioning it induces, :math:`\partial\Omega/\partial h = I + U\,\mathrm{diag}(
  \mathrm{relu}'(hU + a))V`, depends on the activations (it varies over the joint
  task-parameter space, as the paper's warps do).
* Convolutional networks (:func:`convnet_init`) use the convolutional version:
  :math:`\Omega(h) = h + \mathrm{conv}_{1\times1}(\mathrm{relu}(\mathrm{conv}_{3\times3}(h; U)
  + a); V) + c`, also identity at initialisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

Layer = dict[str, jnp.ndarray]
Params = tuple[Layer, ...]
WARP_KINDS = ("linear", "residual")

__all__ = [
    "WARP_KINDS",
    "accuracy",
    "batch_loss",
    "convnet_apply",
    "convnet_init",
    "cross_entropy",
    "mlp_apply",
    "mlp_init",
    "mse",
    "warp_init",
    "warped_apply",
    "warped_init",
]


def _check_sizes(sizes: Sequence[int]) -> None:
    if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
        raise ValueError(f"sizes must list >= 2 positive layer widths, got {tuple(sizes)}")


def _he(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype: Any) -> jnp.ndarray:
    return jax.random.normal(key, shape, dtype) * jnp.sqrt(2.0 / fan_in).astype(dtype)


def mlp_init(key: jax.Array, sizes: Sequence[int], dtype: Any = jnp.float32) -> Params:
    """He-initialised MLP parameters for layer widths ``sizes`` (input first, output last).

    Returns:
      A tuple of ``{"w": (n_in, n_out), "b": (n_out,)}`` layers.
    """
    _check_sizes(sizes)
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple(
        {"w": _he(k, (n_in, n_out), n_in, dtype), "b": jnp.zeros((n_out,), dtype)}
        for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:], strict=True)
    )


def mlp_apply(params: Params, x: jnp.ndarray) -> jnp.ndarray:
    """Apply an MLP: ReLU on hidden layers, linear output. ``x`` is ``(..., n_in)``."""
    return warped_apply(params, (), x)


def warp_init(
    key: jax.Array, widths: Sequence[int], *, kind: str = "residual", dtype: Any = jnp.float32
) -> Params:
    """Identity-at-initialisation warp layers, one of width ``n`` per entry of ``widths``.

    ``kind="linear"``: ``{"w": I, "b": 0}``; ``kind="residual"``: ``{"u": He (n, n), "a": 0,
    "v": 0 (n, n), "c": 0}``.
    """
    if kind not in WARP_KINDS:
        raise ValueError(f"warp kind must be one of {WARP_KINDS}, got {kind!r}")
    if any(int(s) < 1 for s in widths):
        raise ValueError(f"warp widths must be positive, got {tuple(widths)}")
    if kind == "linear":
        return tuple({"w": jnp.eye(n, dtype=dtype), "b": jnp.zeros((n,), dtype)} for n in widths)
    keys = jax.random.split(key, max(len(widths), 1))
    return tuple(
        {
            "u": _he(k, (n, n), n, dtype),
            "a": jnp.zeros((n,), dtype),
            "v": jnp.zeros((n, n), dtype),
            "c": jnp.zeros((n,), dtype),
        }
        for k, n in zip(keys, widths, strict=False)
    )


def _warp(layer: Layer, h: jnp.ndarray) -> jnp.ndarray:
    if "w" in layer:  # linear
        return h @ layer["w"] + layer["b"]
    return h + jax.nn.relu(h @ layer["u"] + layer["a"]) @ layer["v"] + layer["c"]


def warped_init(
    key: jax.Array,
    sizes: Sequence[int],
    *,
    kind: str = "residual",
    warp_output: bool = False,
    dtype: Any = jnp.float32,
) -> tuple[Params, Params]:
    """Task layers of an MLP plus identity-initialised warp layers after each hidden layer.

    Returns:
      ``(task_params, warp_params)``.
    """
    k_t, k_w = jax.random.split(key)
    task = mlp_init(k_t, sizes, dtype)
    widths = list(sizes[1:-1]) + ([sizes[-1]] if warp_output else [])
    return task, warp_init(k_w, widths, kind=kind, dtype=dtype)


def warped_apply(task: Params, warp: Params, x: jnp.ndarray) -> jnp.ndarray:
    """Apply MLP task layers interleaved with warp layers (see the module docstring)."""
    if len(warp) > len(task):
        raise ValueError(f"{len(warp)} warp layers for {len(task)} task layers: at most one each")
    h = x
    for i, layer in enumerate(task):
        h = h @ layer["w"] + layer["b"]
        if i < len(task) - 1:
            h = jax.nn.relu(h)
        if i < len(warp):
            h = _warp(warp[i], h)
    return h


# ------------------------------------------------------------------------------ convnets


def _conv(h: jnp.ndarray, w: jnp.ndarray) -> jnp.ndarray:
    """Stride-1 "SAME" convolution of NHWC ``h`` with an HWIO kernel ``w`` of odd size, written
    as shifted views and one matmul (im2col) rather than ``lax.conv_general_dilated``.

    Why not the library convolution: the meta-learners vmap this network over tasks (and seeds,
    and selection candidates) with a *different kernel per task*. vmap turns a convolution with
    a batched kernel into a grouped convolution, which XLA's CPU backend runs about two orders
    of magnitude slower than the same work as a batched matmul (measured: a 5-step second-order
    MAML meta-iteration of 8 tasks took 1.8 s). The matmul form batches cleanly and its first
    and second derivatives are matmuls and slices. Equal to ``lax.conv_general_dilated`` to
    float rounding (tested).
    """
    kh, kw, c_in, c_out = w.shape
    if kh == kw == 1:
        return h @ w.reshape(c_in, c_out)
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"_conv: odd kernel sizes only, got {kh}x{kw}")
    height, width = h.shape[-3], h.shape[-2]
    p = jnp.pad(h, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
    cols = jnp.concatenate(
        [p[:, i : i + height, j : j + width, :] for i in range(kh) for j in range(kw)], axis=-1
    )
    return cols @ w.reshape(kh * kw * c_in, c_out)


def _max_pool2(h: jnp.ndarray) -> jnp.ndarray:
    """2x2 max-pool, stride 2, of NHWC ``h`` (even sides) as a reshape and a max: vmaps and
    differentiates twice without ``select_and_scatter``."""
    n, height, width, c = h.shape
    return h.reshape(n, height // 2, 2, width // 2, 2, c).max(axis=(2, 4))


def convnet_init(
    key: jax.Array,
    *,
    image: int = 8,
    channels: Sequence[int] = (16, 16),
    num_classes: int = 5,
    warp: bool = True,
    dtype: Any = jnp.float32,
) -> tuple[Params, Params]:
    """A convnet for ``image x image`` grey images: blocks of 3x3 conv + ReLU (+ conv warp) +
    2x2 max-pool, then a dense output layer.

    Returns:
      ``(task_params, warp_params)``; ``warp_params`` is ``()`` when ``warp=False``.
    """
    if image % (2 ** len(channels)):
        raise ValueError(f"image size {image} is not divisible by 2**{len(channels)} pools")
    keys = jax.random.split(key, 2 * len(channels) + 1)
    task, warps, c_in = [], [], 1
    for i, c in enumerate(channels):
        task.append(
            {"w": _he(keys[i], (3, 3, c_in, c), 9 * c_in, dtype), "b": jnp.zeros((c,), dtype)}
        )
        warps.append(
            {
                "u": _he(keys[len(channels) + i], (3, 3, c, c), 9 * c, dtype),
                "a": jnp.zeros((c,), dtype),
                "v": jnp.zeros((1, 1, c, c), dtype),
                "c": jnp.zeros((c,), dtype),
            }
        )
        c_in = c
    side = image // 2 ** len(channels)
    n_flat = side * side * c_in
    task.append(
        {
            "w": _he(keys[-1], (n_flat, num_classes), n_flat, dtype),
            "b": jnp.zeros((num_classes,), dtype),
        }
    )
    return tuple(task), tuple(warps) if warp else ()


def convnet_apply(task: Params, warp: Params, x: jnp.ndarray) -> jnp.ndarray:
    """Apply a (warped) convnet to flat images ``x`` of shape ``(n, image * image)``."""
    side = int(round(x.shape[-1] ** 0.5))
    h = x.reshape((-1, side, side, 1))
    for i, layer in enumerate(task[:-1]):
        h = jax.nn.relu(_conv(h, layer["w"]) + layer["b"])
        if i < len(warp):
            w = warp[i]
            h = h + _conv(jax.nn.relu(_conv(h, w["u"]) + w["a"]), w["v"]) + w["c"]
        h = _max_pool2(h)
    h = h.reshape((h.shape[0], -1))
    return (h @ task[-1]["w"] + task[-1]["b"]).reshape(x.shape[:-1] + (-1,))


# ------------------------------------------------------------------------------ losses


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
