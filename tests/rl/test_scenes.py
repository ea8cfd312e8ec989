"""Tests for the rendered-scene environment with language goals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl.envs.scenes import (
    COLORS,
    NUM_TYPES,
    RGB,
    SHAPES,
    VOCAB,
    SceneEnv,
    SceneState,
    all_goal_tokens,
    caption_tokens,
    goal_text,
    tokenize,
)


def _state(types, pos, agent, goal=0):
    return SceneState(
        obj_types=jnp.array(types, jnp.int32),
        obj_pos=jnp.array(pos, jnp.int32),
        agent=jnp.array(agent, jnp.int32),
        goal=jnp.array(goal),
        t=jnp.zeros((), jnp.int32),
    )


def test_render_pixels_by_hand():
    env = SceneEnv(grid=3, num_objects=2, cell=5)
    # red square (type 0) at (0, 0); blue plus (type 2*3+2 = 8) at (2, 1); agent at (2, 1)
    st = _state([0, 8], [[0, 0], [2, 1]], [2, 1])
    img = np.asarray(env.render(st))
    assert img.shape == (15, 15, 3)
    np.testing.assert_allclose(img[1:4, 1:4], np.broadcast_to(RGB[0], (3, 3, 3)))
    assert img[0, 0].sum() == 0.0  # no agent ring there
    cell = img[10:15, 5:10]
    np.testing.assert_allclose(cell[0, :], 1.0)  # the agent ring
    np.testing.assert_allclose(cell[:, 0], 1.0)
    plus = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
    np.testing.assert_allclose(cell[1:4, 1:4][plus], np.broadcast_to(RGB[2], (5, 3)))
    assert cell[1:4, 1:4][~plus].sum() == 0.0
    # everything else is background
    mask = np.zeros((15, 15), bool)
    mask[1:4, 1:4] = True
    mask[10:15, 5:10] = True
    assert img[~mask].sum() == 0.0


def test_captions_and_tokens():
    assert goal_text(0) == f"agent on {COLORS[0]} {SHAPES[0]}"
    toks = all_goal_tokens()
    assert toks.shape == (NUM_TYPES, 4)
    for t in range(NUM_TYPES):
        np.testing.assert_array_equal(caption_tokens(jnp.array(t)), tokenize(goal_text(t)))
    np.testing.assert_array_equal(caption_tokens(jnp.array(-1)), tokenize("agent on nothing"))
    assert len({tuple(np.asarray(r)) for r in toks}) == NUM_TYPES
    with pytest.raises(ValueError, match="unknown words"):
        tokenize("agent on purple square")
    with pytest.raises(ValueError, match="TEXT_LEN"):
        tokenize("agent on red square now")
    assert VOCAB[0] == "<pad>"


def test_reset_step_success_features():
    env = SceneEnv(grid=4, num_objects=3, max_steps=5)
    states = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 100))
    all_pos, agents = np.asarray(states.obj_pos), np.asarray(states.agent)
    all_types = np.asarray(states.obj_types)
    for i in range(100):
        pos = {tuple(p) for p in all_pos[i]}
        assert len(pos) == 3 and tuple(agents[i]) not in pos
        assert len(set(all_types[i].tolist())) == 3
    st = _state([1, 5, 9], [[0, 1], [3, 3], [2, 0]], [0, 0], goal=0)
    env = SceneEnv(grid=4, num_objects=3, max_steps=5)
    st2, done = env.step(st, jnp.array(2))  # left: wall
    np.testing.assert_array_equal(st2.agent, [0, 0])
    assert not bool(done)
    st3, done = env.step(st2, jnp.array(3))  # right onto the goal
    assert bool(done) and bool(env.success(st3)) and int(env.on_type(st3)) == 1
    f = np.asarray(env.features(st3)).reshape(4, 4, 3)
    assert f[0, 1, 0] == 1 and f[..., 0].sum() == 1
    assert f[..., 1].sum() == 2 and f[3, 3, 1] == 1
    assert f[0, 1, 2] == 1 and f[..., 2].sum() == 1
    np.testing.assert_array_equal(env.goal_tokens(st3), tokenize(goal_text(1)))


def test_captioned_sample_consistent_under_jit_vmap():
    env = SceneEnv()
    imgs, toks, ty = jax.jit(jax.vmap(env.captioned_sample))(
        jax.random.split(jax.random.PRNGKey(1), 64)
    )
    assert imgs.shape == (64, 25, 25, 3)
    on = np.asarray(ty) >= 0
    assert 10 < on.sum() < 54
    np.testing.assert_array_equal(toks, jax.vmap(caption_tokens)(ty))


def test_bad_config_raises():
    with pytest.raises(ValueError, match="num_objects"):
        SceneEnv(grid=2, num_objects=4)
    with pytest.raises(ValueError, match="cell"):
        SceneEnv(cell=3)
