"""Financial metrics against empyrical, the market generator, the CSV loader, QuantNet pieces."""

from __future__ import annotations

import empyrical
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from metalab.models.finance_metrics import (
    annual_return,
    calmar_ratio,
    max_drawdown,
    sharpe_ratio,
)
from metalab.models.market_data import MarketData, generate_markets, load_returns_csv
from metalab.models.quantnet import (
    QuantNetSettings,
    all_positions,
    baseline_positions,
    evaluate,
    init_params,
    make_quantnet,
    prepare,
    strategy_returns,
)


@pytest.fixture(scope="module")
def series():
    rng = np.random.default_rng(0)
    return [0.0005 + 0.01 * rng.standard_t(4, size=n) for n in (30, 250, 700)]


def test_metrics_match_empyrical(series):
    f = jax.jit(
        lambda r: jnp.stack([sharpe_ratio(r), max_drawdown(r), annual_return(r), calmar_ratio(r)])
    )
    for r in series:
        got = np.asarray(f(jnp.asarray(r, jnp.float32)), np.float64)
        ref = [
            empyrical.sharpe_ratio(r),
            empyrical.max_drawdown(r),
            empyrical.annual_return(r),
            empyrical.calmar_ratio(r),
        ]
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=1e-5)


def test_metrics_with_mask_equal_metrics_of_the_subseries(series):
    r = series[1]
    valid = np.zeros_like(r)
    valid[50:200] = 1
    rj, vj = jnp.asarray(r, jnp.float32), jnp.asarray(valid, jnp.float32)
    sub = r[50:200]
    np.testing.assert_allclose(float(sharpe_ratio(rj, vj)), empyrical.sharpe_ratio(sub), rtol=2e-3)
    np.testing.assert_allclose(float(max_drawdown(rj, vj)), empyrical.max_drawdown(sub), rtol=2e-3)
    np.testing.assert_allclose(float(calmar_ratio(rj, vj)), empyrical.calmar_ratio(sub), rtol=5e-3)
    # monthly annualisation
    np.testing.assert_allclose(
        float(sharpe_ratio(rj, annualization=12.0)),
        empyrical.sharpe_ratio(r, period="monthly"),
        rtol=2e-3,
    )


def test_degenerate_metrics_are_finite_with_finite_gradients():
    flat = jnp.zeros(10)
    assert float(sharpe_ratio(flat)) == 0.0 and float(calmar_ratio(jnp.full(10, 0.01))) == 0.0
    g = jax.grad(lambda r: sharpe_ratio(r, jnp.zeros(10)))(flat)
    assert np.all(np.isfinite(g))


def test_generator_shapes_histories_and_fat_tails():
    d = jax.jit(lambda k: generate_markets(k, 6, 5, 1200, 200, 0.5, 300))(jax.random.PRNGKey(0))
    assert d.returns.shape == (6, 1200, 5) and d.valid.shape == (6, 1200, 5)
    starts = np.argmax(np.asarray(d.valid).any(-1), axis=1)
    assert sorted(starts.tolist()) == [0, 0, 0, 700, 700, 700]  # half the markets start late
    assert np.all(np.asarray(d.valid)[:, -200:].any(-1))  # all markets have the test period
    r = np.asarray(d.returns)[np.asarray(d.valid) > 0]
    kurt = np.mean((r - r.mean()) ** 4) / np.var(r) ** 2
    assert kurt > 3.5  # fatter tails than a Gaussian
    assert np.all(np.asarray(d.returns)[np.asarray(d.valid) == 0] == 0)
    # markets co-move through the shared regimes and factors
    m = np.asarray(d.returns)[:3].mean(-1)
    assert np.corrcoef(m)[np.triu_indices(3, 1)].mean() > 0.1
    with pytest.raises(ValueError, match="df > 2"):
        generate_markets(jax.random.PRNGKey(0), df=2.0)


