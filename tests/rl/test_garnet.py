"""Exact evaluation of random Garnet MDPs against an independent numpy solve."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl.envs import garnet


@pytest.fixture(scope="module")
def mdp():
    return jax.jit(garnet.make_garnet, static_argnums=(1, 2, 3, 4))(
        jax.random.PRNGKey(0), 6, 3, 2, 0.9
    )


def test_transitions_are_distributions_with_branching(mdp):
    P = np.asarray(mdp.P)
    np.testing.assert_allclose(P.sum(-1), 1.0, atol=1e-5)
    assert ((P > 0).sum(-1) == 2).all()


def test_policy_values_match_numpy_linear_solve_and_iteration(mdp):
    pi = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(1), (6, 3)), -1)
    P, R, g = np.asarray(mdp.P, np.float64), np.asarray(mdp.R, np.float64), 0.9
    pin = np.asarray(pi, np.float64)
    P_pi = np.einsum("sa,sat->st", pin, P)
    r_pi = (pin * R).sum(-1)
    v_np = np.linalg.solve(np.eye(6) - g * P_pi, r_pi)
    np.testing.assert_allclose(garnet.policy_values(mdp, pi), v_np, rtol=1e-4)
    v = np.zeros(6)
    for _ in range(400):  # iterative policy evaluation, an independent route
        v = r_pi + g * P_pi @ v
    np.testing.assert_allclose(v, v_np, rtol=1e-6)
    q = np.asarray(garnet.q_values(mdp, pi))
    np.testing.assert_allclose((pin * q).sum(-1), v_np, rtol=1e-4)


def test_optimal_values_satisfy_bellman_optimality(mdp):
    v, pi = garnet.optimal_values(mdp)
    q = mdp.R + mdp.gamma * jnp.einsum("sat,t->sa", mdp.P, v)
    np.testing.assert_allclose(v, q.max(-1), rtol=1e-4)
    # no stochastic policy does better
    pi_rand = jax.nn.softmax(jax.random.normal(jax.random.PRNGKey(2), (6, 3)), -1)
    assert np.all(np.asarray(garnet.policy_values(mdp, pi_rand)) <= np.asarray(v) + 1e-4)


def test_visitation_is_a_distribution(mdp):
    d = garnet.discounted_visitation(mdp, jnp.full((6, 3), 1 / 3))
    assert float(d.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(num_states=1), "num_states"),
        (dict(num_actions=1), "num_actions"),
        (dict(branching=9), "branching"),
        (dict(gamma=1.0), "gamma"),
    ],
)
def test_bad_arguments_raise(kw, field):
    args = dict(num_states=6, num_actions=3, branching=2, gamma=0.9) | kw
    with pytest.raises(ValueError, match=field):
        garnet.make_garnet(jax.random.PRNGKey(0), **args)
