"""QuantNet: transfer learning across trading strategies of many markets.

Reference: A. Koshiyama, S. Flennerhag, S. B. Blumberg, N. Firoozye, P. Treleaven (2020).
*QuantNet: Transferring Learning Across Systematic Trading Strategies*. arXiv:2004.03445.

Each market ``m`` has its own encoder ``E_m`` and decoder ``D_m`` around one *shared* global
model ``G`` (an LSTM, the transfer layer); the decoder reads both the local code and the global
state ("a market-specific trading strategy based on both local and global information from the
market-specific encoder and the global model"), so the positions on the market's assets at
day ``t`` are::

    u_t = tanh(E_m z_t),   h_t = G(h_{t-1}, u_t),   p_t = tanh(D_m [u_t, h_t]) in [-1, 1]^{N_m}

with ``z_t`` the day's volatility-normalised asset returns. The strategy earns, the next day,
``R_{t+1} = mean_i p_{i,t} rt_{i,t+1}`` where ``rt_{i,t+1} = r_{i,t+1} * target_vol / sigma_{i,t}``
(volatility targeting with an EWMA estimate ``sigma`` known at ``t``). Training *maximises* the
sum over markets of the annualised Sharpe ratio of ``R`` over random windows (the loss is its
negative). The no-transfer variant is the same model with one global LSTM per market.
``make_quantnet(settings) -> Model(init, apply, train)`` (see :mod:`metalab.models.api`).

Baselines (same evaluation): buy-and-hold (equal weights, raw returns), risk parity (long,
inverse-volatility weights: ``mean_i rt_i``), time-series momentum (``p = sign`` of the past
``lookback``-day return, on vol-targeted returns).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metalab.models.api import Model
from metalab.models.finance_metrics import calmar_ratio, sharpe_ratio
from metalab.models.market_data import MarketData

Array = jax.Array


class QuantNetSettings(NamedTuple):
    """Static settings of QuantNet training."""

    hidden: int = 16
    window: int = 252
    burn_in: int = 63
    batch: int = 4
    steps: int = 1500
    learning_rate: float = 1e-3
    vol_halflife: float = 30.0
    target_vol: float = 0.01
    transfer: bool = True
    train_end: int = 0


class QuantNetState(NamedTuple):
    """Parameters (``enc``/``dec`` per market; ``glob`` shared or per market) and Adam state."""

    params: Any
    opt_state: Any


class Prepared(NamedTuple):
    """Model inputs ``z`` ``(M, T, N)``, next-day vol-targeted returns ``rt`` ``(M, T, N)`` and
    their validity ``ok`` ``(M, T, N)`` (``rt[:, t]`` is earned on day ``t + 1``)."""

    z: Array
    rt: Array
    ok: Array


def ewma_vol(r: Array, valid: Array, halflife: float) -> Array:
    """EWMA volatility ``sigma_t`` of ``r`` ``(T, N)`` using returns up to and including ``t``."""
    lam = 0.5 ** (1.0 / halflife)

    def step(v, x):
        rr, ok = x
        v = jnp.where(ok > 0, lam * v + (1 - lam) * rr**2, v)
        return v, v

    _, var = jax.lax.scan(step, jnp.full(r.shape[1:], 1e-4), (r, valid))
    return jnp.sqrt(jnp.maximum(var, 1e-8))


def prepare(data: MarketData, st: QuantNetSettings, warmup: int = 20) -> Prepared:
    """Vol-normalised inputs and next-day vol-targeted returns for every market."""

    def one(r: Array, v: Array) -> Prepared:
        sig = ewma_vol(r, v, st.vol_halflife)
        # days since the asset's history started (vol estimate needs a warm-up)
        age = jnp.cumsum(v, axis=0)
        z = jnp.clip(r / jnp.concatenate([sig[:1], sig[:-1]]), -5, 5) * v
        rt = jnp.concatenate([r[1:], jnp.zeros_like(r[:1])]) * st.target_vol / sig
        ok = v * jnp.concatenate([v[1:], jnp.zeros_like(v[:1])]) * (age >= warmup)
        return Prepared(z, jnp.clip(rt * ok, -0.5, 0.5), ok)

    return jax.vmap(one)(data.returns, data.valid)


def portfolio_returns(pos: Array, rt: Array, ok: Array) -> tuple[Array, Array]:
    """``R_{t+1} = sum_i ok p rt / n_ok`` per day ``(T,)`` and the day's validity ``(T,)``."""
    n = ok.sum(-1)
    return (ok * pos * rt).sum(-1) / jnp.maximum(n, 1.0), (n > 0).astype(jnp.float32)


