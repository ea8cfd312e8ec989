"""Bootstrapped targets and matching functions."""

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core.bootstrap import (
    bootstrap_target,
    gradient_step_target,
    kl_categorical,
    squared_distance,
)
from metalab.core.inner_loop import sgd_step, unroll

A = jnp.array([[2.0, 0.3], [0.3, 0.5]])
B = jnp.array([1.0, -1.0])


def f(x):
    return 0.5 * x @ A @ x - B @ x


def test_bmg_one_step_target_equals_scaled_meta_gradient():
    """BMG with a one-gradient-step target and squared distance = alpha * plain meta-gradient."""
    x0, k, alpha = jnp.array([3.0, -1.0]), 4, 0.37

    def inner(log_lr):
        final, _ = unroll(sgd_step(lambda x, _: f(x), jnp.exp(log_lr)), x0, num_steps=k)
        return final

    w = jnp.log(0.2)
    plain = jax.grad(lambda lw: f(inner(lw)))(w)
    target = gradient_step_target(f, inner(w), alpha)
    bmg = jax.grad(lambda lw: squared_distance(target, inner(lw)))(w)
    np.testing.assert_allclose(bmg, alpha * plain, rtol=1e-5)


def test_bootstrap_target_rolls_forward_and_stops_gradients():
    step = lambda x, i: x - 0.1 * jax.grad(f)(x)
    x = jnp.array([1.0, 2.0])
    t = bootstrap_target(step, x, 3, final_fn=lambda z: z - 0.5 * jax.grad(f)(z))
    expected = x
    for _ in range(3):
        expected = expected - 0.1 * jax.grad(f)(expected)
    expected = expected - 0.5 * jax.grad(f)(expected)
    np.testing.assert_allclose(t, expected, rtol=1e-6)
    g = jax.grad(lambda z: jnp.sum(bootstrap_target(step, z, 3)))(x)
    np.testing.assert_array_equal(g, jnp.zeros(2))


def test_kl_matches_definition_and_gradient():
    t = jnp.array([[0.2, -1.0, 0.5], [1.0, 0.0, 0.0]])
    o = jnp.array([[0.0, 0.3, -0.2], [0.1, 0.2, 0.3]])
    p, q = jax.nn.softmax(t), jax.nn.softmax(o)
    np.testing.assert_allclose(kl_categorical(t, o), jnp.sum(p * jnp.log(p / q)), rtol=1e-6)
    assert float(kl_categorical(t, t)) == 0.0
    # d KL(p || softmax(o)) / d o = softmax(o) - p
    np.testing.assert_allclose(jax.grad(lambda z: kl_categorical(t, z))(o), q - p, atol=1e-6)


def test_squared_distance_on_pytrees():
    a = {"w": jnp.ones((2, 2)), "b": jnp.zeros(3)}
    b = {"w": jnp.zeros((2, 2)), "b": jnp.full(3, 2.0)}
    assert float(squared_distance(a, b)) == 0.5 * (4 + 12)
