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
from metalab.bbo.weights import les_from_evosax, lga_from_evosax


def _rosen(x):
    return jnp.sum(100.0 * (x[..., 1:] - x[..., :-1] ** 2) ** 2 + (1 - x[..., :-1]) ** 2, -1)


def _sphere_shift(x):
    return jnp.sum((x - 0.7) ** 2, -1)


@pytest.mark.parametrize("n,d", [(12, 6)])
def test_les_matches_evosax(n, d):
    ref = LearnedES(n, jnp.zeros(d))
    ours = LES(n, jnp.zeros(d), weights=les_from_evosax(ref.les_params))
    rp, op = ref.default_params, ours.default_params
    key = jax.random.PRNGKey(3)
    mean0 = jnp.linspace(-1.0, 1.0, d)
    rs = ref.init(key, mean0, rp)
    os_ = ours.init(key, mean0, op)
    ask, tell = jax.jit(ours.ask), jax.jit(ours.tell)
    for g in range(8):
        k_ask, k_tell = jax.random.split(jax.random.fold_in(key, g))
        xr, rs = ref.ask(k_ask, rs, rp)
        xo, os_ = ask(k_ask, os_, op)
        np.testing.assert_allclose(xo, xr, rtol=1e-5, atol=1e-5)
        f = _rosen(xr)
        rs, _ = ref.tell(k_tell, xr, f, rs, rp)
        os_, _ = tell(k_tell, xr, f, os_, op)
        np.testing.assert_allclose(os_.mean, rs.mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(os_.std, rs.std, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(os_.p_c, rs.p_c, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(os_.p_std, rs.p_std, rtol=1e-4, atol=1e-5)
        assert float(os_.best_fitness) == pytest.approx(float(rs.best_fitness), rel=1e-6)


def _sync(ours_state, ref_state):
    """Copy evosax's LGA state into metalab's layout (so each step starts from equal inputs)."""
    return ours_state.replace(
        population=ref_state.population,
        fitness=ref_state.fitness,
        std=ref_state.std,
        age=ref_state.age,
        std_C=ref_state.std_C,
        best_fitness_shaped=jnp.asarray(ref_state.best_fitness_shaped, jnp.float32),
        best_solution=ref_state.best_solution,
        best_fitness=jnp.asarray(ref_state.best_fitness, jnp.float32),
        generation_counter=jnp.asarray(ref_state.generation_counter, jnp.int32),
    )


@pytest.mark.parametrize("legacy", [True, False])
def test_lga_matches_evosax(legacy):
    """Same keys and same state -> same children, mutation rates and selections, every step.

    Each step restarts from evosax's state: LGA's range-normalised sigma feature is
    ill-conditioned when the parents' sigmas are nearly equal, so 1-ulp differences can grow
    over a long free-running trajectory (in either implementation).
    """
    n, d = 12, 5
    if legacy:
        ref = LearnedGA(n, jnp.zeros(d))  # default checkpoint: legacy sigma feature
    else:
        ref = LearnedGA(n, jnp.zeros(d), params=LearnedGA(n, jnp.zeros(d)).lga_params)
    w = lga_from_evosax(ref.lga_params)
    ours = LGA(n, jnp.zeros(d), weights=w, legacy_sigma_feature=legacy)
    rp, op = ref.default_params, ours.default_params
    ask, tell = jax.jit(ours.ask), jax.jit(ours.tell)
    key = jax.random.PRNGKey(7)
    x0 = jax.random.uniform(key, (n, d), minval=-3, maxval=3)
    f0 = _sphere_shift(x0)
    rs = ref.init(key, x0, f0, rp)
    os_ = ours.init(key, x0, f0, op)
    n_keep = 0
    for g in range(6):
        os_ = _sync(os_, rs)
        k_ask, k_tell = jax.random.split(jax.random.fold_in(key, g))
        xr, rs = ref.ask(k_ask, rs, rp)
        xo, os_ = ask(k_ask, os_, op)
        np.testing.assert_allclose(xo, xr, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(os_.std_C, rs.std_C, rtol=1e-4, atol=1e-6)
        f = _sphere_shift(xr)
        rs, _ = ref.tell(k_tell, xr, f, rs, rp)
        os_, _ = tell(k_tell, xr, f, os_, op)
        np.testing.assert_allclose(os_.population, rs.population, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(os_.fitness, rs.fitness, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(os_.std, rs.std, rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(os_.age, rs.age)
        n_keep += int(jnp.sum(rs.age > 0))
        assert float(os_.best_fitness) == pytest.approx(float(rs.best_fitness), rel=1e-6)
    assert n_keep > 0  # the keep-parent branch was exercised


def test_des_matches_evosax():
    n, d = 10, 4
    ref, ours = DiscoveredES(n, jnp.zeros(d)), DES(n, jnp.zeros(d))
    rp, op = ref.default_params, ours.default_params
    key = jax.random.PRNGKey(11)
    rs, os_ = ref.init(key, jnp.ones(d), rp), ours.init(key, jnp.ones(d), op)
    ask, tell = jax.jit(ours.ask), jax.jit(ours.tell)
    for g in range(6):
        k = jax.random.fold_in(key, g)
        xr, rs = ref.ask(k, rs, rp)
        xo, os_ = ask(k, os_, op)
        np.testing.assert_allclose(xo, xr, rtol=1e-5, atol=1e-6)
        f = _rosen(xr)
        rs, _ = ref.tell(k, xr, f, rs, rp)
        os_, _ = tell(k, xr, f, os_, op)
        np.testing.assert_allclose(os_.mean, rs.mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(os_.std, rs.std, rtol=1e-4, atol=1e-6)


def _metric_keys(algo, init_args, f):
    state = algo.init(*init_args, algo.default_params)
    x, state = algo.ask(jax.random.PRNGKey(1), state, algo.default_params)
    _, metrics = algo.tell(jax.random.PRNGKey(2), x, f(x), state, algo.default_params)
    return set(metrics)


def test_one_base_same_metrics_as_evosax():
    """LES/DES/LGA subclass evosax's bases and every tell returns evosax's metric keys."""
    from evosax.algorithms.distribution_based.base import DistributionBasedAlgorithm
    from evosax.algorithms.population_based.base import PopulationBasedAlgorithm

    from metalab.bbo import init_state, load_weights

    n, d = 8, 3
    key = jax.random.PRNGKey(0)
    les = LES(n, d, weights=load_weights("evosax-les"))
    des = DES(n, d)
    lga = LGA(n, d, weights=load_weights("evosax-lga", num_dims=d))
    assert isinstance(les, DistributionBasedAlgorithm) and isinstance(
        des, DistributionBasedAlgorithm
    )
    assert isinstance(lga, PopulationBasedAlgorithm)
    ref_es = _metric_keys(LearnedES(n, jnp.zeros(d)), (key, jnp.zeros(d)), _sphere_shift)
    assert _metric_keys(les, (key, jnp.zeros(d)), _sphere_shift) == ref_es
    assert _metric_keys(des, (key, jnp.zeros(d)), _sphere_shift) == ref_es
    x0 = jax.random.normal(key, (n, d))
    ref_ga = _metric_keys(LearnedGA(n, jnp.zeros(d)), (key, x0, _sphere_shift(x0)), _sphere_shift)
    assert _metric_keys(lga, (key, x0, _sphere_shift(x0)), _sphere_shift) == ref_ga
    # init_state hides the population-based init: LGA starts from a mean like an ES
    s = init_state(lga, key, jnp.full(d, 0.5), lga.default_params, _sphere_shift)
    assert s.population.shape == (n, d) and np.isfinite(float(s.best_fitness))
    s = init_state(les, key, jnp.full(d, 0.5), les.default_params)
    np.testing.assert_allclose(s.mean, 0.5)


def test_load_evosax_lga_picks_checkpoint_and_legacy_offset():
    """load_weights("evosax-lga", num_dims) = the checkpoint evosax's default LearnedGA loads,
    with the legacy offset, so metalab's LGA needs no flag to match it."""
    from metalab.bbo import load_weights, n_params
    from metalab.bbo.weights import fold_sigma_offset

    n = 10
    for d in (5, 60):  # v4 for D <= 50, v7 above
        ref = LearnedGA(n, jnp.zeros(d))
        w = load_weights("evosax-lga", num_dims=d)
        assert float(w["sigma_offset"]) == 2.0
        conv = lga_from_evosax(ref.lga_params)
        np.testing.assert_allclose(
            w["mutation"]["att"]["q"]["w"], conv["mutation"]["att"]["q"]["w"]
        )
        ours = LGA(n, jnp.zeros(d), weights=w)  # no legacy flag
        key = jax.random.PRNGKey(d)
        x0 = jax.random.normal(key, (n, d))
        rs = ref.init(key, x0, _sphere_shift(x0), ref.default_params)
        os_ = ours.init(key, x0, _sphere_shift(x0), ours.default_params)
        xr, rs = ref.ask(key, rs, ref.default_params)
        xo, os_ = ours.ask(key, os_, ours.default_params)
        np.testing.assert_allclose(os_.std_C, rs.std_C, rtol=1e-4)
        # folding the offset into the biases gives the same mutation rates without it
        folded = LGA(n, jnp.zeros(d), weights=fold_sigma_offset(w))
        sf = folded.init(key, x0, _sphere_shift(x0), folded.default_params)
        _, sf = folded.ask(key, sf, folded.default_params)
        np.testing.assert_allclose(sf.std_C, rs.std_C, rtol=1e-4)
        assert n_params(w) == 1906
    v4, v7 = load_weights("evosax-lga", num_dims=5), load_weights("evosax-lga", num_dims=60)
    assert not np.allclose(v4["mutation"]["log_var"]["w"], v7["mutation"]["log_var"]["w"])
    assert n_params(load_weights("evosax-les")) == 246


def test_katsuura_equals_evosax_where_finite_and_stays_finite_at_d100():
    """metalab's Katsuura takes the product over dimensions in log space: the same values as
    evosax's where evosax's is finite, and finite at D 100 where evosax's overflows to inf."""
    from evosax.problems.bbob.bbob_fns import bbob_fns as evosax_fns

    from metalab.bbo.problems import bbob_fns

    for d in (2, 10, 40, 100):
        k = jax.random.split(jax.random.PRNGKey(d), 4)
        x = jax.random.uniform(k[0], (d,), minval=-5.0, maxval=5.0)
        x_opt = jax.random.uniform(k[1], (d,), minval=-4.0, maxval=4.0)
        rot = jnp.linalg.qr(jax.random.normal(k[2], (d, d)))[0]
        q = jnp.linalg.qr(jax.random.normal(k[3], (d, d)))[0]
        ours = float(bbob_fns["katsuura"](x, x_opt, rot, q, d)[0])
        theirs = float(evosax_fns["katsuura"](x, x_opt, rot, q, d)[0])
        assert np.isfinite(ours) and ours > 0
        assert float(bbob_fns["katsuura"](x_opt, x_opt, rot, q, d)[0]) == 0.0
        if d < 100:
            np.testing.assert_allclose(ours, theirs, rtol=1e-5)
        else:
            assert theirs == np.inf  # the overflow this version avoids
