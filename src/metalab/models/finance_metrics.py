"""Performance metrics of a return series in JAX, with empyrical's conventions.

All functions take simple (non-log) periodic returns ``r`` of shape ``(T,)`` and an optional
0/1 ``valid`` mask of the same shape (days outside a market's history or the evaluation period);
masked days count as flat (zero return) for wealth and are excluded from means and counts.
``annualization`` is the number of periods per year (252 for daily data).

* Sharpe ratio: ``mean(r) / std(r, ddof=1) * sqrt(annualization)`` (risk-free rate 0);
* maximum drawdown: ``min_t (W_t - max_{s<=t} W_s) / max_{s<=t} W_s`` with wealth
  ``W_t = prod_{s<=t} (1 + r_s)`` anchored at ``W_0 = 1`` (a non-positive number);
* annual return (CAGR): ``W_T^(annualization / n) - 1``;
* Calmar ratio: ``annual_return / |max_drawdown|``.

These match ``empyrical.sharpe_ratio``, ``max_drawdown``, ``annual_return`` and
``calmar_ratio`` (checked in tests). Where empyrical returns NaN (zero drawdown or zero
volatility), these return 0 so that metrics stay finite; the higher, the better for Sharpe and
Calmar.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def _mask(r: Array, valid: Array | None) -> Array:
    return jnp.ones_like(r) if valid is None else jnp.asarray(valid, r.dtype)


def sharpe_ratio(r: Array, valid: Array | None = None, annualization: float = 252.0) -> Array:
    """Annualised Sharpe ratio (maximise). Zero if the series has no variance."""
    m = _mask(r, valid)
    n = m.sum()
    mu = (m * r).sum() / jnp.maximum(n, 1.0)
    var = (m * (r - mu) ** 2).sum() / jnp.maximum(n - 1.0, 1.0)
    pos = var > 0
    sd = jnp.sqrt(jnp.where(pos, var, 1.0))  # double where: finite gradients at zero variance
    return jnp.where(pos, mu / sd, 0.0) * jnp.sqrt(annualization)


def max_drawdown(r: Array, valid: Array | None = None) -> Array:
    """Maximum drawdown (a number <= 0; closer to 0 is better)."""
    m = _mask(r, valid)
    log_w = jnp.cumsum(jnp.log1p(m * r))
    w = jnp.exp(log_w)
    peak = jnp.maximum(jax.lax.cummax(w), 1.0)  # the anchor W_0 = 1 counts as a peak
    return jnp.minimum((w / peak - 1.0).min(), 0.0)


def annual_return(r: Array, valid: Array | None = None, annualization: float = 252.0) -> Array:
    """Compound annual growth rate over the valid periods (maximise)."""
    m = _mask(r, valid)
    years = m.sum() / annualization
    return jnp.exp(jnp.log1p(m * r).sum() / jnp.maximum(years, 1e-12)) - 1.0


def calmar_ratio(r: Array, valid: Array | None = None, annualization: float = 252.0) -> Array:
    """Calmar ratio ``CAGR / |max drawdown|`` (maximise). Zero if there is no drawdown."""
    mdd = max_drawdown(r, valid)
    ar = annual_return(r, valid, annualization)
    return jnp.where(mdd < 0, ar / jnp.where(mdd < 0, -mdd, 1.0), 0.0)
