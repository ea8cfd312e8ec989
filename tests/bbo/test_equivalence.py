"""metalab's LES / LGA / DES against evosax 0.3.2 with the same weights and keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.algorithms import DiscoveredES, LearnedES, LearnedGA

from metalab.bbo.des import DES
from metalab.bbo.les import LES
from metalab.bbo.lga import LGA
from metalab.bbo.weights import lga_from_evosax, les_from_evosax


def _rosen(x):
    return jnp.sum(100.0 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2, -1)


def _sphere_shift(x):
    return jnp.sum((x - 0.7) ** 2, -1)


@pytest.mark.parametrize("n,d", [(8, 3), (16, 10)])
def test_les_matches_evosax(n, d):
    ref = LearnedES(n, jnp.zeros(d))
    ours = LES(n, jnp.zeros(d), weights=les_from_evosax(ref.les_params))
    rp, op = ref.default_params, ours.default_params
    key = jax.random.PRNGKey(3)
    mean0 = jnp.linspace(-1.0, 1.0, d)
    rs = ref.init(key, mean0, rp)
    os_ = ours.init(key, mean0, op)
    for g in range(12):
        k_ask, k_tell = jax.random.split(jax.random.fold_in(key, g))
        xr, rs = ref.ask(k_ask, rs, rp)
        xo, os_ = ours.ask(k_ask, os_, op)
        np.testing.assert_allclose(xo, xr, rtol=1e-5, atol=1e-5)
        f = _rosen(xr)
        rs, _ = ref.tell(k_tell, xr, f, rs, rp)
        os_, _ = ours.tell(k_tell, xr, f, os_, op)
        np.testing.assert_allclose(os_.mean, rs.mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(os_.std, rs.std, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(os_.p_c, rs.p_c, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(os_.p_std, rs.p_std, rtol=1e-4, atol=1e-5)
        assert float(os_.best_fitness) == pytest.approx(float(rs.best_fitness), rel=1e-6)


@pytest.mark.parametrize("legacy", [True, False])
def test_lga_matches_evosax(legacy):
    n, d = 12, 5
    if legacy:
        ref = LearnedGA(n, jnp.zeros(d))  # default checkpoint: legacy sigma feature
    else:
        ref = LearnedGA(n, jnp.zeros(d), params=LearnedGA(n, jnp.zeros(d)).lga_params)
    ours = LGA(n, jnp.zeros(d), weights=lga_from_evosax(ref.lga_params), legacy_sigma_feature=legacy)
    rp, op = ref.default_params, ours.default_params
    key = jax.random.PRNGKey(7)
    x0 = jax.random.uniform(key, (n, d), minval=-3, maxval=3)
    f0 = _sphere_shift(x0)
    rs = ref.init(key, x0, f0, rp)
    os_ = ours.init(key, x0, f0, op)
    for g in range(12):
        k_ask, k_tell = jax.random.split(jax.random.fold_in(key, g))
        xr, rs = ref.ask(k_ask, rs, rp)
        xo, os_ = ours.ask(k_ask, os_, op)
        np.testing.assert_allclose(xo, xr, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(os_.std_C, rs.std_C, rtol=1e-4, atol=1e-6)
        f = _sphere_shift(xr)
        rs, _ = ref.tell(k_tell, xr, f, rs, rp)
        os_, _ = ours.tell(k_tell, xr, f, os_, op)
        np.testing.assert_allclose(os_.population, rs.population, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(os_.fitness, rs.fitness, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(os_.std, rs.std, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(os_.age, rs.age)
        assert float(os_.best_fitness) == pytest.approx(float(rs.best_fitness), rel=1e-6)
