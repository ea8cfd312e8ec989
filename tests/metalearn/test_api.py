"""The shared API table of metalearn: every method through the same checks (jit equals eager,
vmap equals a loop, finite gradients, no recompile on a second call, state structure kept),
plus task families and bad input."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metalab import metalearn
from metalab.metalearn.nets import (
    batch_loss,
    convnet_apply,
    convnet_init,
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
    return make_digits_family(num_train_warps=3, num_val_warps=2, num_test_warps=2)


def _sq(params, batch):
    return batch_loss(mse, mlp_apply(params, batch[0]), batch[1])


def _warp_sq(task, warp, batch):
    return batch_loss(mse, warped_apply(task, warp, batch[0]), batch[1])


def _warp_ce_conv(task, warp, batch):
    return batch_loss(cross_entropy, convnet_apply(task, warp, batch[0]), batch[1])


def _sinusoids(key, n=2):
    return sample_tasks(lambda k: sinusoid_task(k, 5, 5), key, n)


def _digits(key, n=2):
    sampler = functools.partial(
        sample_digits_task, _family(), split="train", num_ways=3, num_shots=2, num_query=2
    )
    return sample_tasks(sampler, key, n)


OPT = optax.sgd(1e-2)  # Adam would turn float noise in a ~0 gradient into +-lr steps
KW = dict(inner_lr=0.05, num_steps=2, outer=OPT)


def _mlp(key):
    return mlp_init(key, (1, 8, 1))


def _warped(key, kind="residual"):
    return metalearn.WarpParams(*warped_init(key, (1, 8, 8, 1), kind=kind))


def _conv(key):
    return metalearn.WarpParams(*convnet_init(key, channels=(2,), num_classes=3))


# name -> (learner factory, params(key), tasks(key))
CASES = {
    "leap": (lambda: metalearn.leap(_sq, **KW), _mlp, _sinusoids),
    "maml": (lambda: metalearn.maml(_sq, **KW), _mlp, _sinusoids),
    "fomaml": (lambda: metalearn.fomaml(_sq, **KW), _mlp, _sinusoids),
    "reptile": (lambda: metalearn.reptile(_sq, **KW), _mlp, _sinusoids),
    "pretrain": (lambda: metalearn.pretrain(_sq, **KW), _mlp, _sinusoids),
    "scratch": (lambda: metalearn.scratch(_sq, **KW), _mlp, _sinusoids),
    "warp_leap": (lambda: metalearn.warpgrad(_warp_sq, **KW), _warped, _sinusoids),
    "warp_maml": (
        lambda: metalearn.warpgrad(
            _warp_sq, init_objective="maml", warp_outer=optax.sgd(1e-2), **KW
        ),
        _warped,
        _sinusoids,
    ),
}


def test_every_method_is_in_the_table():
    covered = {"leap", "maml", "fomaml", "reptile", "pretrain", "scratch", "warpgrad"}
    assert set(metalearn.METHODS) == covered
    assert set(metalearn.__all__) >= set(metalearn.METHODS)


def _close(a, b, rtol=2e-5, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


@pytest.mark.parametrize("name", sorted(CASES))
def test_api_table(name):
    make, init_params, make_tasks = CASES[name]
    learner = make()
    key = jax.random.PRNGKey(0)
    params = init_params(jax.random.PRNGKey(1))
    tasks = make_tasks(jax.random.PRNGKey(2))
    state = learner.init(params, key)

    # state structure kept (and dtypes, shapes)
    new, info = learner.update(state, key, tasks)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert "loss" in info and all(np.ndim(v) == 0 for v in info.values())

    # gradients finite, and non-zero where the method learns
    loss, grads, _ = learner.meta_grad(params, key, tasks)
    assert np.isfinite(float(loss))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    if name != "scratch":
        assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)) > 0

    # jit equals eager; a second call does not recompile
    traces = []

    def step(s, k, t):
        traces.append(1)
        return learner.update(s, k, t)

    jstep = jax.jit(step)
    j_new, j_info = jstep(state, key, tasks)
    _close(j_new, new)
    _close(j_info, info)
    jstep(j_new, jax.random.PRNGKey(3), make_tasks(jax.random.PRNGKey(4)))
    assert len(traces) == 1

    # vmap over seeds equals a loop over seeds
    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    states = jax.vmap(lambda k: learner.init(init_params(k), k))(keys)
    batches = jax.vmap(make_tasks)(keys)
    v_new, v_info = jax.jit(jax.vmap(learner.update))(states, keys, batches)
    for i in range(2):
        s_i = learner.init(init_params(keys[i]), keys[i])
        t_i = jax.tree.map(lambda a, i=i: a[i], batches)
        n_i, info_i = jstep(s_i, keys[i], t_i)
        _close(jax.tree.map(lambda a, i=i: a[i], v_new), n_i)
        _close(jax.tree.map(lambda a, i=i: a[i], v_info), info_i)


def test_conv_warpgrad_meta_gradient_is_finite():
    # the convolutional warps (images) through the same learner, jitted once
    learner = metalearn.warpgrad(_warp_ce_conv, **KW)
    loss, grads, info = jax.jit(learner.meta_grad)(
        _conv(jax.random.PRNGKey(0)), None, _digits(jax.random.PRNGKey(1))
    )
    assert np.isfinite(float(loss)) and np.isfinite(float(info["warp_loss"]))
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads.warp[0]["v"]).sum()) > 0


def test_scratch_never_moves_and_warps_do():
    key = jax.random.PRNGKey(0)
    tasks = _sinusoids(key)
    params = _mlp(key)
    s = metalearn.scratch(_sq, **KW).init(params, key)
    s2, _ = metalearn.scratch(_sq, **KW).update(s, key, tasks)
    _close(s2.params, params, rtol=0, atol=0)
    learner = metalearn.warpgrad(_warp_sq, **KW)
    w = _warped(key)
    s = learner.init(w, key)
    for i in range(3):
        s, info = learner.update(s, jax.random.PRNGKey(i), _sinusoids(jax.random.PRNGKey(i)))
    assert float(jnp.abs(s.params.warp[0]["v"]).max()) > 0  # the warp left the identity
    assert np.isfinite(float(info["warp_loss"]))


def test_inner_lr_can_be_traced_and_vmapped():
    tasks = _sinusoids(jax.random.PRNGKey(0))
    params = _mlp(jax.random.PRNGKey(1))

    def loss(lr):
        return metalearn.leap_meta_grad(params, tasks, loss_fn=_sq, inner_lr=lr, num_steps=4)[0]

    lrs = jnp.array([0.01, 0.05])
    vm = jax.vmap(loss)(lrs)
    np.testing.assert_allclose(vm, [loss(0.01), loss(0.05)], rtol=1e-5)


def test_bad_method_options_raise():
    with pytest.raises(ValueError, match="init_objective must be one of"):
        metalearn.warpgrad(_warp_sq, init_objective="sgd", **KW)
    with pytest.raises(ValueError, match="warp kind must be one of"):
        warped_init(jax.random.PRNGKey(0), (1, 4, 1), kind="conv")
    with pytest.raises(ValueError, match="num_steps must be >= 1"):
        metalearn.adapt(_sq, _mlp(jax.random.PRNGKey(0)), None, inner_lr=0.1, num_steps=0)


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
    # the three warp pools are disjoint (distinct affine maps)
    pools = [np.asarray(fam.train_warps), np.asarray(fam.val_warps), np.asarray(fam.test_warps)]
    for i in range(3):
        for j in range(i + 1, 3):
            for w in pools[i]:
                assert np.min(np.abs(pools[j] - w).sum((1, 2))) > 1e-3
    task = sample_digits_task(
        fam, jax.random.PRNGKey(0), split="test", num_ways=4, num_shots=3, num_query=2
    )
    assert task.support[0].shape == (12, 64) and task.query[0].shape == (8, 64)
    np.testing.assert_array_equal(np.bincount(np.asarray(task.support[1])), [3, 3, 3, 3])
    # every test image is a (warped) test-class image: find it in the test image bank
    bank = np.asarray(fam.test_images).reshape(-1, 64)
    dist = ((np.asarray(task.support[0])[:, None] - bank[None]) ** 2).sum(-1).min(1)
    assert dist.max() < 1e-10
    # validation tasks: meta-train classes under validation warps, never a test image
    val = sample_digits_task(
        fam, jax.random.PRNGKey(1), split="val", num_ways=4, num_shots=3, num_query=2
    )
    vbank = np.asarray(fam.val_images).reshape(-1, 64)
    assert ((np.asarray(val.support[0])[:, None] - vbank[None]) ** 2).sum(-1).min(1).max() < 1e-10
    assert ((np.asarray(val.support[0])[:, None] - bank[None]) ** 2).sum(-1).min() > 1e-6
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
        (dict(split="validation"), "split must be one of"),
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