def init_params(key: Array, n_markets: int, n_assets: int, st: QuantNetSettings) -> Any:
    """Encoders/decoders per market and the global LSTM (shared, or per market if no transfer)."""
    k_e, k_d, k_g = jax.random.split(key, 3)
    d = st.hidden
    lstm = nn.LSTMCell(d)
    glob_init = lambda k: lstm.init(k, (jnp.zeros(d), jnp.zeros(d)), jnp.zeros(d))["params"]
    glob = glob_init(k_g) if st.transfer else jax.vmap(glob_init)(jax.random.split(k_g, n_markets))
    enc = jax.random.normal(k_e, (n_markets, n_assets, d)) / jnp.sqrt(n_assets)
    dec = jax.random.normal(k_d, (n_markets, 2 * d, n_assets)) * 0.1 / jnp.sqrt(2 * d)
    return {
        "enc_w": enc,
        "enc_b": jnp.zeros((n_markets, d)),
        "glob": glob,
        "dec_w": dec,
        "dec_b": jnp.zeros((n_markets, n_assets)),
    }


def market_positions(
    enc_w: Array, enc_b: Array, glob: Any, dec_w: Array, dec_b: Array, z: Array, hidden: int
) -> Array:
    """Positions ``(T, N)`` of one market from its inputs ``z`` ``(T, N)`` (a ``lax.scan``):
    the decoder ``dec_w`` ``(2 d, N)`` reads the local code ``u_t`` and the global state ``h_t``."""
    lstm = nn.LSTMCell(hidden)
    u = jnp.tanh(z @ enc_w + enc_b)

    def step(carry, u_t):
        carry, h = lstm.apply({"params": glob}, carry, u_t)
        return carry, h

    _, h = jax.lax.scan(step, (jnp.zeros(hidden), jnp.zeros(hidden)), u)
    return jnp.tanh(jnp.concatenate([u, h], -1) @ dec_w + dec_b)


def all_positions(params: Any, z: Array, st: QuantNetSettings) -> Array:
    """Positions ``(M, T, N)`` of every market."""
    g_axis = None if st.transfer else 0
    f = lambda ew, eb, g, dw, db, zz: market_positions(ew, eb, g, dw, db, zz, st.hidden)
    return jax.vmap(f, in_axes=(0, 0, g_axis, 0, 0, 0))(
        params["enc_w"], params["enc_b"], params["glob"], params["dec_w"], params["dec_b"], z
    )