def test_csv_loader_prices_and_returns(tmp_path):
    dates = pd.date_range("2020-01-01", periods=4, freq="D")
    rows = []
    for a, mkt, prices in (
        ("A", "eq", [10, 11, 12.1, 12.1]),
        ("B", "eq", [5, 5, 4, 5]),
        ("C", "fx", [1, 2, 1, 1]),
    ):
        rows += [
            {"date": d, "asset": a, "market": mkt, "close": p}
            for d, p in zip(dates, prices, strict=True)
        ]
    df = pd.DataFrame(rows).drop(index=8)  # asset C has no price on day 0
    df.to_csv(tmp_path / "px.csv", index=False)
    data, markets, assets, days = load_returns_csv(tmp_path / "px.csv")
    assert markets == ["eq", "fx"] and assets == [["A", "B"], ["C"]]
    assert data.returns.shape == (2, 3, 2) and len(days) == 3
    np.testing.assert_allclose(np.asarray(data.returns[0, :, 0]), [0.1, 0.1, 0.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(data.returns[0, :, 1]), [0.0, -0.2, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(data.valid[1, :, 0]), [0, 1, 1])  # C: first is day 1
    np.testing.assert_allclose(np.asarray(data.returns[1, 1:, 0]), [-0.5, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(data.valid[1, :, 1]), [0, 0, 0])  # padding
    df2 = df.assign(ret=0.01)
    df2.to_csv(tmp_path / "r.csv", index=False)
    data2, *_ = load_returns_csv(tmp_path / "r.csv", value_col="ret", kind="return")
    assert data2.returns.shape[1] == 4
    with pytest.raises(ValueError, match="lacks columns"):
        load_returns_csv(tmp_path / "r.csv", value_col="price")


ST = QuantNetSettings(hidden=4, window=40, burn_in=10, batch=2, steps=4)


@pytest.fixture(scope="module")
def small():
    """A small panel, its prepared inputs and the baselines, built in one compiled call."""

    @jax.jit
    def build(key):
        d = generate_markets(key, 3, 3, 400, 60, 0.34, 100)
        prep = prepare(d, ST)
        return d, prep, baseline_positions(d, prep, ST, lookback=5)

    return build(jax.random.PRNGKey(1))


def test_baselines_match_hand_computations(small):
    d, prep, base = small
    r, v = np.asarray(d.returns), np.asarray(d.valid)
    ret, ok = base["buy_and_hold"]
    m, t = 0, 200
    both = v[m, t] * v[m, t + 1]
    np.testing.assert_allclose(float(ret[m, t]), (both * r[m, t + 1]).sum() / both.sum(), rtol=1e-5)
    # risk parity = strategy with unit positions on vol-targeted returns
    rp, _ = base["risk_parity"]
    rp2, _ = strategy_returns(prep, jnp.ones_like(d.returns))
    np.testing.assert_allclose(np.asarray(rp), np.asarray(rp2))
    # momentum sign from the past five log-returns
    mom, _ = base["tsmom"]
    past = np.log1p(r[m, t - 4 : t + 1] * v[m, t - 4 : t + 1]).sum(0)
    okp = np.asarray(prep.ok)[m, t]
    ref = (okp * np.sign(past) * np.asarray(prep.rt)[m, t]).sum() / max(okp.sum(), 1)
    np.testing.assert_allclose(float(mom[m, t]), ref, rtol=1e-4, atol=1e-7)


def test_vol_targeting_uses_only_past_information(small):
    d, prep, _ = small
    r2 = d.returns.at[:, 300:].set(0.3 * d.valid[:, 300:])  # change the future only
    prep2 = jax.jit(prepare, static_argnums=1)(MarketData(r2, d.valid), ST)
    np.testing.assert_allclose(np.asarray(prep.z[:, :300]), np.asarray(prep2.z[:, :300]))
    np.testing.assert_allclose(np.asarray(prep.rt[:, :299]), np.asarray(prep2.rt[:, :299]))


def test_quantnet_shares_the_global_model_and_trains(small):
    _, prep, _ = small
    st = ST
    p = init_params(jax.random.PRNGKey(0), 3, 3, st)
    q = init_params(jax.random.PRNGKey(0), 3, 3, st._replace(transfer=False))
    leaf = lambda t: jax.tree_util.tree_leaves(t["glob"])[0]
    assert leaf(q).shape == (3,) + leaf(p).shape  # one LSTM per market without transfer
    positions = jax.jit(all_positions, static_argnums=2)
    pos = positions(p, prep.z, st)
    assert pos.shape == (3, 400, 3) and float(jnp.abs(pos).max()) <= 1.0
    # positions at day t do not depend on inputs after t (causal)
    z2 = prep.z.at[:, 250:].set(1.0)
    np.testing.assert_allclose(
        np.asarray(all_positions(p, z2, st)[:, :250]), np.asarray(pos[:, :250]), atol=1e-6
    )
    # the decoder reads the local code as well as the global state: with the global LSTM's
    # output weights zeroed, positions still depend on the day's inputs
    dec_local = p["dec_w"].at[:, st.hidden :].set(0.0)
    pos_local = all_positions({**p, "dec_w": dec_local}, prep.z, st)
    assert float(jnp.abs(pos_local[:, 1:] - pos_local[:, :-1]).max()) > 1e-3
    model = make_quantnet(st._replace(train_end=340))

    @jax.jit
    def run(keys):
        params, info = jax.vmap(model.train, in_axes=(0, None))(keys, prep)
        p0 = jax.tree_util.tree_map(lambda a: a[0], params)
        return info["loss"], evaluate(*strategy_returns(prep, model.apply(p0, prep)), 340)

    losses, (sr, cr) = run(jax.random.split(jax.random.PRNGKey(2), 2))
    assert losses.shape == (2, 4) and np.all(np.isfinite(losses))
    assert sr.shape == (3,) and np.all(np.isfinite(sr)) and np.all(np.isfinite(cr))
    with pytest.raises(ValueError, match="train_end"):
        make_quantnet(st._replace(train_end=30)).train(jax.random.PRNGKey(0), prep)
