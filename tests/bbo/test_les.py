"""LES / DES / LGA properties: invariances, vmap over weights, jit, minimisation, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.bbo.des import DES, des_rank_weights
from metalab.bbo.features import centred_ranks, fitness_features, tanh_time_embedding
from metalab.bbo.les import LES, LESParams, init_les_net, les_ask, les_init, les_tell
from metalab.bbo.lga import LGAParams, init_lga_net, lga_ask, lga_init, lga_tell
from metalab.bbo.weights import evosax_weights, flatten_dict, unflatten_dict


def test_feature_reference_values():
    f = jnp.array([3.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(centred_ranks(f), [1 / 6, -0.5, -1 / 6, 0.5], atol=1e-6)
    feats = fitness_features(f, jnp.float32(2.5))
    np.testing.assert_array_equal(feats[:, 0], [0, 1, 1, 0])
    z = (np.array([3, 1, 2, 5]) - 2.75) / np.std([3, 1, 2, 5])
    np.testing.assert_allclose(feats[:, 2], z, rtol=1e-5)
    np.testing.assert_allclose(tanh_time_embedding(0)[0], np.tanh(-1.0), rtol=1e-6)
    np.testing.assert_allclose(tanh_time_embedding(30)[3], 0.0, atol=1e-7)


@pytest.mark.parametrize("n", [2, 16, 64, 65, 300])
def test_centred_ranks_equal_a_stable_argsort_with_ties_nan_and_inf(n):
    """Both rank paths (pairwise counts up to 64 members, argsort above) order as numpy's
    stable argsort: NaN after +inf, ties by position."""
    rng = np.random.default_rng(n)
    f = rng.normal(size=n).astype(np.float32)
    f[::3] = f[1]  # ties
    f[rng.integers(n)] = np.nan
    f[rng.integers(n)] = np.inf
    f[rng.integers(n)] = -np.inf
    ranks = np.empty(n)
    ranks[np.argsort(f, kind="stable")] = np.arange(n)
    np.testing.assert_allclose(centred_ranks(jnp.asarray(f)), ranks / (n - 1) - 0.5, atol=1e-7)


def test_les_parameter_count_matches_paper():
    net = jax.eval_shape(init_les_net, jax.random.PRNGKey(0))
    n = sum(x.size for x in jax.tree.leaves(net))
    assert n == 246  # the paper's LES has 246 parameters


def test_les_permutation_invariant_and_vmaps_over_weights():
    n, d = 12, 5
    net = evosax_weights("les")
    params = LESParams(jnp.float32(0.7), net)
    key = jax.random.PRNGKey(0)
    state = les_init(jnp.ones(d), params)
    x = les_ask(key, state, n)
    f = jnp.sum(x**2, 1)
    perm = jax.random.permutation(jax.random.PRNGKey(1), n)
    tell1 = jax.jit(les_tell)
    a = tell1(x, f, state, params)
    b = tell1(x[perm], f[perm], state, params)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.std, b.std, rtol=1e-5, atol=1e-6)
    # vmap over a batch of candidate weights equals a Python loop over them
    nets = [init_les_net(jax.random.PRNGKey(i)) for i in range(3)]
    batched = jax.tree.map(lambda *xs: jnp.stack(xs), *nets)
    tell = jax.jit(jax.vmap(lambda w: les_tell(x, f, state, LESParams(jnp.float32(0.7), w)).mean))
    out = tell(batched)
    for i, w in enumerate(nets):
        ref = tell1(x, f, state, LESParams(jnp.float32(0.7), w)).mean
        np.testing.assert_allclose(out[i], ref, rtol=1e-5)


def test_les_minimises_sphere():
    """With evosax's weights LES reduces a shifted sphere by orders of magnitude (minimisation)."""
    d, n = 6, 16
    es = LES(n, d, weights=evosax_weights("les"))
    params = es.default_params

    def run(key):
        state = es.init(key, jnp.full(d, 3.0), params)

        def step(s, k):
            x, s = es.ask(k, s, params)
            s, _ = es.tell(k, x, jnp.sum((x - 0.5) ** 2, 1), s, params)
            return s, None

        s, _ = jax.lax.scan(step, state, jax.random.split(key, 60))
        return s.best_fitness

    best = jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(0), 2))
    assert np.all(np.asarray(best) < 1e-2 * 6 * 2.5**2)


