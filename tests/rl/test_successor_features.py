"""Exact successor features against closed forms and identities on random tabular MDPs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl import successor_features as sf
from metalab.rl.envs.diversity_grid import diversity_grid


def _random_mdp(seed: int, S: int = 6, A: int = 3, d: int = 4):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(S), size=(S, A))
    pi = rng.dirichlet(np.ones(A), size=S)
    phi = rng.normal(size=(S, d))
    r = rng.uniform(size=(S, A))
    d0 = rng.dirichlet(np.ones(S))
    return P, pi, phi, r, d0


def test_sf_matches_closed_form_and_bellman_iteration():
    P, pi, phi, _, _ = _random_mdp(0)
    gamma = 0.9
    P_pi = np.einsum("sa,sat->st", pi, P)
    closed = np.linalg.inv(np.eye(P.shape[0]) - gamma * P_pi) @ phi
    psi = np.asarray(
        sf.successor_features(jnp.asarray(P), jnp.asarray(pi), jnp.asarray(phi), gamma)
    )
    np.testing.assert_allclose(psi, closed, rtol=1e-4, atol=1e-5)
    # Independent check: iterate the SF Bellman equation psi = phi + gamma P_pi psi.
    it = np.zeros_like(phi)
    for _ in range(400):
        it = phi + gamma * P_pi @ it
    np.testing.assert_allclose(psi, it, rtol=1e-4, atol=1e-4)


def test_state_action_features_reduce_to_policy_average():
    P, pi, _, _, _ = _random_mdp(1)
    rng = np.random.default_rng(1)
    phi_sa = rng.normal(size=(P.shape[0], P.shape[1], 2))
    phi_pi = np.einsum("sa,sad->sd", pi, phi_sa)
    a = sf.successor_features(jnp.asarray(P), jnp.asarray(pi), jnp.asarray(phi_sa), 0.8)
    b = sf.successor_features(jnp.asarray(P), jnp.asarray(pi), jnp.asarray(phi_pi), 0.8)
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_occupancy_one_hot_sfs_and_values_agree():
    P, pi, _, r, d0 = _random_mdp(2)
    P, pi, r, d0 = map(jnp.asarray, (P, pi, r, d0))
    gamma, S = 0.9, P.shape[0]
    occ = sf.state_occupancy(P, pi, d0, gamma)
    np.testing.assert_allclose(float(occ.sum()), 1.0, rtol=1e-5)
    psi = sf.expected_successor_features(P, pi, jnp.eye(S), d0, gamma)
    np.testing.assert_allclose(np.asarray(psi), np.asarray(occ), atol=1e-6)
    # v = (1 - gamma) d0 V = sum_s d(s) r_pi(s); and the value of reward w.phi is w.psi.
    v = sf.normalised_value(P, pi, r, d0, gamma)
    np.testing.assert_allclose(float(v), float(occ @ sf.policy_reward(r, pi)), rtol=1e-5)
    # the SF TD error vanishes in expectation at the closed form.
    phi = jnp.eye(S)
    Psi = sf.successor_features(P, pi, phi, gamma)
    P_pi = sf.policy_transitions(P, pi)
    td = sf.sf_td_error(phi, gamma, Psi, P_pi @ Psi)
    np.testing.assert_allclose(np.asarray(td), 0.0, atol=1e-5)


def test_policy_gradient_theorem_identity():
    P, _, _, r, d0 = _random_mdp(3)
    P, r, d0 = map(jnp.asarray, (P, r, d0))
    gamma = 0.9
    logits = jax.random.normal(jax.random.PRNGKey(0), r.shape)
    pi = sf.softmax_policy(logits)
    g = sf.policy_gradient(P, logits, r, d0, gamma)
    # d/dtheta_sa [(1-gamma) d0 V] = d_pi(s) pi(a|s) A(s, a).
    occ = sf.state_occupancy(P, pi, d0, gamma)
    adv = sf.natural_direction(P, logits, r, gamma) / (1 - gamma)
    np.testing.assert_allclose(np.asarray(g), np.asarray(occ[:, None] * pi * adv), atol=1e-5)
    # finite difference on one coordinate
    e = jnp.zeros_like(logits).at[1, 2].set(1e-2)
    f = lambda th: sf.normalised_value(P, sf.softmax_policy(th), r, d0, gamma)
    fd = (f(logits + e) - f(logits - e)) / 2e-2
    np.testing.assert_allclose(float(fd), float(g[1, 2]), rtol=2e-2, atol=1e-5)


def test_optimal_value_on_grid_is_discounted_goal_reward():
    m = diversity_grid()  # goals four steps from the start, reward 1 per step in them
    v = sf.optimal_normalised_value(jnp.asarray(m.P), jnp.asarray(m.r), jnp.asarray(m.d0), m.gamma)
    np.testing.assert_allclose(float(v), m.gamma**4, rtol=1e-4)
    np.testing.assert_allclose(m.P.sum(-1), 1.0)


def test_jit_vmap_over_policies():
    P, _, phi, _, d0 = _random_mdp(4)
    logits = jax.random.normal(jax.random.PRNGKey(1), (5, *P.shape[:2]))
    f = jax.jit(
        jax.vmap(
            lambda th: sf.expected_successor_features(
                jnp.asarray(P), sf.softmax_policy(th), jnp.asarray(phi), jnp.asarray(d0), 0.9
            )
        )
    )
    out = f(logits)
    ref = np.stack(
        [
            np.asarray(
                sf.expected_successor_features(
                    jnp.asarray(P), sf.softmax_policy(t), jnp.asarray(phi), jnp.asarray(d0), 0.9
                )
            )
            for t in logits
        ]
    )
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-6)


def test_bad_shapes_raise():
    P, pi, phi, _, _ = _random_mdp(5)
    with pytest.raises(ValueError, match="pi must have shape"):
        sf.successor_features(jnp.asarray(P), jnp.asarray(pi[:, :2]), jnp.asarray(phi), 0.9)
    with pytest.raises(ValueError, match="outside"):
        diversity_grid(goals=((9, 9),), goal_rewards=(1.0,))
    with pytest.raises(ValueError, match="goal_rewards"):
        diversity_grid(goal_rewards=(1.0,))
