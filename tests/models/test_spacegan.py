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
    SpatialTask,
    bootstrap_weights,
    coordinate_condition,
    fit_ensemble,
    make_spacegan,
    masked_mie,
    nearest_masked,
    neighbour_condition,
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


def test_neighbour_condition_excludes_the_point_itself_and_held_out_points():
    d = toy_grid(jax.random.PRNGKey(3), 5)
    mask = jnp.ones(25).at[jnp.array([0, 1, 2])].set(0.0)
    k = 4
    c, ys = neighbour_condition(d.x, d.coords, d.y, mask, k)
    assert c.shape == (25, k * 3 + 3)
    idx = np.asarray(nearest_masked(d.coords, mask, k))
    assert not np.any(idx == np.arange(25)[:, None])  # never the point itself
    assert not np.isin(idx, [0, 1, 2]).any()  # never a held-out point
    # distances are sorted: nearest first
    dist = np.linalg.norm(np.asarray(d.coords)[idx] - np.asarray(d.coords)[:, None], axis=-1)
    assert np.all(np.diff(dist, axis=1) >= -1e-6)
    # the per-neighbour targets and the lag are the neighbours' standardised targets
    ys_np = np.asarray(ys)
    np.testing.assert_allclose(np.asarray(c[:, 2 : 3 * k : 3]), ys_np[idx], atol=1e-6)
    np.testing.assert_allclose(np.asarray(c[:, -1]), ys_np[idx].mean(1), atol=1e-5)
    # a held-out point's own target and features never enter any condition
    y2 = d.y.at[1].add(100.0)
    x2 = d.x.at[1].add(100.0)
    c2, _ = neighbour_condition(x2, d.coords, y2, mask, k)
    np.testing.assert_allclose(np.asarray(c2), np.asarray(c), atol=1e-6)
    # while a training point's target does enter its neighbours' conditions
    c3, _ = neighbour_condition(d.x, d.coords, d.y.at[12].add(5.0), mask, k)
    assert float(jnp.abs(c3 - c).max()) > 0.1
    cc = coordinate_condition(d.coords, mask, c.shape[1])
    assert cc.shape == c.shape and float(jnp.abs(cc[:, 2:]).max()) == 0.0


def test_spacegan_training_selects_best_checkpoints_under_vmap():
    d = toy_grid(jax.random.PRNGKey(4), 5)
    w = knn_weights(d.coords, 4)
    mask = jnp.ones(25).at[:6].set(0.0)
    c, ys = neighbour_condition(d.x, d.coords, d.y, mask, 4)
    st = SpaceGANSettings(hidden=8, noise_dim=2, steps=30, ckpt_every=10, n_draws=2)
    model = make_spacegan(st)
    task = SpatialTask(c, ys, w, mask)
    train = jax.jit(jax.vmap(model.train, in_axes=(0, None)))
    sel, info = train(jax.random.split(jax.random.PRNGKey(5), 2), task)
    assert info["mie"].shape == (2, 3) and np.all(np.isfinite(info["mie"]))
    # the returned generator is the checkpoint with the lowest training MIE: re-evaluating it
    # with the same draws gives the curve's minimum
    best = np.argmin(np.asarray(info["mie"]), 1)
    assert best.shape == (2,)
    ho = masked_mie(
        jax.tree_util.tree_map(lambda a: a[0], sel), jax.random.PRNGKey(0), task, 1 - mask, 3, st
    )
    assert np.isfinite(float(ho)) and float(ho) > 0


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
