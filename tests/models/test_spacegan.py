"""Local Moran's I against esda, spatial weights against libpysal, SpaceGAN pieces."""

from __future__ import annotations

import esda
import jax
import jax.numpy as jnp
import libpysal
import numpy as np
import pytest

from metalab.models.moran import global_moran, knn_weights, local_moran, moran_error
from metalab.models.spacegan import (
    SpaceGANSettings,
    bootstrap_weights,
    fit_ensemble,
    make_condition,
    make_spacegan,
    predict_ensemble,
)
from metalab.models.spatial_data import load_baltimore, quadrant_folds
from metalab.models.spatial_data import toy_grid as _toy_grid

toy_grid = jax.jit(_toy_grid, static_argnums=1)


@pytest.fixture(scope="module")
def baltimore():
    return load_baltimore()


def _esda_w(coords, k):
    w = libpysal.weights.KNN.from_array(np.asarray(coords, np.float64), k=k)
    w.transform = "r"
    return w


def test_baltimore_ships_offline(baltimore):
    assert baltimore.x.shape == (211, 12) and baltimore.coords.shape == (211, 2)
    assert baltimore.y.shape == (211,) and float(baltimore.y.min()) > 0


def test_knn_weights_match_libpysal(baltimore):
    # a random field without ties in distances
    coords = np.random.default_rng(0).uniform(size=(60, 2))
    w_ref = _esda_w(coords, 5).full()[0]
    np.testing.assert_allclose(np.asarray(knn_weights(coords, 5)), w_ref, atol=1e-7)
    with pytest.raises(ValueError, match="k=60"):
        knn_weights(coords, 60)


@pytest.mark.parametrize("k", [4, 8])
def test_local_moran_matches_esda_on_baltimore(baltimore, k):
    y = np.asarray(baltimore.y, np.float64)
    w = _esda_w(baltimore.coords, k)
    ref = esda.Moran_Local(y, w, transformation="r", permutations=0)
    w_dense = jnp.asarray(w.full()[0], jnp.float32)
    got = jax.jit(local_moran)(jnp.asarray(y), w_dense)
    np.testing.assert_allclose(np.asarray(got), ref.Is, rtol=2e-4, atol=2e-4)
    g_ref = esda.Moran(y, w, transformation="r", permutations=0).I
    np.testing.assert_allclose(float(global_moran(jnp.asarray(y), w_dense)), g_ref, rtol=1e-4)


def test_masked_local_moran_equals_esda_on_the_subset():
    d = toy_grid(jax.random.PRNGKey(0), 8)
    y = np.asarray(d.y, np.float64)
    w_full = np.asarray(knn_weights(d.coords, 4))
    mask = np.asarray(quadrant_folds(d.coords)[0] == 0, np.float64)
    keep = mask > 0
    # reference: restrict the binary kNN graph to the subset and let esda row-standardise it
    sub = (w_full[np.ix_(keep, keep)] > 0).astype(float)
    assert sub.sum(1).min() > 0
    w_sub = libpysal.weights.full2W(sub)
    ref = esda.Moran_Local(y[keep], w_sub, transformation="r", permutations=0).Is
    got = np.asarray(local_moran(jnp.asarray(y), jnp.asarray(w_full), jnp.asarray(mask)))
    np.testing.assert_allclose(got[keep], ref, rtol=2e-4, atol=2e-4)
    assert np.all(got[~keep] == 0)


def test_moran_error_zero_for_identical_fields_and_vmaps():
    d = toy_grid(jax.random.PRNGKey(1), 6)
    w = knn_weights(d.coords, 4)
    i_real = local_moran(d.y, w)
    assert float(moran_error(i_real, d.y[None], w)) < 1e-5
    # MIE is invariant to affine rescaling of the generated field
    assert float(moran_error(i_real, 3.0 * d.y[None] + 1.0, w)) < 1e-4
    noise = jax.random.normal(jax.random.PRNGKey(2), (3, 36))
    many = jax.vmap(lambda g: moran_error(i_real, g[None], w))(noise)
    np.testing.assert_allclose(float(moran_error(i_real, noise, w)), float(many.mean()), rtol=1e-5)
    assert float(many.min()) > 0.1


def test_condition_holds_neighbour_lags():
    d = toy_grid(jax.random.PRNGKey(3), 5)
    w = knn_weights(d.coords, 4)
    c, ys = make_condition(d, w)
    assert c.shape == (25, 2 + 2 + 2 + 1)
    np.testing.assert_allclose(np.asarray(c[:, -1]), np.asarray(w @ ys), atol=1e-5)
    c0, _ = make_condition(d, w, use_neighbours=False)
    np.testing.assert_allclose(np.asarray(c0[:, :4]), np.asarray(c[:, :4]))
    assert float(jnp.abs(c0[:, 4:]).max()) == 0.0


def test_spacegan_training_selects_best_checkpoints_under_vmap():
    d = toy_grid(jax.random.PRNGKey(4), 5)
    w = knn_weights(d.coords, 4)
    c, ys = make_condition(d, w)
    st = SpaceGANSettings(hidden=8, noise_dim=2, steps=30, ckpt_every=10, n_draws=2)
    train = jax.jit(jax.vmap(make_spacegan(st), in_axes=(0, None, None, None, None)))
    res = train(jax.random.split(jax.random.PRNGKey(5), 2), c, ys, w, jnp.ones(25))
    assert res.mie.shape == (2, 3) and np.all(np.isfinite(res.mie))
    np.testing.assert_allclose(res.state.best_mie, res.mie.min(1), rtol=1e-6)
    np.testing.assert_allclose(res.state.best_rmse, res.rmse.min(1), rtol=1e-6)


def test_bootstrap_weights_and_ensemble():
    mask = jnp.array([1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    bw = bootstrap_weights(jax.random.PRNGKey(0), mask, 50)
    np.testing.assert_allclose(np.asarray(bw.sum(1)), 4.0)
    assert float(bw[:, mask == 0].sum()) == 0.0
    # counts of each kept point are Binomial(4, 1/4): mean 1
    assert abs(float(bw[:, mask > 0].mean()) - 1.0) < 0.15
    x = jnp.linspace(-1, 1, 20)[:, None]
    y = 2 * x[:, 0]
    p = fit_ensemble(
        jax.random.PRNGKey(1), x, jnp.stack([y, y]), jnp.ones((2, 20)), hidden=8, steps=200, lr=1e-2
    )
    assert float(jnp.mean((predict_ensemble(p, x, 8) - y) ** 2)) < 0.05
