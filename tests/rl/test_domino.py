"""DOMiNO: diversity rewards on hand-computed SFs, multiplier bounds and signs, training loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.experiments import domino_gridworld
from metalab.rl import domino as dm
from metalab.rl import exact
from metalab.rl.envs.diversity_grid import diversity_grid
from metalab.rl.exact import as_jax

PSI = jnp.asarray([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
PHI = jnp.eye(2)


def test_nearest_neighbours_by_hand():
    j, d = dm.nearest_neighbours(PSI)
    np.testing.assert_array_equal(np.asarray(j), [2, 2, 0])
    np.testing.assert_allclose(
        np.asarray(d), [np.sqrt(0.02), np.sqrt(1.62), np.sqrt(0.02)], rtol=1e-5
    )


def test_repulsive_reward_by_hand():
    r = dm.repulsive_reward(PSI, PHI)
    np.testing.assert_allclose(np.asarray(r), [[0.1, -0.1], [-0.9, 0.9], [-0.1, 0.1]], atol=1e-6)


def test_van_der_waals_reward_by_hand():
    l0 = 1.0
    r = dm.van_der_waals_reward(PSI, PHI, l0)
    f_close = 1 - (np.sqrt(0.02) / l0) ** 3  # ~0.99717: still repelling
    f_far = 1 - (np.sqrt(1.62) / l0) ** 3  # ~-1.0619: beyond l0, attracting
    expected = [
        [0.1 * f_close, -0.1 * f_close],
        [-0.9 * f_far, 0.9 * f_far],
        [-0.1 * f_close, 0.1 * f_close],
    ]
    np.testing.assert_allclose(np.asarray(r), expected, rtol=1e-5)
    # at exactly l0 the reward vanishes; for l0 -> inf it is the repulsive reward
    psi = jnp.asarray([[0.0, 0.0], [0.6, 0.8]])
    np.testing.assert_allclose(np.asarray(dm.van_der_waals_reward(psi, PHI, 1.0)), 0.0, atol=1e-6)
    np.testing.assert_allclose(
        np.asarray(dm.van_der_waals_reward(PSI, PHI, 1e6)),
        np.asarray(dm.repulsive_reward(PSI, PHI)),
        atol=1e-6,
    )


def test_repulsive_reward_is_gradient_of_half_squared_distance():
    # With one-hot features psi_i = d_i, so d/dd_i 0.5 ||d_i phi - psi_j||^2 = phi (psi_i - psi_j).
    rng = np.random.default_rng(0)
    occ = jnp.asarray(rng.dirichlet(np.ones(4), size=3))
    phi = jnp.asarray(rng.normal(size=(4, 2)))
    psi = occ @ phi
    j, _ = dm.nearest_neighbours(psi)
    for i in range(3):
        g = jax.grad(lambda d, i=i: 0.5 * jnp.sum((d @ phi - psi[j[i]]) ** 2))(occ[i])
        np.testing.assert_allclose(
            np.asarray(g), np.asarray(dm.repulsive_reward(psi, phi)[i]), atol=1e-5
        )


def test_multiplier_signs_and_bounds():
    mu = jnp.zeros(2)
    v_e = jnp.asarray([0.5, 1.0])  # first violates alpha * v* = 0.9, second satisfies it
    g = jax.grad(dm.multiplier_loss)(mu, v_e, 1.0, 0.9)
    # descent raises mu (lambda) for the violated constraint, lowers it for the satisfied one
    assert g[0] < 0 < g[1]
    np.testing.assert_allclose(np.asarray(g), 0.25 * np.asarray([-0.4, 0.1]), rtol=1e-5)
    lam = jax.nn.sigmoid(jnp.asarray([-50.0, 50.0]))
    assert float(lam.min()) >= 0.0 and float(lam.max()) <= 1.0
    r = dm.mixed_reward(
        jnp.asarray([0.25, 1.0]), jnp.asarray([1.0, 0.0]), jnp.asarray([[2.0, 4.0], [5.0, 5.0]])
    )
    np.testing.assert_allclose(np.asarray(r), [[1.75, 3.0], [1.0, 0.0]])


def test_update_clips_mu_and_keeps_latent0_extrinsic():
    m = diversity_grid()
    mdp = as_jax(m)
    params = dm.DominoParams(
        jnp.asarray(0.9),
        jnp.asarray(1.0),
        jnp.asarray(1.0),
        jnp.asarray(100.0),
        jnp.asarray(0.5),
        2.0,
    )
    train = jax.jit(dm.make_train(3, 30, "vdw", "lagrange"))
    state, info = train(jax.random.PRNGKey(0), mdp, params)
    assert np.all(np.abs(np.asarray(state.mu)) <= 2.0 + 1e-6)
    np.testing.assert_allclose(np.asarray(info["lambda"][:, 0]), 1.0)
    lam = np.asarray(info["lambda"][:, 1:])
    assert lam.min() >= jax.nn.sigmoid(-2.0) - 1e-6 and lam.max() <= jax.nn.sigmoid(2.0) + 1e-6


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="mixing"):
        dm.make_train(3, 10, mixing="average")
    with pytest.raises(ValueError, match="diversity"):
        dm.diversity_reward(PSI, PHI, "coulomb")
    with pytest.raises(ValueError, match="n >= 2"):
        dm.nearest_neighbours(PSI[:1])


def test_smoke_experiment():
    exp = domino_gridworld.EXPERIMENT
    cfg = exp.config("smoke")
    out = jax.jit(jax.vmap(lambda k: exp.run(cfg, k)))(jax.random.split(jax.random.PRNGKey(0), 2))
    ms = [{k: np.asarray(v)[i] for k, v in out.items()} for i in range(2)]
    assert all(np.all(np.isfinite(v)) for m in ms for v in m.values())
    v = exp.judge(ms, cfg)
    assert [c.name for c in v.checks] == [r.name for r in domino_gridworld.RULES]
    # D*(alpha) = sqrt(2) gamma^4 (1 - q): alpha = bad reward gives the full corner distance
    np.testing.assert_allclose(
        float(domino_gridworld.max_distance(cfg, cfg.bad_reward)), np.sqrt(2) * 0.95**4, rtol=1e-6
    )
    np.testing.assert_allclose(float(domino_gridworld.max_distance(cfg, 1.0)), 0.0, atol=1e-7)


def test_goal_features_make_sfs_the_time_at_each_goal():
    m = as_jax(diversity_grid(goal_rewards=(1.0, 0.5, 0.5, 0.5), features="goals"))
    assert m.phi.shape == (25, 4)
    # a deterministic policy to goal 0 (up-left corner): up, up, left, left from the centre
    _, pi = exact.policy_iteration(m.P, m.r, m.gamma, 30)
    psi = exact.expected_successor_features(m.P, pi, m.phi, m.d0, m.gamma)
    np.testing.assert_allclose(np.asarray(psi), [0.95**4, 0, 0, 0], atol=1e-5)