def test_des_weights_reference():
    w = des_rank_weights(5, jnp.float32(12.5))
    c = np.arange(5) / 4 - 0.5
    ref = np.exp(-20 / (1 + np.exp(-12.5 * c)))
    np.testing.assert_allclose(w, ref / ref.sum(), rtol=1e-5)
    assert w[0] > w[-1]  # rank 0 (lowest fitness) gets the largest weight
    with pytest.raises(ValueError, match="population_size"):
        DES(1, 3)


def test_lga_keep_parent_bookkeeping_and_vmap():
    n, d = 8, 3
    key = jax.random.PRNGKey(2)
    params = LGAParams(jnp.float32(1.0), jnp.float32(0.0), init_lga_net(key))
    x0 = jax.random.normal(key, (n, d))
    sphere = lambda x: jnp.sum(x**2, 1)
    state = lga_init(x0, sphere(x0), params)
    ask = jax.jit(lga_ask, static_argnums=3)
    tell = jax.jit(lga_tell)
    for g in range(4):
        k1, k2 = jax.random.split(jax.random.fold_in(key, g))
        x, state_a = ask(k1, state, params, n)
        new = tell(k2, x, sphere(x), state_a, params)
        # archive fitness is the fitness of the archived solutions
        np.testing.assert_allclose(new.fitness, sphere(new.population), rtol=1e-5)
        kept = np.asarray(new.age) > 0
        np.testing.assert_array_equal(np.asarray(new.age)[kept], np.asarray(state.age)[kept] + 1)
        np.testing.assert_allclose(
            np.asarray(new.population)[kept], np.asarray(state.population)[kept]
        )
        state = new
    nets = jax.tree.map(
        lambda *a: jnp.stack(a), *[init_lga_net(jax.random.PRNGKey(i)) for i in range(2)]
    )
    f = jax.jit(jax.vmap(lambda w: lga_ask(key, state, params.replace(net=w), n)[0]))(nets)
    assert f.shape == (2, n, d)


def test_bad_input_and_weight_roundtrip(tmp_path):
    with pytest.raises(ValueError, match="population_size"):
        LES(1, 3, weights={})
    net = init_lga_net(jax.random.PRNGKey(0))
    back = unflatten_dict(flatten_dict(net))
    for a, b in zip(jax.tree.leaves(net), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)


def test_scale_recombination_is_an_inverse_temperature():
    from metalab.bbo.les import recombination_weights
    from metalab.bbo.weights import scale_recombination

    net = evosax_weights("les")
    f = jax.random.normal(jax.random.PRNGKey(3), (16,))
    feats = fitness_features(f, jnp.min(f) + 0.1)
    base = recombination_weights(net, feats)
    logits = jnp.log(base)  # softmax logits up to a constant
    for s in (0.3, 1.0, 2.0):
        w = recombination_weights(scale_recombination(net, s), feats)
        np.testing.assert_allclose(w, jax.nn.softmax(s * logits), rtol=1e-4, atol=1e-7)
    # a smaller scale flattens the profile without reordering members
    flat = recombination_weights(scale_recombination(net, 0.3), feats)
    assert float(flat.max()) < float(base.max())
    np.testing.assert_array_equal(jnp.argsort(flat), jnp.argsort(base))
    # the learning-rate network and the input weights are untouched
    scaled = scale_recombination(net, 0.3)
    np.testing.assert_array_equal(scaled["lr"]["hidden"]["w"], net["lr"]["hidden"]["w"])
    np.testing.assert_array_equal(
        net["recomb"]["v"]["w"], evosax_weights("les")["recomb"]["v"]["w"]
    )
    # the scale can be traced: a batch of temperatures under vmap
    ws = jax.vmap(lambda s: recombination_weights(scale_recombination(net, s), feats))(
        jnp.array([0.3, 2.0])
    )
    np.testing.assert_allclose(ws[1], jax.nn.softmax(2.0 * logits), rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="scale must be a positive"):
        scale_recombination(net, 0.0)
    with pytest.raises(ValueError, match="scale must be a positive"):
        scale_recombination(net, float("nan"))
    with pytest.raises(ValueError, match="needs LES weights"):
        scale_recombination(evosax_weights("lga"), 0.5)
