"""Optimistic / adaptive policy optimisation: exact gradients, special cases, metrics, verdict."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.experiments import accelerated_po
from metalab.metagrad import accelerated_pg as apg
from metalab.rl.envs import garnet


@pytest.fixture(scope="module")
def mdp():
    # built with numpy (no compilation): 5 states, 3 actions, dense random transitions
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(5), size=(5, 3)).astype(np.float32)
    R = rng.uniform(size=(5, 3)).astype(np.float32)
    return garnet.GarnetMDP(
        P=jnp.asarray(P), R=jnp.asarray(R), gamma=jnp.float32(0.8), rho=jnp.full((5,), 0.2)
    )


def test_policy_gradient_matches_autodiff(mdp):
    z = jax.random.normal(jax.random.PRNGKey(1), (5, 3))
    both = jax.jit(
        lambda z: (
            apg.policy_gradient(mdp, z),
            jax.grad(lambda z: garnet.expected_return(mdp, jax.nn.softmax(z, -1)))(z),
        )
    )
    exact, auto = both(z)
    np.testing.assert_allclose(exact, auto, rtol=1e-3, atol=1e-6)


def solve(mdp, method, n, **hp):
    return apg.make_train(apg.AcceleratedPGConfig(method=method, num_iters=n))(
        mdp, apg.PGParams(**hp)
    )


def test_optimistic_with_zero_beta_is_npg(mdp):
    a, b = jax.jit(
        lambda: (
            solve(mdp, "npg", 20, lr=0.5)["J"],
            solve(mdp, "optimistic", 20, lr=0.5, beta=0.0)["J"],
        )
    )()
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_noisy_advantages_with_zero_noise_key_independent(mdp):
    train = apg.make_train(apg.AcceleratedPGConfig(method="npg", num_iters=10, adv_noise=0.5))
    hp = apg.PGParams(lr=1.0)
    a = jax.jit(train)(mdp, hp, jax.random.PRNGKey(0))["J"]
    b = jax.jit(train)(mdp, hp, jax.random.PRNGKey(1))["J"]
    assert not np.allclose(a, b)  # noise enters
    exact = solve(mdp, "npg", 10, lr=1.0)["J"]
    assert float(jnp.abs(a - exact).max()) > 0


def test_npg_improves_monotonically_and_reaches_optimum(mdp):
    v, _ = garnet.optimal_values(mdp)
    J = np.asarray(jax.jit(lambda: solve(mdp, "npg", 300, lr=5.0)["J"])())
    assert np.all(np.diff(J) >= -1e-6)
    assert J[-1] == pytest.approx(float(mdp.rho @ v), rel=1e-4)


def test_prediction_loss_gradient_sign():
    z_prev, z = jnp.zeros((1, 2)), jnp.array([[0.5, 0.0]])
    w = jnp.ones(1)
    further = z + 2.0 * (z - z_prev)  # the policy kept moving the same way: beta should grow
    back = z_prev  # the policy came back: beta should shrink
    g = jax.jit(jax.grad(apg.prediction_loss))
    assert float(g(0.5, z, z_prev, further, w)) < 0
    assert float(g(0.5, z, z_prev, back, w)) > 0


def test_iterations_and_overshoot_hand_computed():
    J = jnp.array([0.0, 0.5, 0.9, 0.8, 0.999, 1.0])
    assert int(apg.iterations_to_optimal(J, 1.0, 1e-2)) == 4
    assert int(apg.iterations_to_optimal(J[:3], 1.0, 1e-2)) == 3  # censored: len(J)
    assert float(apg.overshoot(J, 1.0)) == pytest.approx(0.1, rel=1e-5)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="method"):
        apg.AcceleratedPGConfig(method="mirror")
    with pytest.raises(ValueError, match="num_iters"):
        apg.AcceleratedPGConfig(num_iters=0)
    with pytest.raises(ValueError, match="adv_noise"):
        apg.AcceleratedPGConfig(adv_noise=-1.0)


def test_verdict_fails_when_the_ordering_is_reversed():
    cfg = accelerated_po.PRESETS["smoke"]
    rng = np.random.default_rng(0)

    def fake(order, gaps):
        m = {}
        for name, base in order.items():
            m[f"iters/{name}"] = np.float32(base + rng.integers(0, 3))
            m[f"gap_noisy/{name}"] = np.float32(gaps[name] + 0.01 * rng.normal())
            for k in ("step", "step_noisy", "overshoot_noisy"):
                m[f"{k}/{name}"] = np.float32(1.0)
        return m

    names = ("pg", "npg", "optimistic", "adaptive", "optimistic-naive")
    good = [
        fake(
            dict(zip(names, (200, 80, 20, 18, 80), strict=True)),
            dict(zip(names, (-1, -2, -3, -3, -2), strict=True)),
        )
        for _ in range(8)
    ]
    assert accelerated_po.EXPERIMENT.judge(good, cfg).reproduced
    bad = [
        fake(
            dict(zip(names, (20, 80, 200, 400, 80), strict=True)),
            dict(zip(names, (-3, -2, -1, -1, -2), strict=True)),
        )
        for _ in range(8)
    ]
    assert not any(c.passed for c in accelerated_po.EXPERIMENT.judge(bad, cfg).checks)
