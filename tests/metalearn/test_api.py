"""Task families, bad input, jit/vmap and recompilation of the metalearn API."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metalab.metalearn import leap, maml, warpgrad
from metalab.metalearn.nets import (
    batch_loss,
    cross_entropy,
    mlp_apply,
    mlp_init,
    mse,
    warped_apply,
    warped_init,
)
from metalab.metalearn.tasks import (
    long_horizon_task,
    make_digits_family,
    sample_digits_task,
    sample_tasks,
    sinusoid_task,
)


@functools.lru_cache(maxsize=1)
def _family():
    return make_digits_family(num_train_warps=3, num_test_warps=2)


def _sq(params, batch):
    return batch_loss(mse, mlp_apply(params, batch[0]), batch[1])


def test_sinusoid_family_ranges_and_shapes():
    t = sample_tasks(lambda k: sinusoid_task(k, 10, 7), jax.random.PRNGKey(0), 50)
    assert t.support[0].shape == (50, 10, 1) and t.query[1].shape == (50, 7, 1)
    assert float(jnp.abs(t.support[1]).max()) <= 5.0
    assert float(jnp.abs(t.support[0]).max()) <= 5.0
    # support and query come from the same sinusoid: fit A, phi from support and check query
    x, y = np.asarray(t.support[0][0, :, 0]), np.asarray(t.support[1][0, :, 0])
    basis = np.stack([np.sin(x), np.cos(x)], 1)
    coef = np.linalg.lstsq(basis, y, rcond=None)[0]
    xq, yq = np.asarray(t.query[0][0, :, 0]), np.asarray(t.query[1][0, :, 0])
    np.testing.assert_allclose(np.stack([np.sin(xq), np.cos(xq)], 1) @ coef, yq, atol=1e-4)
    lh = long_horizon_task(jax.random.PRNGKey(1), 20, 30, num_components=4)
    assert lh.support[0].shape == (20, 1) and lh.query[0].shape == (30, 1)


def test_digits_splits_are_disjoint_and_tasks_balanced():
    fam = _family()
    assert not set(np.asarray(fam.train_classes)) & set(np.asarray(fam.test_classes))
    # warp pools are disjoint (distinct affine maps) and images differ between them
    for w in np.asarray(fam.train_warps):
        assert np.min(np.abs(np.asarray(fam.test_warps) - w).sum((1, 2))) > 1e-3
    task = sample_digits_task(
        fam, jax.random.PRNGKey(0), split="test", num_ways=4, num_shots=3, num_query=2
    )
    assert task.support[0].shape == (12, 64) and task.query[0].shape == (8, 64)
    np.testing.assert_array_equal(np.bincount(np.asarray(task.support[1])), [3, 3, 3, 3])
    # every test image is a (warped) test-class image: find it in the test image bank
    bank = np.asarray(fam.test_images).reshape(-1, 64)
    dist = ((np.asarray(task.support[0])[:, None] - bank[None]) ** 2).sum(-1).min(1)
    assert dist.max() < 1e-10
    # support and query images of one task are distinct examples
    q = np.asarray(task.query[0])
    assert ((np.asarray(task.support[0])[:, None] - q[None]) ** 2).sum(-1).min() > 0


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_shots=170, num_query=10), "exceeds the 174 images"),
        (dict(num_ways=0), "num_ways must be an integer in 1..5"),
        (dict(num_ways=6), "num_ways must be an integer in 1..5"),
        (dict(num_shots=0), "num_shots must be an integer >= 1"),
        (dict(split="val"), "split must be one of"),
    ],
)
def test_bad_task_parameters_raise_clear_errors(kw, match):
    args = dict(split="train", num_ways=5, num_shots=1, num_query=1) | kw
    with pytest.raises(ValueError, match=match):
        sample_digits_task(_family(), jax.random.PRNGKey(0), **args)


def test_bad_family_parameters():
    with pytest.raises(ValueError, match="overlap"):
        make_digits_family(train_classes=(0, 1), test_classes=(1, 2))
    with pytest.raises(ValueError, match="num_tasks"):
        sample_tasks(lambda k: sinusoid_task(k), jax.random.PRNGKey(0), 0)
    with pytest.raises(ValueError, match="num_support"):
        sinusoid_task(jax.random.PRNGKey(0), num_support=0)


def test_maml_update_jit_vmap_and_no_recompile():
    opt = optax.adam(1e-3)
    traces = []

    def step(state, key):
        traces.append(1)  # runs once per trace
        tasks = sample_tasks(lambda k: sinusoid_task(k, 5, 5), key, 4)
        return maml.maml_update(
            state, tasks, optimizer=opt, loss_fn=_sq, inner_lr=0.01, num_steps=3
        )

    jstep = jax.jit(step)
    state = maml.maml_init(mlp_init(jax.random.PRNGKey(0), (1, 8, 1)), opt)
    for i in range(3):
        state, loss = jstep(state, jax.random.PRNGKey(10 + i))
    assert len(traces) == 1 and np.isfinite(float(loss))
    # vmap over seeds equals per-seed calls
    keys = jax.random.split(jax.random.PRNGKey(1), 2)
    states = jax.vmap(lambda k: maml.maml_init(mlp_init(k, (1, 8, 1)), opt))(keys)
    vs, vl = jax.jit(jax.vmap(step))(states, keys)
    for i in range(2):
        s_i = maml.maml_init(mlp_init(keys[i], (1, 8, 1)), opt)
        _, l_i = jstep(s_i, keys[i])
        np.testing.assert_allclose(vl[i], l_i, rtol=1e-5)


def test_leap_and_warpgrad_updates_under_jit_and_vmap():
    fam = _family()
    sampler = functools.partial(
        sample_digits_task, fam, split="train", num_ways=3, num_shots=2, num_query=2
    )
    ce = lambda t, w, b: batch_loss(cross_entropy, warped_apply(t, w, b[0]), b[1])
    opt = optax.adam(1e-2)

    def train(key):
        k_i, k_t, k_u = jax.random.split(key, 3)
        task_p, warp_p = warped_init(k_i, (64, 8, 3))
        state = warpgrad.warpgrad_init(
            task_p, warp_p, sampler(k_t), init_optimizer=opt, warp_optimizer=opt, capacity=6
        )

        def body(s, k):
            k1, k2 = jax.random.split(k)
            return warpgrad.warpgrad_update(
                s,
                k2,
                sample_tasks(sampler, k1, 2),
                warp_loss_fn=ce,
                init_optimizer=opt,
                warp_optimizer=opt,
                inner_lr=0.1,
                num_steps=4,
                num_snapshots=2,
                warp_batch=3,
            )

        s, info = jax.lax.scan(body, state, jax.random.split(k_u, 3))
        lstate = leap.leap_init(task_p, opt)
        lstate, lloss = leap.leap_update(
            lstate,
            sample_tasks(sampler, k_t, 2),
            optimizer=opt,
            loss_fn=lambda p, b: ce(p, warp_p, b),
            inner_lr=0.1,
            num_steps=4,
        )
        return s, info, lloss

    s, info, lloss = jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), 2))
    # 3 updates x 2 tasks x 2 snapshots = 12 writes into a ring of 6
    np.testing.assert_array_equal(s.buffer.size, [6, 6])
    np.testing.assert_array_equal(s.buffer.ptr, [0, 0])
    assert np.all(np.isfinite(info["warp_loss"])) and np.all(np.isfinite(lloss))
    # the warp moved away from the identity
    assert float(jnp.abs(s.warp[0]["w"] - jnp.eye(8)).max()) > 0
    with pytest.raises(ValueError, match="init_method must be one of"):
        warpgrad.warpgrad_update(
            jax.tree.map(lambda a: a[0], s),
            jax.random.PRNGKey(0),
            sample_tasks(sampler, jax.random.PRNGKey(0), 2),
            warp_loss_fn=ce,
            init_optimizer=opt,
            warp_optimizer=opt,
            inner_lr=0.1,
            num_steps=2,
            init_method="sgd",
        )


def test_maze_loss_value_is_return_and_gradient_finite():
    from metalab.metalearn import maze

    env, env_params = maze.make_env()
    loss = maze.make_maze_loss(env, env_params, horizon=6, num_episodes=3)
    task = maze.sample_maze_task(env, jax.random.PRNGKey(0), split="test")
    params = mlp_init(jax.random.PRNGKey(1), (maze.obs_size(env), 8, env.num_actions))
    val, g = jax.jit(jax.value_and_grad(lambda p: loss(mlp_apply, p, task.support)))(params)
    assert -6.0 <= float(val) <= 0.0  # minus the mean return; reward 1 per goal visit
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g))
    tr = {tuple(map(int, g_)) for g_ in np.asarray(maze.goal_split(env, "train"))}
    te = {tuple(map(int, g_)) for g_ in np.asarray(maze.goal_split(env, "test"))}
    assert not tr & te
