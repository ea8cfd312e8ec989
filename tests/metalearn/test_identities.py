"""Identities of the gradient-based meta-learners (closed forms, finite differences)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metalab import metalearn
from metalab.metalearn.adapt import LeapConfig, adapt, leap_increment
from metalab.metalearn.nets import (
    batch_loss,
    mlp_apply,
    mlp_init,
    mse,
    warped_apply,
    warped_init,
)
from metalab.metalearn.tasks import sample_tasks, sinusoid_task
from metalab.metalearn.warpgrad import WarpParams, one_step_loss, warpgrad


def _loss(params, batch):
    x, y = batch
    return batch_loss(mse, mlp_apply(params, x), y)


def _tiny(dtype=jnp.float32, n_tasks=3, n=6):
    params = mlp_init(jax.random.PRNGKey(1), (1, 8, 1), dtype)
    tasks = sample_tasks(lambda k: sinusoid_task(k, n, n), jax.random.PRNGKey(2), n_tasks)
    tasks = jax.tree.map(lambda a: a.astype(dtype), tasks)
    return params, tasks


def test_leap_without_loss_and_norm_is_reptile():
    # Leap's increments without loss term and normalisation telescope to theta_0 - theta_K:
    # compare with the direct difference after an independent run of the inner loop.
    with jax.enable_x64(True):
        params, tasks = _tiny(jnp.float64)
        kw = dict(loss_fn=_loss, inner_lr=0.02, num_steps=7)
        for stabilise in (False, True):  # without a loss term the stabiliser changes nothing
            cfg = LeapConfig(use_loss=False, normalise=False, stabilise=stabilise)
            _, g_leap = metalearn.leap_meta_grad(params, tasks, config=cfg, **kw)

            def direct(t):
                res = adapt(_loss, params, t.support, inner_lr=0.02, num_steps=7)
                return jax.tree.map(jnp.subtract, params, res.params)

            ref = jax.tree.map(lambda d: d.mean(0), jax.vmap(direct)(tasks))
            for a, b in zip(jax.tree.leaves(g_leap), jax.tree.leaves(ref), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        _, g_rep = metalearn.reptile_meta_grad(params, tasks, **kw)
        for a, b in zip(jax.tree.leaves(g_rep), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-13)
        # ... and the default Leap (loss term, path energy) is a different direction
        _, g_full = metalearn.leap_meta_grad(params, tasks, **kw)
        diff = sum(
            float(jnp.sum((a - b) ** 2))
            for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_rep), strict=True)
        )
        assert diff > 1e-6


def test_leap_increment_closed_form_on_a_quadratic():
    # f(theta) = 0.5 * |theta|^2, one SGD step: theta1 = (1 - a) theta0.
    with jax.enable_x64(True):
        th0 = jnp.array([1.0, -2.0, 0.5])
        a = 0.3
        th1 = (1 - a) * th0
        f0, f1 = 0.5 * th0 @ th0, 0.5 * th1 @ th1
        dth, df = th1 - th0, f1 - f0
        expect = -(dth + df * th0) / np.sqrt(dth @ dth + df**2)
        got = leap_increment(th0, th1, th0, f0, f1, LeapConfig(True, True, False))
        np.testing.assert_allclose(got, expect, rtol=1e-12)
        # stabiliser: df < 0 here, so it changes nothing; with an increase it flips the sign
        got_s = leap_increment(th0, th1, th0, f0, f1, LeapConfig(True, True, True))
        np.testing.assert_allclose(got_s, expect, rtol=1e-12)
        up = leap_increment(th1, th0, th1, f1, f0, LeapConfig(True, False, True))
        np.testing.assert_allclose(up, -((th0 - th1) - abs(f0 - f1) * th1), rtol=1e-12)


def test_maml_meta_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        params, tasks = _tiny(jnp.float64, n_tasks=2, n=5)

        # tanh net (smooth) so that central differences are accurate
        def loss(p, b):
            x, y = b
            h = jnp.tanh(x @ p[0]["w"] + p[0]["b"])
            return jnp.mean(jnp.sum((h @ p[1]["w"] + p[1]["b"] - y) ** 2, -1))

        kw = dict(loss_fn=loss, inner_lr=0.05, num_steps=3)
        f = jax.jit(lambda p: metalearn.maml_meta_grad(p, tasks, **kw)[0])
        _, g = jax.jit(lambda p: metalearn.maml_meta_grad(p, tasks, **kw))(params)
        flat, unravel = jax.flatten_util.ravel_pytree(params)
        gflat = jax.flatten_util.ravel_pytree(g)[0]
        rng = np.random.default_rng(0)
        for _ in range(3):
            v = jnp.asarray(rng.normal(size=flat.shape))
            eps = 1e-5
            fd = (f(unravel(flat + eps * v)) - f(unravel(flat - eps * v))) / (2 * eps)
            np.testing.assert_allclose(float(gflat @ v), float(fd), rtol=1e-6)
        # first-order MAML drops the Hessian terms: a different gradient, equal to the plain
        # gradient of the query loss at the adapted parameters
        _, g_fo = metalearn.maml_meta_grad(params, tasks, first_order=True, **kw)

        def fo_ref(t):
            res = adapt(loss, params, t.support, inner_lr=0.05, num_steps=3)
            return jax.grad(loss)(res.params, t.query)

        ref = jax.tree.map(lambda a: a.mean(0), jax.vmap(fo_ref)(tasks))
        for a, b in zip(jax.tree.leaves(g_fo), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-10)
        assert not np.allclose(jax.flatten_util.ravel_pytree(g_fo)[0], gflat, rtol=1e-3)


def test_linear_warp_is_preconditioned_gradient_descent():
    # z = (x W + b) V + c: effective map M = W V, offset m = b V + c. SGD on (W, b) through a
    # fixed warp V gives M <- M - a * grad_M L @ V^T V (and likewise for m): in column
    # convention z = P (W^T x) with P = V^T, the preconditioner is P P^T = V^T V.
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(3)
        task, warp = warped_init(key, (4, 3), kind="linear", warp_output=True, dtype=jnp.float64)
        v = jax.random.normal(jax.random.PRNGKey(4), (3, 3), jnp.float64)
        warp = ({"w": v, "b": jnp.array([0.1, -0.2, 0.3])},)
        x = jax.random.normal(jax.random.PRNGKey(5), (7, 4), jnp.float64)
        y = jax.random.normal(jax.random.PRNGKey(6), (7, 3), jnp.float64)
        lr = 0.01
        loss = lambda t, b: batch_loss(mse, warped_apply(t, warp, b[0]), b[1])
        res = adapt(loss, task, (x, y), inner_lr=lr, num_steps=5)
        m = task[0]["w"] @ v
        off = task[0]["b"] @ v + warp[0]["b"]
        pre = v.T @ v
        for _ in range(5):
            gm, go = jax.grad(lambda mm, oo: batch_loss(mse, x @ mm + oo, y), (0, 1))(m, off)
            m, off = m - lr * gm @ pre, off - lr * go @ pre
        np.testing.assert_allclose(res.params[0]["w"] @ v, m, rtol=1e-10)
        np.testing.assert_allclose(res.params[0]["b"] @ v + warp[0]["b"], off, rtol=1e-10)


def test_identity_warp_equals_plain_mlp():
    task, warp = warped_init(jax.random.PRNGKey(0), (3, 5, 5, 2))  # residual warps
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3))
    np.testing.assert_allclose(warped_apply(task, warp, x), mlp_apply(task, x), rtol=1e-6)


def test_accumulator_sees_the_trajectory():
    params, tasks = _tiny()
    t0 = jax.tree.map(lambda a: a[0], tasks)
    # accumulating theta_k over the steps gives the sum of the trajectory's iterates
    res = adapt(
        _loss, params, t0.support, inner_lr=0.05, num_steps=9, accumulate=lambda s: s.params
    )
    traj, p = [], params
    grad = jax.jit(jax.grad(_loss))
    for _ in range(9):
        traj.append(p)
        g = grad(p, t0.support)
        p = jax.tree.map(lambda a, b: a - 0.05 * b, p, g)
    total = jax.tree.map(lambda *xs: sum(xs), *traj)
    for a, b in zip(jax.tree.leaves(res.accumulated), jax.tree.leaves(total), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(p), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_warp_gradient_is_the_trajectory_objective():
    # WarpGrad's warp meta-gradient (init objective "none") equals the gradient of the mean
    # over the K iterates theta_k (held constant) of the one-step query loss, computed here
    # from an explicit Python loop over the trajectory.
    with jax.enable_x64(True):
        task, warp = warped_init(jax.random.PRNGKey(0), (1, 6, 1), dtype=jnp.float64)
        warp = jax.tree.map(lambda a: a + 0.1, warp)  # away from V = 0
        _, tasks = _tiny(jnp.float64, n_tasks=2)
        loss = lambda t, w, b: batch_loss(mse, warped_apply(t, w, b[0]), b[1])
        lr, k = 0.1, 4
        learner = warpgrad(loss, inner_lr=lr, num_steps=k, init_objective="none")
        _, g, info = learner.meta_grad(WarpParams(task, warp), None, tasks)

        def reference(w):
            total = 0.0
            for i in range(2):
                ti = jax.tree.map(lambda a, i=i: a[i], tasks)
                th = task
                for _ in range(k):
                    total += one_step_loss(w, th, ti, warp_loss_fn=loss, inner_lr=lr)
                    gi = jax.grad(loss)(th, warp, ti.support)
                    th = jax.tree.map(lambda p, q: p - lr * q, th, gi)
            return total / (2 * k)

        val, g_ref = jax.value_and_grad(reference)(warp)
        np.testing.assert_allclose(info["warp_loss"], val, rtol=1e-10)
        for a, b in zip(jax.tree.leaves(g.warp), jax.tree.leaves(g_ref), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
        assert all(float(jnp.abs(x).sum()) == 0 for x in jax.tree.leaves(g.init))


def test_conv_warps_are_the_identity_at_initialisation():
    from metalab.metalearn.nets import convnet_apply, convnet_init

    task, warp = convnet_init(jax.random.PRNGKey(0), channels=(4, 4), num_classes=3)
    x = jax.random.uniform(jax.random.PRNGKey(1), (5, 64))
    np.testing.assert_allclose(convnet_apply(task, warp, x), convnet_apply(task, (), x), rtol=1e-6)
    warp = jax.tree.map(lambda a: a + 0.05, warp)
    assert not np.allclose(convnet_apply(task, warp, x), convnet_apply(task, (), x), rtol=1e-3)


def test_conv_and_pool_equal_the_library_ops_values_and_gradients():
    """The im2col convolution and reshape max-pool of ``nets`` (written so that per-task kernels
    vmap into batched matmuls) equal ``lax.conv_general_dilated`` / ``lax.reduce_window``, in
    value and gradient, and under vmap over per-task kernels."""
    from jax import lax

    from metalab.metalearn import nets

    def conv_ref(h, w):
        return lax.conv_general_dilated(
            h, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    def pool_ref(h):
        return lax.reduce_window(h, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    k = jax.random.split(jax.random.PRNGKey(3), 4)
    h = jax.random.normal(k[0], (4, 8, 8, 3))
    for shape in ((3, 3, 3, 5), (1, 1, 3, 5), (5, 5, 3, 2)):
        w = jax.random.normal(k[1], shape)
        np.testing.assert_allclose(nets._conv(h, w), conv_ref(h, w), atol=1e-5)
        g = jax.grad(lambda w_, f: jnp.sum(jnp.sin(f(h, w_))), argnums=0)
        np.testing.assert_allclose(g(w, nets._conv), g(w, conv_ref), rtol=1e-4, atol=1e-4)
    ws = jax.random.normal(k[2], (6, 3, 3, 3, 5))  # one kernel per task, vmapped
    np.testing.assert_allclose(
        jax.vmap(nets._conv, (None, 0))(h, ws), jax.vmap(conv_ref, (None, 0))(h, ws), atol=1e-5
    )
    np.testing.assert_array_equal(nets._max_pool2(h), pool_ref(h))
    gp = jax.grad(lambda x, f: jnp.sum(f(x) ** 2), argnums=0)
    np.testing.assert_allclose(gp(h, nets._max_pool2), gp(h, pool_ref), rtol=1e-6)
    try:
        nets._conv(h, jnp.ones((2, 2, 3, 1)))
    except ValueError as e:
        assert "odd kernel" in str(e)
    else:
        raise AssertionError("an even kernel must be refused")
