"""Differentiable inner loops: closed forms, truncation, first order, jit/vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.core.inner_loop import sgd_step, unroll

A = jnp.diag(jnp.array([1.0, 0.5, 0.1]))


def loss(theta, batch):
    return 0.5 * theta @ A @ theta


def test_unroll_sgd_matches_closed_form():
    theta0, lr, k = jnp.array([1.0, -2.0, 3.0]), 0.3, 7
    final, losses = unroll(sgd_step(loss, lr), theta0, num_steps=k)
    expected = jnp.linalg.matrix_power(jnp.eye(3) - lr * A, k) @ theta0
    np.testing.assert_allclose(final, expected, rtol=1e-6)
    assert losses.shape == (k,)
    np.testing.assert_allclose(losses[0], loss(theta0, None), rtol=1e-6)


def test_meta_gradient_through_unroll_matches_closed_form():
    theta0, k = jnp.array([1.0, -2.0, 3.0]), 5

    def meta_loss(lr):
        final, _ = unroll(sgd_step(loss, lr), theta0, num_steps=k)
        return loss(final, None)

    lr = 0.3
    # theta_K = (I - lr A)^K theta0 on a diagonal A: d/dlr of 0.5 sum a_i (1 - lr a_i)^{2K} t_i^2
    a, t = jnp.diag(A), theta0
    expected = jnp.sum(0.5 * a * 2 * k * (1 - lr * a) ** (2 * k - 1) * (-a) * t**2)
    np.testing.assert_allclose(jax.grad(meta_loss)(lr), expected, rtol=1e-5)


def test_truncation_and_first_order():
    theta0, lr, k = jnp.array([1.0, -2.0, 3.0]), 0.3, 6

    def grad_wrt_init(**kw):
        def f(th):
            final, _ = unroll(sgd_step(loss, lr), th, num_steps=k, **kw)
            return loss(final, None)

        return jax.grad(f)(theta0)

    full = grad_wrt_init()
    m = jnp.eye(3) - lr * A
    final = jnp.linalg.matrix_power(m, k) @ theta0
    np.testing.assert_allclose(full, jnp.linalg.matrix_power(m, k) @ (A @ final), rtol=1e-5)
    # Truncation to the last 2 steps: only two Jacobians survive... and none reach theta0.
    np.testing.assert_allclose(grad_wrt_init(truncation=2), jnp.zeros(3), atol=0)
    np.testing.assert_allclose(grad_wrt_init(truncation=k), full, rtol=1e-6)
    # First order: every step's Jacobian is the identity, so the gradient is grad L(theta_K).
    np.testing.assert_allclose(grad_wrt_init(first_order=True), A @ final, rtol=1e-5)
    np.testing.assert_allclose(grad_wrt_init(checkpoint=True), full, rtol=1e-6)


def test_unroll_over_batches_jit_and_vmap():
    xs = jnp.arange(12.0).reshape(4, 3)

    def step(p, x, k):
        return p + x * (k + 1), k

    final, aux = jax.jit(lambda p: unroll(step, p, xs))(jnp.zeros(3))
    np.testing.assert_allclose(final, (xs * jnp.arange(1, 5)[:, None]).sum(0))
    np.testing.assert_array_equal(aux, jnp.arange(4))
    batched = jax.vmap(lambda p: unroll(step, p, xs)[0])(jnp.ones((5, 3)))
    assert batched.shape == (5, 3)


def test_unroll_errors():
    with pytest.raises(ValueError, match="needs xs"):
        unroll(lambda p, x, k: (p, None), jnp.zeros(2))
    with pytest.raises(ValueError, match="truncation"):
        unroll(lambda p, x, k: (p, None), jnp.zeros(2), num_steps=3, truncation=0)


@pytest.mark.parametrize("trunc", [1, 2, 3, 5])
def test_truncation_differentiates_a_meta_parameter_through_exactly_t_updates(trunc):
    # x <- x + w over K = 5 steps: x_K = x_0 + K w; truncated to the last T steps the
    # meta-gradient counts only those T updates, dx_K/dw = T (the old code gave T + 1).
    def f(w):
        return unroll(
            lambda x, _, k: (x + w, None), jnp.float32(0.0), num_steps=5, truncation=trunc
        )[0]

    np.testing.assert_allclose(jax.grad(f)(1.0), float(trunc), rtol=1e-6)

    # x <- w x from x_0 = 1: the first K - T factors are constants c = w^(K-T), so
    # dx_K/dw = T w^(T-1) c = T w^(K-1).
    def g(w):
        return unroll(lambda x, _, k: (w * x, x), jnp.float32(1.0), num_steps=5, truncation=trunc)

    w = 1.3
    np.testing.assert_allclose(jax.grad(lambda v: g(v)[0])(w), trunc * w**4, rtol=1e-5)
    # the aux of a step outside the window carries no gradient either
    aux_grad = jax.grad(lambda v: g(v)[1][5 - trunc - 1] if trunc < 5 else 0.0)(w)
    np.testing.assert_allclose(aux_grad, 0.0, atol=0)
