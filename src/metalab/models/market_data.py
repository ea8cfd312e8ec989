"""Multi-market daily returns: a realistic generator and a CSV loader for users' own data.

Layout: ``MarketData.returns`` is ``(M, T, N)`` (markets x days x assets, padded to the largest
market's ``N``), ``MarketData.valid`` the matching 0/1 mask (asset exists and the market has
history that day). Returns are simple daily returns.

Generator (:func:`generate_markets`), the ingredients the QuantNet paper's data has and a
single-market model lacks:

* a *shared* regime chain ``g_t`` in {up, down, flat} (sticky Markov chain, mean regime length
  ``regime_days``) with drifts ``premium + (+mu, -mu, 0)`` common to all markets and a higher
  volatility in the down regime;
* market factors ``f_{m,t} = beta_m (mu(g_t) + sigma_g e_t) + a_{m,t} + sigma_m e_{m,t}``:
  market loadings on the shared trend and a global shock (markets co-move), a market-specific
  persistent AR(1) trend ``a`` and fat-tailed market shocks;
* asset returns ``r_{i,t} = b_i f_{m,t} + s_i eps_{i,t}`` with Student-t(``df``) noise;
* histories of different lengths: a fraction ``short_frac`` of markets starts late (their
  history covers only the last ``short_days`` days before the test period).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class MarketData(NamedTuple):
    """Padded multi-market returns ``(M, T, N)`` and validity mask (same shape)."""

    returns: Array
    valid: Array


def _student_t(key: Array, df: float, shape: tuple[int, ...]) -> Array:
    """Unit-variance Student-t draws (fat tails)."""
    return jax.random.t(key, df, shape) * jnp.sqrt((df - 2.0) / df)


def generate_markets(
    key: Array,
    n_markets: int = 8,
    max_assets: int = 8,
    n_days: int = 2500,
    test_days: int = 500,
    short_frac: float = 0.5,
    short_days: int = 500,
    regime_days: float = 120.0,
    trend: float = 0.0006,
    df: float = 4.0,
    premium: float = 0.0,
) -> MarketData:
    """Draw a multi-market panel of daily returns (see module docstring).

    Args:
      key: PRNG key.
      n_markets, max_assets, n_days: panel size; each market has ``U{2..max_assets}`` assets.
      test_days: days at the end reserved for testing (every market has them).
      short_frac, short_days: fraction of late-starting markets and their pre-test history.
      regime_days: mean duration of a shared regime.
      trend: daily drift magnitude of the shared up/down regimes (0.0006 ~ 15% a year).
      df: degrees of freedom of the Student-t shocks (> 2).
      premium: constant daily drift of the global factor (an equity premium; 0.0002 is about
        5% a year, a buy-and-hold Sharpe ratio of about 0.3 at this volatility).

    Returns:
      a :class:`MarketData` (jit/vmap-compatible in ``key``).
    """
    if df <= 2 or not 0 <= short_frac <= 1 or n_days <= test_days + short_days:
        raise ValueError("need df > 2, 0 <= short_frac <= 1, n_days > test_days + short_days")
    ks = jax.random.split(key, 12)
    p_stay = 1.0 - 1.0 / regime_days

    # shared regime chain: 0 up, 1 down, 2 flat
    def regime_step(g, k):
        k1, k2 = jax.random.split(k)
        move = jax.random.uniform(k1) > p_stay
        new = (g + 1 + jax.random.randint(k2, (), 0, 2)) % 3
        g = jnp.where(move, new, g)
        return g, g

    _, g = jax.lax.scan(
        regime_step, jax.random.randint(ks[0], (), 0, 3), jax.random.split(ks[1], n_days)
    )
    drift = jnp.array([trend, -trend, 0.0])[g] + premium
    vol_mult = jnp.array([1.0, 1.6, 0.9])[g]
    # market factors
    beta = jax.random.uniform(ks[2], (n_markets,), minval=0.5, maxval=1.5)
    sig_m = jax.random.uniform(ks[3], (n_markets,), minval=0.006, maxval=0.012)

    def ar_step(a, e):
        a = 0.995 * a + e
        return a, a

    e_a = 0.00004 * jax.random.normal(ks[4], (n_days, n_markets))
    _, a = jax.lax.scan(ar_step, jnp.zeros(n_markets), e_a)
    glob = drift + 0.005 * vol_mult * _student_t(ks[11], df, (n_days,))
    f = (
        beta[None] * glob[:, None]
        + a
        + sig_m[None] * vol_mult[:, None] * _student_t(ks[5], df, (n_days, n_markets))
    )
    # assets
    b = jax.random.uniform(ks[6], (n_markets, max_assets), minval=0.6, maxval=1.4)
    s = jax.random.uniform(ks[7], (n_markets, max_assets), minval=0.006, maxval=0.014)
    eps = _student_t(ks[8], df, (n_markets, n_days, max_assets))
    r = b[:, None, :] * f.T[:, :, None] + s[:, None, :] * vol_mult[None, :, None] * eps
    n_assets = jax.random.randint(ks[9], (n_markets,), 2, max_assets + 1)
    asset_ok = jnp.arange(max_assets)[None] < n_assets[:, None]
    short = jnp.arange(n_markets) < jnp.round(short_frac * n_markets)
    short = jax.random.permutation(ks[10], short)
    start = jnp.where(short, n_days - test_days - short_days, 0)
    day_ok = jnp.arange(n_days)[None] >= start[:, None]
    valid = (day_ok[:, :, None] & asset_ok[:, None, :]).astype(jnp.float32)
    return MarketData(jnp.clip(r, -0.5, 0.5) * valid, valid)


def load_returns_csv(
    path: str | Path,
    date_col: str = "date",
    asset_col: str = "asset",
    market_col: str = "market",
    value_col: str = "close",
    kind: str = "price",
) -> tuple[MarketData, list[str], list[list[str]], np.ndarray]:
    """Load a long-format CSV (one row per date x asset) into a :class:`MarketData`.

    Args:
      path: CSV file with columns ``date_col``, ``asset_col``, ``market_col``, ``value_col``.
      kind: ``"price"`` (returns are computed per asset as ``p_t / p_{t-1} - 1`` between
        consecutive available dates) or ``"return"`` (the column already holds simple returns).

    Returns:
      ``(data, market_names, asset_names_per_market, dates)``; a day is valid for an asset if it
      has a return that day (the first price of an asset gives no return).
    """
    import pandas as pd

    if kind not in ("price", "return"):
        raise ValueError(f"kind={kind!r}; allowed: 'price', 'return'")
    df = pd.read_csv(path)
    missing = [c for c in (date_col, asset_col, market_col, value_col) if c not in df.columns]
    if missing:
        raise ValueError(f"CSV {path} lacks columns {missing}; it has {list(df.columns)}")
    df[date_col] = pd.to_datetime(df[date_col])
    df = df.sort_values([asset_col, date_col])
    if kind == "price":
        if (df[value_col] <= 0).any():
            raise ValueError(f"column {value_col!r} must hold positive prices for kind='price'")
        df["_r"] = df.groupby(asset_col)[value_col].pct_change()
    else:
        df["_r"] = df[value_col]
    df = df.dropna(subset=["_r"])
    dates = np.sort(df[date_col].unique())
    markets = sorted(df[market_col].astype(str).unique())
    assets = [
        sorted(df.loc[df[market_col].astype(str) == m, asset_col].astype(str).unique())
        for m in markets
    ]
    n_max = max(len(a) for a in assets)
    ret = np.zeros((len(markets), len(dates), n_max), np.float32)
    val = np.zeros_like(ret)
    d_index = {d: i for i, d in enumerate(dates)}
    for mi, (m, names) in enumerate(zip(markets, assets, strict=True)):
        a_index = {a: j for j, a in enumerate(names)}
        sub = df[df[market_col].astype(str) == m]
        ti = sub[date_col].map(d_index).to_numpy()
        aj = sub[asset_col].astype(str).map(a_index).to_numpy()
        ret[mi, ti, aj] = sub["_r"].to_numpy()
        val[mi, ti, aj] = 1.0
    return MarketData(jnp.asarray(ret), jnp.asarray(val)), markets, assets, dates
