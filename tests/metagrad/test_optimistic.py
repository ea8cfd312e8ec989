"""Optimistic meta-gradients: identities, closed forms and failure handling."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.metagrad import optimistic as opt
from metalab.metagrad import problems


@pytest.fixture(scope="module")
def quad():
    return problems.random_quadratic(jax.random.PRNGKey(0), 6, 50.0)


def test_random_quadratic_has_requested_spectrum_and_optimum(quad):
    eig = jnp.linalg.eigvalsh(quad.A)
    np.testing.assert_allclose(eig[-1] / eig[0], 50.0, rtol=1e-3)
    x_star = jnp.linalg.solve(quad.A, quad.b)
    np.testing.assert_allclose(problems.quadratic_value(quad, x_star), quad.f_star, rtol=1e-4)


def test_gradient_descent_matches_closed_form(quad):
    f = partial(problems.quadratic_value, quad)
    lr, t = 1.0 / quad.L, 25
    tr = opt.gradient_descent(f, quad.x0, quad.f_star, lr, t)
    x_star = jnp.linalg.solve(quad.A, quad.b)
    m = jnp.eye(6) - lr * quad.A
    x_t = x_star + jnp.linalg.matrix_power(m, t) @ (quad.x0 - x_star)
    np.testing.assert_allclose(tr.subopt[-1], f(x_t) - quad.f_star, rtol=1e-3, atol=1e-6)
    assert tr.subopt.shape == (t + 1,)
    assert not bool(tr.diverged)


def test_bmg_one_step_target_equals_meta_gradient_times_step(quad):
    """The must-have identity: BMG (L = 1, squared distance) = (1/L) * plain meta-gradient."""
    f = partial(problems.quadratic_value, quad)
    w = opt.RuleParams(jnp.asarray(0.3), jnp.asarray(-0.5))
    x, x_prev = quad.x0, 0.9 * quad.x0
    plain = opt.meta_gradient(f, w, x, x_prev, quad.L, bootstrap_steps=0)
    bmg = opt.meta_gradient(f, w, x, x_prev, quad.L, bootstrap_steps=1)
    for a, b in zip(bmg, plain, strict=True):
        np.testing.assert_allclose(a, b / quad.L, rtol=1e-4)
    custom = opt.meta_gradient(f, w, x, x_prev, quad.L, bootstrap_steps=1, target_lr=0.25)
    for a, b in zip(custom, plain, strict=True):
        np.testing.assert_allclose(a, 0.25 * b, rtol=1e-4)


def test_optimistic_target_matches_hand_rolled_look_ahead(quad):
    """BMG with L = 3: gradient = J^T (x_1 - z), z = two look-ahead rule steps + a GD step."""
    f = partial(problems.quadratic_value, quad)
    g = jax.grad(f)
    w = opt.RuleParams(jnp.asarray(0.2), jnp.asarray(-0.4))
    x, x_prev, L = quad.x0, 0.9 * quad.x0, 2.0 * quad.L
    x1 = opt.update_rule(w, x, x_prev, g(x), L)
    x2 = opt.update_rule(w, x1, x, g(x1), L)
    x3 = opt.update_rule(w, x2, x1, g(x2), L)
    z = x3 - g(x3) / L
    lr, mom = jnp.exp(w.log_lr) / L, jax.nn.sigmoid(w.momentum_logit)
    jac = jnp.stack([-lr * g(x), mom * (1 - mom) * (x - x_prev)], axis=1)  # d x1 / d (a, m)
    expected = jac.T @ (x1 - z)
    got = opt.meta_gradient(f, w, x, x_prev, L, bootstrap_steps=3)
    np.testing.assert_allclose(jnp.stack(list(got)), expected, rtol=1e-4)
    # The traced switch picks the plain meta-gradient inside the same program.
    plain = opt.meta_gradient(f, w, x, x_prev, L, bootstrap_steps=0)
    sw = opt.meta_gradient(f, w, x, x_prev, L, 3, use_target=jnp.asarray(False))
    np.testing.assert_allclose(jnp.stack(list(sw)), jnp.stack(list(plain)), rtol=1e-6)
    np.testing.assert_allclose(jnp.stack(list(plain)), jac.T @ g(x1), rtol=1e-4)


def test_momentum_is_a_special_case_of_meta_gradients(quad):
    f = partial(problems.quadratic_value, quad)
    beta, rho, t = 0.8 / quad.L, 0.6, 30
    xs = opt.displacement_meta_learning(f, quad.x0, beta, rho, t)
    # Heavy ball from x_1 = x_0 (zero initial velocity), step beta, momentum rho.
    hb = [quad.x0, quad.x0]
    for _ in range(t - 1):
        x, xp = hb[-1], hb[-2]
        hb.append(x - beta * jax.grad(f)(x) + rho * (x - xp))
    np.testing.assert_allclose(xs, jnp.stack(hb), rtol=1e-4, atol=1e-5)
    tr = opt.heavy_ball(f, quad.x0, quad.f_star, beta, rho, t - 1)
    np.testing.assert_allclose(tr.subopt, jax.vmap(f)(xs[1:]) - quad.f_star, rtol=1e-3, atol=1e-5)


def test_nesterov_beats_gd_on_ill_conditioned_quadratic():
    p = problems.random_quadratic(jax.random.PRNGKey(3), 20, 1000.0)
    f = partial(problems.quadratic_value, p)
    gd = opt.gradient_descent(f, p.x0, p.f_star, 1.0 / p.L, 300)
    nes = opt.nesterov(f, p.x0, p.f_star, 1.0 / p.L, 300)
    assert float(nes.subopt[-1]) < 0.1 * float(gd.subopt[-1])


def test_meta_learned_runs_under_jit_and_vmap(quad):
    f = partial(problems.quadratic_value, quad)
    run = jax.jit(
        jax.vmap(
            lambda lr: opt.meta_learned(f, quad.x0, quad.f_star, quad.L, 50, lr, bootstrap_steps=2)
        )
    )
    tr = run(jnp.array([0.01, 0.1]))
    assert tr.subopt.shape == (2, 51) and tr.momentum.shape == (2, 50)
    assert bool(jnp.all(jnp.isfinite(tr.subopt)))
    assert float(tr.subopt[0, -1]) < float(tr.subopt[0, 0])


def test_divergence_is_flagged_and_metrics_stay_finite(quad):
    f = partial(problems.quadratic_value, quad)
    tr = opt.gradient_descent(f, quad.x0, quad.f_star, 3.0 / quad.L, 400)
    assert bool(tr.diverged)
    assert bool(jnp.all(jnp.isfinite(tr.subopt)))


def test_iterations_to_censors():
    s = jnp.array([1.0, 0.5, 0.05, 0.001])
    assert int(opt.iterations_to(s, 0.01)) == 3
    assert int(opt.iterations_to(s, 1e-6)) == 4


def test_logistic_problem_optimum_is_stationary():
    x, y = problems.breast_cancer()
    p = problems.logistic_problem(jax.random.PRNGKey(0), jnp.asarray(x), jnp.asarray(y), 1e-2)
    assert p.A.shape == (455, 31)
    f = partial(problems.logistic_value, p)
    tr = opt.nesterov(f, p.x0, p.f_star, 1.0 / p.L, 3000)
    assert 0.0 <= float(tr.subopt[-1]) < 1e-4


def test_bad_problem_parameters():
    with pytest.raises(ValueError, match="cond"):
        problems.random_quadratic(jax.random.PRNGKey(0), 4, 0.5)
    with pytest.raises(ValueError, match="reg"):
        problems.logistic_problem(jax.random.PRNGKey(0), jnp.ones((4, 2)), jnp.ones(4), 0.0)
    with pytest.raises(ValueError, match="bootstrap_steps"):
        opt.meta_learned(lambda x: x @ x, jnp.ones(2), 0.0, 2.0, 5, 0.1, bootstrap_steps=-1)
