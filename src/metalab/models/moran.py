"""Spatial weights and Moran's I in JAX (local and global), with optional point masks.

Local Moran's I (Anselin 1995), with the conventions of ``esda.Moran_Local`` (row-standardised
weights, ``z`` the target standardised with the population standard deviation)::

    z_i = (y_i - mean(y)) / std(y),   I_i = (n - 1) z_i sum_j w_ij z_j / sum_k z_k^2

A mask restricts everything to a subset of points: the mean, standard deviation and ``n`` are
taken over the masked points and the weights are restricted to them and row-standardised again
(points left without neighbours get ``I_i = 0``). Outputs at unmasked points are zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def knn_weights(coords: Array, k: int) -> Array:
    """Dense row-standardised k-nearest-neighbour weights ``(n, n)`` (self excluded).

    Ties are broken by index order (as a stable sort would). Raises if ``k >= n``.
    """
    coords = jnp.asarray(coords, dtype=jnp.float32)
    n = coords.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k={k} neighbours needs 1 <= k < n={n}")
    d2 = jnp.sum((coords[:, None, :] - coords[None, :, :]) ** 2, axis=-1)
    d2 = d2 + jnp.diag(jnp.full(n, jnp.inf))
    idx = jnp.argsort(d2, axis=1, stable=True)[:, :k]
    w = jnp.zeros((n, n)).at[jnp.arange(n)[:, None], idx].set(1.0)
    return w / k


def restrict_weights(w: Array, mask: Array) -> Array:
    """Weights restricted to masked points and row-standardised again (empty rows stay zero)."""
    m = jnp.asarray(mask, dtype=w.dtype)
    wm = w * m[:, None] * m[None, :]
    rs = wm.sum(axis=1, keepdims=True)
    return jnp.where(rs > 0, wm / jnp.where(rs > 0, rs, 1.0), 0.0)


def spatial_lag(w: Array, v: Array) -> Array:
    """``W v``: weighted average of the neighbours' values (``v`` is ``(n,)`` or ``(n, d)``)."""
    return w @ v


def local_moran(y: Array, w: Array, mask: Array | None = None) -> Array:
    """Local Moran's I of ``y`` ``(n,)`` under row-standardised weights ``w`` ``(n, n)``.

    Matches ``esda.Moran_Local(y, w, transformation="r").Is`` when ``mask`` is None.
    """
    y = jnp.asarray(y, dtype=jnp.float32)
    if mask is None:
        m = jnp.ones_like(y)
        wr = w
    else:
        m = jnp.asarray(mask, dtype=y.dtype)
        wr = restrict_weights(w, m)
    n = m.sum()
    mu = (m * y).sum() / n
    sd = jnp.sqrt((m * (y - mu) ** 2).sum() / n)
    z = m * (y - mu) / jnp.maximum(sd, 1e-12)
    return (n - 1.0) * z * (wr @ z) / jnp.maximum((z * z).sum(), 1e-12)


def global_moran(y: Array, w: Array) -> Array:
    """Global Moran's I ``n / S0 * z' W z / z' z`` (matches ``esda.Moran(y, w).I``)."""
    y = jnp.asarray(y, dtype=jnp.float32)
    z = y - y.mean()
    return y.shape[0] / w.sum() * (z @ (w @ z)) / (z @ z)


def moran_error(i_real: Array, y_gen: Array, w: Array, mask: Array | None = None) -> Array:
    """MIE: root-mean-square difference between local Moran's I of real and generated targets.

    Args:
      i_real: ``(n,)`` local Moran's I of the real targets (same ``w`` and ``mask``).
      y_gen: ``(..., n)`` generated targets; the error is averaged over leading axes (draws).
      w, mask: as in :func:`local_moran`.

    Returns:
      scalar MIE (lower is better), over masked points only.
    """
    m = jnp.ones(i_real.shape[0]) if mask is None else jnp.asarray(mask, jnp.float32)
    i_gen = jnp.vectorize(lambda g: local_moran(g, w, mask), signature="(n)->(n)")(y_gen)
    mse = (m * (i_gen - i_real) ** 2).sum(-1) / m.sum()
    return jnp.sqrt(mse).mean()
