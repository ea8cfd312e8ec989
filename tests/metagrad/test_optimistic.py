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


def test_bmg_hint_is_the_meta_gradient_at_the_look_ahead_point(quad):
    """Optimism through BMG: the matching gradient at w_{t-1} over c = meta-gradient at x~."""
    f = partial(problems.quadratic_value, quad)
    w_prev = quad.x0 + 0.3
    x_prev, gamma = 0.5 * quad.x0, 0.4
    mg = opt.averaging_meta_gradient(f)
    for c in (0.1 / quad.L, 1.0 / quad.L):
        hint = opt.bmg_hint(f, c)(w_prev, x_prev, gamma)
        _, expected = mg.meta_grad(w_prev, x_prev, gamma)
        np.testing.assert_allclose(hint, expected, rtol=1e-4, atol=1e-6)
    # and the meta-gradient itself is gamma * grad f at the averaged point (closed form)
    x_t = x_prev + gamma * (w_prev - x_prev)
    np.testing.assert_allclose(expected, gamma * (quad.A @ x_t - quad.b), rtol=1e-4, atol=1e-6)


def _ftrl_reference(f, x0, L, scale, steps, optimistic):
    """Plain-Python FTRL/AdaGrad with iterate averaging (independent of the scan)."""
    g = jax.grad(f)
    x, w = np.asarray(x0, np.float64), np.asarray(x0, np.float64)
    g0 = np.asarray(g(x0), np.float64)
    D, V, G = scale * np.linalg.norm(g0) / L, g0 @ g0, np.zeros_like(x)
    xs = [x]
    for t in range(1, steps + 1):
        A, a = t * (t + 1) / 2, t
        h = a * np.asarray(g(x + (a / A) * (w - x))) if optimistic else 0.0 * x
        w = x0 - D / np.sqrt(V) * (G + h)
        x = x + (a / A) * (w - x)
        gh = a * np.asarray(g(x))
        G, V = G + gh, V + np.sum((gh - h) ** 2)
        xs.append(x)
    return np.array([float(f(jnp.asarray(xi))) for xi in xs])


@pytest.mark.parametrize("optimistic", [False, True])
def test_ftrl_meta_learner_matches_reference(quad, optimistic):
    f = partial(problems.quadratic_value, quad)
    train = opt.make_train(
        opt.MetaOptConfig(optimistic=optimistic, steps=6), problems.quadratic_value
    )
    tr = jax.jit(train)(quad, opt.FTRLParams(jnp.asarray(2.0)))
    ref = _ftrl_reference(f, quad.x0, quad.L, 2.0, 6, optimistic)
    np.testing.assert_allclose(tr.subopt, ref - float(quad.f_star), rtol=2e-3, atol=1e-5)


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
    # f_star and f are float32: the gap may land a rounding error below zero
    assert -1e-6 < float(tr.subopt[-1]) < 1e-4


def test_bad_problem_parameters():
    with pytest.raises(ValueError, match="cond"):
        problems.random_quadratic(jax.random.PRNGKey(0), 4, 0.5)
    with pytest.raises(ValueError, match="reg"):
        problems.logistic_problem(jax.random.PRNGKey(0), jnp.ones((4, 2)), jnp.ones(4), 0.0)
    with pytest.raises(ValueError, match="steps"):
        opt.MetaOptConfig(steps=0)
    with pytest.raises(ValueError, match="target_step"):
        opt.MetaOptConfig(target_step=0.0)
