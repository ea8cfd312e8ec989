"""The shared API table of the three models: every ``make_<model>(config) -> Model(init, apply,
train)`` goes through the same checks (jit equals eager, vmap equals a loop, no recompile on a
second call, parameter structure kept, finite outputs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.models import (
    LMConfig,
    QuantNetSettings,
    SpaceGANSettings,
    SpatialTask,
    generate_markets,
    knn_weights,
    make_data,
    make_lm,
    make_quantnet,
    make_spacegan,
    neighbour_condition,
    prepare,
    synthetic_topic_corpus,
    toy_grid,
)


def _lm():
    cfg = LMConfig(
        vocab=10,
        embed=4,
        hidden=6,
        adapt=3,
        batch_size=2,
        bptt=5,
        steps=4,
        eval_every=2,
        dropout_embed=0.1,
        dropout_input=0.1,
        dropout_output=0.1,
        dropout_hidden=0.1,
        dropout_policy=0.1,
        weight_drop=0.1,
    )
    ids, _ = synthetic_topic_corpus(0, 400, vocab=10, n_topics=2, mean_doc_len=10)
    data = make_data(ids[:300], ids[300:], cfg, eval_batch=2)
    return make_lm(cfg), data, data.valid[:, :5]


def _lstm():
    model, data, x = _lm()
    cfg = LMConfig(
        vocab=10,
        embed=4,
        hidden=6,
        cell="lstm",
        batch_size=2,
        bptt=5,
        steps=4,
        eval_every=2,
        weight_drop=0.2,
    )
    return make_lm(cfg), data, x


def _spacegan():
    d = toy_grid(jax.random.PRNGKey(0), 5)
    mask = jnp.ones(25).at[:5].set(0.0)
    cond, ys = neighbour_condition(d.x, d.coords, d.y, mask, 3)
    task = SpatialTask(cond, ys, knn_weights(d.coords, 3), mask)
    st = SpaceGANSettings(hidden=6, noise_dim=2, steps=4, ckpt_every=2, n_draws=2)
    return make_spacegan(st), task, task


def _quantnet():
    data = generate_markets(jax.random.PRNGKey(0), 2, 3, 120, 20, 0.5, 30, premium=0.0002)
    st = QuantNetSettings(hidden=3, window=20, burn_in=5, batch=2, steps=3, train_end=100)
    prep = prepare(data, st)
    return make_quantnet(st), prep, prep


MODELS = {"alstm-lm": _lm, "lstm-lm": _lstm, "spacegan": _spacegan, "quantnet": _quantnet}


def _close(a, b, tol=2e-5):
    jax.tree_util.tree_map(
        lambda u, v: np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=tol, atol=tol),
        a,
        b,
    )


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request):
    return (request.param, *MODELS[request.param]())


def test_train_jit_equals_eager_and_keeps_structure(case):
    _, model, data, _ = case
    key = jax.random.PRNGKey(1)
    p_eager, info_eager = model.train(key, data)
    p_jit, info_jit = jax.jit(model.train)(key, data)
    _close(p_eager, p_jit, 1e-4)
    _close(info_eager, info_jit, 1e-4)
    p0 = model.init(key, data)
    assert jax.tree_util.tree_structure(p0) == jax.tree_util.tree_structure(p_jit)
    for a, b in zip(jax.tree_util.tree_leaves(p0), jax.tree_util.tree_leaves(p_jit), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    assert all(np.all(np.isfinite(x)) for x in jax.tree_util.tree_leaves(info_jit))


def test_train_vmap_equals_loop_and_does_not_recompile(case):
    _, model, data, _ = case
    keys = jax.random.split(jax.random.PRNGKey(2), 2)
    batched = jax.jit(jax.vmap(model.train, in_axes=(0, None)))
    p_vmap, info_vmap = batched(keys, data)
    one = jax.jit(model.train)
    for i, k in enumerate(keys):
        p_i, info_i = one(k, data)
        _close(jax.tree_util.tree_map(lambda a, i=i: a[i], p_vmap), p_i, 1e-4)
        _close(jax.tree_util.tree_map(lambda a, i=i: a[i], info_vmap), info_i, 1e-4)
    size = one._cache_size()
    one(jax.random.PRNGKey(7), data)
    assert one._cache_size() == size == 1


def test_apply_jit_equals_eager_and_vmaps(case):
    _, model, data, inputs = case
    params = model.init(jax.random.PRNGKey(3), data)
    key = jax.random.PRNGKey(4)
    out = model.apply(params, inputs, key)
    _close(out, jax.jit(model.apply)(params, inputs, key), 1e-4)
    assert np.all(np.isfinite(np.asarray(out)))
    keys = jax.random.split(key, 2)
    outs = jax.vmap(model.apply, in_axes=(None, None, 0))(params, inputs, keys)
    _close(outs[1], model.apply(params, inputs, keys[1]), 1e-4)
