"""Adaptive parameterisation: adaptive feed-forward layers and the aLSTM cell.

Reference: S. Flennerhag, H. Yin, J. Keane, M. Elliot (2018). *Breaking the Activation
Function Bottleneck through Adaptive Parameterization*. NeurIPS 2018, arXiv:1805.08574.

An adaptive feed-forward layer replaces the static affine map ``W x + b`` by one whose
parameters are rescaled, per unit, by an *adaptation policy* ``pi`` that reads a context::

    f(x; z) = D(tau) W D(pi) x + D(beta) b,      (pi, tau, beta) = 1 + P z   (AdaptiveDense)

``D(v)`` is the diagonal matrix of ``v``; ``pi`` scales the inputs (columns of ``W``), ``tau``
the outputs (rows of ``W``) and ``beta`` the bias. The aLSTM applies this to every term of the
LSTM pre-activation, with the context ``z_t`` produced by a small LSTM (the policy) that reads
``[x_t, h_{t-1}]``::

    (c^a_t, z_t) = LSTM_policy((c^a_{t-1}, z_{t-1}), [x_t, h_{t-1}])
    s_t = D(tau^x_t) W D(pi^x_t) x_t + D(tau^h_t) V D(pi^h_t) h_{t-1} + D(beta_t) b
    i, f, g, o = sigma(s^i), sigma(s^f), tanh(s^g), sigma(s^o)
    c_t = f * c_{t-1} + i * g,   h_t = o * tanh(c_t)

flax's ``LSTMCell`` sums its input and recurrent projections inside one call, so a custom
cell is needed to apply the scalings before that sum.

In the aLSTM the scalings are the *sub-policies* ``tanh(P z_t)``: a bias-free linear map of the
policy's output followed by ``tanh``, with ``P`` initialised like any dense layer (uniform,
scale ``1/sqrt(A)``), as in the authors' implementation; the adaptation policy therefore gets
gradients from the first step. ``W``/``V`` are orthogonal blocks and the forget-gate bias
starts at 1. :mod:`metalab.models.lm` has the same cell as pure functions with the paper's
regularisation (policy and hidden dropout, weight drop) inside a word-level LM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


class AdaptiveScales(NamedTuple):
    """Per-unit scaling vectors of one aLSTM step (all ones = a plain LSTM).

    Attributes:
      in_x: ``(..., d_in)`` input scaling ``pi^x`` applied before ``W``.
      out_x: ``(..., 4H)`` output scaling ``tau^x`` applied after ``W``.
      in_h: ``(..., H)`` input scaling ``pi^h`` applied to ``h_{t-1}`` before ``V``.
      out_h: ``(..., 4H)`` output scaling ``tau^h`` applied after ``V``.
      bias: ``(..., 4H)`` bias scaling ``beta``.
    Gate order along the ``4H`` axis is ``(i, f, g, o)``.
    """

    in_x: Array
    out_x: Array
    in_h: Array
    out_h: Array
    bias: Array


def unit_scales(d_in: int, hidden: int, batch_shape: tuple[int, ...] = ()) -> AdaptiveScales:
    """Scalings that are all one: with them an aLSTM step is a plain LSTM step."""
    one = lambda n: jnp.ones(batch_shape + (n,))
    return AdaptiveScales(one(d_in), one(4 * hidden), one(hidden), one(4 * hidden), one(4 * hidden))


def split_scales(flat: Array, d_in: int, hidden: int) -> AdaptiveScales:
    """Split a flat ``(..., d_in + 13 H)`` vector into :class:`AdaptiveScales`."""
    sizes = (d_in, 4 * hidden, hidden, 4 * hidden, 4 * hidden)
    if flat.shape[-1] != sum(sizes):
        raise ValueError(
            f"flat scalings have {flat.shape[-1]} entries; need d_in + 13 H = {sum(sizes)}"
        )
    idx, parts = 0, []
    for n in sizes:
        parts.append(flat[..., idx : idx + n])
        idx += n
    return AdaptiveScales(*parts)


def adaptive_lstm_step(
    w_x: Array,
    w_h: Array,
    b: Array,
    carry: tuple[Array, Array],
    x: Array,
    scales: AdaptiveScales,
    gate_fn: Callable[[Array], Array] = jax.nn.sigmoid,
    activation_fn: Callable[[Array], Array] = jnp.tanh,
) -> tuple[tuple[Array, Array], Array]:
    """One step of the adaptive LSTM given explicit scalings.

    ``s = tau^x * ((pi^x * x) W) + tau^h * ((pi^h * h) V) + beta * b``, gates ``(i, f, g, o)``.

    Args:
      w_x: ``(d_in, 4H)`` input kernel ``W``.
      w_h: ``(H, 4H)`` recurrent kernel ``V``.
      b: ``(4H,)`` bias.
      carry: ``(c, h)``, each ``(..., H)``.
      x: ``(..., d_in)`` input.
      scales: the step's :class:`AdaptiveScales`.

    Returns:
      ``((c_t, h_t), h_t)``.
    """
    c, h = carry
    s = (
        scales.out_x * ((scales.in_x * x) @ w_x)
        + scales.out_h * ((scales.in_h * h) @ w_h)
        + scales.bias * b
    )
    i, f, g, o = jnp.split(s, 4, axis=-1)
    new_c = gate_fn(f) * c + gate_fn(i) * activation_fn(g)
    new_h = gate_fn(o) * activation_fn(new_c)
    return (new_c, new_h), new_h


def _stacked_orthogonal(key: Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    """``(H, 4H)`` recurrent kernel made of four orthogonal ``(H, H)`` blocks (as flax's cell)."""
    hidden = shape[0]
    keys = jax.random.split(key, 4)
    blocks = [nn.initializers.orthogonal()(k, (hidden, hidden), dtype) for k in keys]
    return jnp.concatenate(blocks, axis=-1)


class ALSTMCell(nn.RNNCellBase):
    """The adaptive LSTM cell (aLSTM) of Flennerhag et al. (2018).

    Carry: ``(c, h, c_policy, z)``; output ``h``. The policy is a flax ``LSTMCell`` with
    ``adapt_features`` units reading ``[x_t, h_{t-1}]``; its output ``z_t`` is projected to the
    scalings ``tanh(P z_t)`` (see module docstring).

    Attributes:
      features: hidden size ``H`` of the main LSTM.
      adapt_features: hidden size ``A`` of the adaptation policy (small, e.g. ``H / 4``).
      scale_init: initialiser of the bias-free projection ``P`` (default: uniform with scale
        ``1/sqrt(A)``, the authors' choice).
    """

    features: int
    adapt_features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    recurrent_kernel_init: nn.initializers.Initializer = _stacked_orthogonal
    scale_init: nn.initializers.Initializer | None = None

    @nn.compact
    def __call__(self, carry: tuple[Array, ...], x: Array) -> tuple[tuple[Array, ...], Array]:
        c, h, c_a, z = carry
        d_in, hid = x.shape[-1], self.features
        (c_a, z), _ = nn.LSTMCell(self.adapt_features, name="policy")(
            (c_a, z), jnp.concatenate([x, h], axis=-1)
        )
        scale = 1.0 / float(self.adapt_features) ** 0.5
        p_init = self.scale_init or (
            lambda k, shape, dtype=jnp.float32: jax.random.uniform(k, shape, dtype, -scale, scale)
        )
        flat = jnp.tanh(
            nn.Dense(d_in + 13 * hid, use_bias=False, kernel_init=p_init, name="projection")(z)
        )
        scales = split_scales(flat, d_in, hid)
        w_x = self.param("w_x", self.kernel_init, (d_in, 4 * hid))
        w_h = self.param("w_h", self.recurrent_kernel_init, (hid, 4 * hid))
        b = self.param(
            "b", lambda k, shape: jnp.zeros(shape).at[hid : 2 * hid].set(1.0), (4 * hid,)
        )
        (c, h), out = adaptive_lstm_step(w_x, w_h, b, (c, h), x, scales)
        return (c, h, c_a, z), out

    @nn.nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> tuple[Array, ...]:
        batch = tuple(input_shape[:-1])
        zh = jnp.zeros(batch + (self.features,))
        za = jnp.zeros(batch + (self.adapt_features,))
        return (zh, zh, za, za)

    @property
    def num_feature_axes(self) -> int:
        return 1


class AdaptiveDense(nn.Module):
    """Adaptive feed-forward layer ``y = D(tau) W D(pi) x + D(beta) b`` with ``1 + P z`` scalings.

    ``__call__(x, z)``: ``x`` is ``(..., d_in)``, the context ``z`` is ``(..., d_z)``. With
    ``P = 0``
    (the default initialisation) it equals ``nn.Dense`` with the same kernel and bias.
    """

    features: int
    kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
    scale_init: nn.initializers.Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: Array, z: Array) -> Array:
        d_in = x.shape[-1]
        flat = 1.0 + nn.Dense(
            d_in + 2 * self.features, kernel_init=self.scale_init, name="projection"
        )(z)
        pi, tau, beta = jnp.split(flat, [d_in, d_in + self.features], axis=-1)
        w = self.param("kernel", self.kernel_init, (d_in, self.features))
        b = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        return tau * ((pi * x) @ w) + beta * b
