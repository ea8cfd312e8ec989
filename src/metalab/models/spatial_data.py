"""Spatial regression data for SpaceGAN: procedural toy grids and Baltimore house prices.

* :func:`toy_grid`: a ``side x side`` lattice whose two features are smooth Gaussian random
  fields and whose target mixes a non-linear function of the features with a spatially
  autocorrelated residual field and white noise (the SpaceGAN paper's toy grids are described,
  not shipped; this regenerates data of the same kind from a key).
* :func:`load_baltimore`: the 211 Baltimore house sales (Dubin 1992) bundled in libpysal's
  wheel (``libpysal/examples/baltim/baltim.dbf``); read from the installed package, no download.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

BALTIMORE_FEATURES = (
    "NROOM",
    "NBATH",
    "PATIO",
    "FIREPL",
    "AC",
    "BMENT",
    "NSTOR",
    "GAR",
    "AGE",
    "CITCOU",
    "LOTSZ",
    "SQFT",
)


class SpatialData(NamedTuple):
    """Features ``x`` ``(n, d)``, coordinates ``coords`` ``(n, 2)`` and target ``y`` ``(n,)``."""

    x: Array
    coords: Array
    y: Array


def _grf(key: Array, coords: Array, length_scale: float) -> Array:
    """A zero-mean unit-variance smooth field: white noise smoothed by a Gaussian kernel."""
    d2 = jnp.sum((coords[:, None] - coords[None]) ** 2, -1)
    k = jnp.exp(-0.5 * d2 / length_scale**2)
    f = k @ jax.random.normal(key, (coords.shape[0],))
    return (f - f.mean()) / f.std()


def toy_grid(
    key: Array, side: int = 20, length_scale: float = 2.5, noise: float = 0.3
) -> SpatialData:
    """Regenerate a toy grid: ``y = sin(2 x1) + 0.5 x2^2 + x1 x2 + u + eps``.

    ``x1, x2`` and the residual field ``u`` are independent Gaussian random fields with the given
    length scale (in cells); ``eps ~ N(0, noise^2)``.
    """
    if side < 3:
        raise ValueError(f"side={side} must be >= 3")
    g = jnp.arange(side, dtype=jnp.float32)
    coords = jnp.stack(jnp.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x1, x2 = _grf(k1, coords, length_scale), _grf(k2, coords, length_scale)
    u = _grf(k3, coords, length_scale)
    y = jnp.sin(2 * x1) + 0.5 * x2**2 + x1 * x2 + u + noise * jax.random.normal(k4, x1.shape)
    return SpatialData(jnp.stack([x1, x2], -1), coords, y)


def baltimore_path() -> Path:
    """Path of the Baltimore dbf file inside the installed libpysal wheel."""
    import libpysal

    path = Path(libpysal.__file__).parent / "examples" / "baltim" / "baltim.dbf"
    if not path.is_file():
        raise FileNotFoundError(f"libpysal does not ship {path}; install libpysal>=4.12")
    return path


def load_baltimore() -> SpatialData:
    """Baltimore house prices (numpy): :data:`BALTIMORE_FEATURES`, coordinates (X, Y), PRICE."""
    import libpysal

    db = libpysal.io.open(str(baltimore_path()))
    cols = {h: np.asarray(db.by_col(h), dtype=np.float32) for h in db.header}
    db.close()
    x = np.stack([cols[f] for f in BALTIMORE_FEATURES], -1)
    coords = np.stack([cols["X"], cols["Y"]], -1)
    return SpatialData(x, coords, cols["PRICE"])


def standardise(v: Array, mask: Array | None = None) -> Array:
    """Z-score columns of ``v`` with mean/std over the masked rows."""
    m = jnp.ones(v.shape[0]) if mask is None else jnp.asarray(mask, jnp.float32)
    mm = m.reshape((-1,) + (1,) * (v.ndim - 1))
    mu = (mm * v).sum(0) / m.sum()
    sd = jnp.sqrt((mm * (v - mu) ** 2).sum(0) / m.sum())
    return (v - mu) / jnp.maximum(sd, 1e-6)


def quadrant_folds(coords: Array) -> Array:
    """Spatial CV blocks: 4 quadrants split at the median x and y, as ``(4, n)`` 0/1 masks."""
    cx, cy = jnp.median(coords[:, 0]), jnp.median(coords[:, 1])
    q = (coords[:, 0] > cx).astype(jnp.int32) * 2 + (coords[:, 1] > cy).astype(jnp.int32)
    return jnp.stack([(q == i) for i in range(4)]).astype(jnp.float32)
