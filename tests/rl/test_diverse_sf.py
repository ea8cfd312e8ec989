"""Diverse successive policies: rewards on hand-computed SFs, min-norm point, counting, smoke."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.experiments import diverse_sf as dsf_exp
from metalab.rl import diverse_sf as ds
from metalab.rl import successor_features as sf
from metalab.rl.envs.diversity_grid import diversity_grid
from metalab.rl.exact import as_jax


def test_min_norm_point_matches_segment_closed_form():
    a, b = np.array([2.0, 1.0]), np.array([-1.0, 2.0])
    t = np.clip(a @ (a - b) / ((a - b) @ (a - b)), 0, 1)
    expected = a + t * (b - a)
    pts = jnp.asarray([a, b, [9.0, 9.0]])
    c = ds.min_norm_point(pts, jnp.asarray([1.0, 1.0, 0.0]))  # third point masked out
    np.testing.assert_allclose(np.asarray(c), expected, atol=1e-4)


def test_robust_weights_solve_the_min_max():
    rng = np.random.default_rng(0)
    psi = jnp.asarray(rng.dirichlet(np.ones(5), size=3))
    mask = jnp.ones(3)
    w = ds.robust_weights(psi, mask)
    np.testing.assert_allclose(float(jnp.linalg.norm(w)), 1.0, rtol=1e-5)
    best = float(jnp.max(psi @ w))
    c = ds.min_norm_point(psi, mask)
    np.testing.assert_allclose(best, -float(jnp.linalg.norm(c)), rtol=1e-3, atol=1e-5)
    # no unit vector does better (random search over the sphere)
    u = rng.normal(size=(20000, 5))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    assert best <= (np.asarray(psi) @ u.T).max(axis=0).min() + 1e-4


def test_sf_correlation_reward_by_hand():
    psi_set = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    mask = jnp.asarray([1.0, 1.0, 0.0])
    phi = jnp.eye(2)
    # psi_k is most correlated with member 1 (0.7 > 0.3); member 2 is masked out.
    r = ds.sf_correlation_reward(jnp.asarray([0.3, 0.7]), psi_set, mask, phi)
    np.testing.assert_allclose(np.asarray(r), [0.0, -1.0])


def test_discriminator_reward_by_hand():
    occ_set = jnp.asarray([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]])
    mask = jnp.asarray([1.0, 0.0])
    occ_k = jnp.asarray([0.5, 0.0, 0.5])
    eps = 1e-3
    r = ds.discriminator_reward(occ_k, occ_set, mask, eps)
    q = (np.array([0.5, 0.0, 0.5]) + eps) / (np.array([1.0, 0.5, 0.5]) + 2 * eps)
    np.testing.assert_allclose(np.asarray(r), np.log(q) + np.log(2.0), rtol=1e-5, atol=1e-6)


def test_count_distinct_near_optimal_by_hand():
    psi = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.0, -1.0]])
    value = jnp.asarray([1.0, 0.95, 1.0, 0.5])
    # 0 counted; 1 far from 0; 2 too close to 0; 3 far but not near-optimal
    n = ds.count_distinct_near_optimal(psi, value, 1.0, 0.9, 0.5)
    assert float(n) == 2.0
    assert float(ds.count_distinct_near_optimal(psi, value, 1.0, 0.4, 0.5)) == 3.0


def test_successive_training_first_policy_optimal_and_set_filled():
    m = diversity_grid()
    mdp = as_jax(m)
    v_star = sf.optimal_normalised_value(mdp.P, mdp.r, mdp.d0, mdp.gamma)
    params = ds.DiverseSFParams(
        jnp.asarray(0.9), jnp.asarray(1.0), jnp.asarray(0.1), jnp.asarray(1e-3)
    )
    train = jax.jit(ds.make_train(3, 300, "sf"))
    state, lam = train(jax.random.PRNGKey(0), mdp, params, v_star)
    np.testing.assert_array_equal(np.asarray(state.mask), 1.0)
    assert float(state.value[0]) > 0.99 * float(v_star)
    np.testing.assert_allclose(np.asarray(state.occ.sum(1)), 1.0, rtol=1e-4)
    assert lam.shape == (2,)
    with pytest.raises(ValueError, match="reward"):
        ds.make_train(3, 10, "diayn")


def test_smoke_experiment():
    exp = dsf_exp.EXPERIMENT
    cfg = exp.config("smoke")
    out = jax.jit(jax.vmap(lambda k: exp.run(cfg, k)))(jax.random.split(jax.random.PRNGKey(0), 2))
    ms = [{k: np.asarray(v)[i] for k, v in out.items()} for i in range(2)]
    assert all(np.all(np.isfinite(v)) for m in ms for v in m.values())
    v = exp.judge(ms, cfg)
    assert [c.name for c in v.checks] == [r.name for r in dsf_exp.RULES]


def test_learned_discriminator_pieces_by_hand():
    phi = jnp.asarray([[1.0, 0.0], [-1.0, 0.0]])
    W = jnp.asarray([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    present = jnp.asarray([1.0, 1.0, 0.0])  # skill 2 absent: it gets no probability
    logq = ds.discriminator_logits(W, phi, present)
    p0 = np.exp(2) / (np.exp(2) + np.exp(-2))
    np.testing.assert_allclose(
        np.exp(np.asarray(logq)), [[p0, 1 - p0, 0], [1 - p0, p0, 0]], atol=1e-6
    )
    occ = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])
    np.testing.assert_allclose(
        float(ds.discriminator_loss(W, phi, occ, present)), -np.log(p0), rtol=1e-5
    )
    r = ds.learned_discriminator_reward(W, phi, present, 1)
    np.testing.assert_allclose(np.asarray(r), np.log([1 - p0, p0]) + np.log(2), rtol=1e-5)
    # the discriminator learns: after training on separable skills, q(k|s) -> 1 on its states
    gW = jax.grad(ds.discriminator_loss)(jnp.zeros((3, 3)), phi, occ, present)
    assert float(ds.discriminator_loss(-gW * 5.0, phi, occ, present)) < np.log(2)


def test_xy_features_are_centred_coordinates():
    m = diversity_grid(features="xy")
    assert m.phi.shape == (25, 2)
    np.testing.assert_allclose(m.phi[0], [-1.0, -1.0])
    np.testing.assert_allclose(m.phi[12], [0.0, 0.0])
    np.testing.assert_allclose(m.phi[24], [1.0, 1.0])