def make_quantnet(st: QuantNetSettings) -> Model:
    """``Model(init, apply, train)`` of QuantNet (see :mod:`metalab.models.api`).

    * ``init(key, prep) -> params`` for ``prep``'s ``M`` markets and ``N`` assets;
    * ``apply(params, prep, key=None) -> positions (M, T, N)``;
    * ``train(key, prep) -> (params, {"loss": (steps,)})``: Adam on minus the mean Sharpe of
      random windows that end before ``st.train_end`` (the first test day; the last earned
      return is on day ``train_end - 1``).
    """
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(st.learning_rate))
    span = st.window + st.burn_in

    def init(key: Array, prep: Prepared) -> Any:
        m, _, n = prep.z.shape
        return init_params(jax.random.split(key)[0], m, n, st)

    def apply(params: Any, prep: Prepared, key: Array | None = None) -> Array:
        return all_positions(params, prep.z, st)

    def loss_fn(params: Any, prep: Prepared, starts: Array) -> Array:
        def window(s):
            sl = lambda a: jax.lax.dynamic_slice_in_dim(a, s, span, axis=1)
            z, rt, ok = sl(prep.z), sl(prep.rt), sl(prep.ok)
            pos = all_positions(params, z, st)
            ret, day_ok = jax.vmap(portfolio_returns)(pos, rt, ok)
            ret, day_ok = ret[:, st.burn_in :], day_ok[:, st.burn_in :]
            sr = jax.vmap(sharpe_ratio)(ret, day_ok)
            use = (day_ok.sum(-1) >= 20).astype(jnp.float32)
            return (use * sr).sum(), use.sum()

        s, n = jax.vmap(window)(starts)
        return -s.sum() / jnp.maximum(n.sum(), 1.0)  # minus the mean Sharpe (minimised)

    def train(key: Array, prep: Prepared) -> tuple[Any, dict[str, Array]]:
        t_all = prep.z.shape[1]
        end = st.train_end
        if end - 1 - span < 0 or end > t_all:
            raise ValueError(
                f"train_end={end} must leave window + burn_in = {span} days "
                f"of training data and be <= {t_all}"
            )
        params = init(key, prep)
        k_loop = jax.random.split(key)[1]

        def step(c: QuantNetState, k: Array) -> tuple[QuantNetState, Array]:
            starts = jax.random.randint(k, (st.batch,), 0, end - 1 - span + 1)
            loss, g = jax.value_and_grad(loss_fn)(c.params, prep, starts)
            u, o = tx.update(g, c.opt_state, c.params)
            return QuantNetState(optax.apply_updates(c.params, u), o), loss

        state, losses = jax.lax.scan(
            step, QuantNetState(params, tx.init(params)), jax.random.split(k_loop, st.steps)
        )
        return state.params, {"loss": losses}

    return Model(init, apply, train)


def strategy_returns(prep: Prepared, positions: Array) -> tuple[Array, Array]:
    """Daily strategy returns ``(M, T)`` (earned at ``t + 1``) and validity, from positions."""
    return jax.vmap(portfolio_returns)(positions, prep.rt, prep.ok)


def baseline_positions(
    data: MarketData, prep: Prepared, st: QuantNetSettings, lookback: int = 126
) -> dict[str, tuple[Array, Array]]:
    """Returns and validity ``(M, T)`` of buy-and-hold, risk parity and time-series momentum."""
    r, v = data.returns, data.valid
    nxt = jnp.concatenate([r[:, 1:], jnp.zeros_like(r[:, :1])], axis=1)
    ok_bh = v * jnp.concatenate([v[:, 1:], jnp.zeros_like(v[:, :1])], axis=1)
    bh = jax.vmap(portfolio_returns)(jnp.ones_like(r), nxt, ok_bh)
    rp = strategy_returns(prep, jnp.ones_like(r))
    c = jnp.cumsum(jnp.log1p(r * v), axis=1)
    past = c - jnp.concatenate([jnp.zeros_like(c[:, :lookback]), c[:, :-lookback]], axis=1)
    mom = strategy_returns(prep, jnp.sign(past))
    return {"buy_and_hold": bh, "risk_parity": rp, "tsmom": mom}


def evaluate(
    ret: Array, day_ok: Array, start: int, annualization: float = 252.0
) -> tuple[Array, Array]:
    """Per-market Sharpe and Calmar ``(M,)`` over days ``>= start``.

    ``ret[:, t]`` is earned on day ``t + 1``, so the test period starts at index ``start - 1``.
    """
    t = jnp.arange(ret.shape[1])
    ok = day_ok * (t >= start - 1)[None]
    sr = jax.vmap(lambda a, b: sharpe_ratio(a, b, annualization))(ret, ok)
    cr = jax.vmap(lambda a, b: calmar_ratio(a, b, annualization))(ret, ok)
    return sr, cr
