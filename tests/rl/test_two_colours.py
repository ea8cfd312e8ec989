"""Dynamics of the two-colours grid world: reward swap schedule, step cost, respawn, torus."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl.envs import two_colours as tc


def _state(agent, obj0, obj1, t=0):
    return tc.TwoColoursState(
        agent=jnp.array(agent, jnp.int32),
        objects=jnp.array([obj0, obj1], jnp.int32),
        t=jnp.array(t, jnp.int32),
    )


P = tc.TwoColoursParams(swap_every=10, step_cost=0.05, size=5)
RIGHT, LEFT, UP = 1, 3, 0
_step = jax.jit(tc.step, static_argnums=3)


def test_reward_swaps_exactly_at_the_scheduled_step():
    key = jax.random.PRNGKey(0)
    # colour 0 to the right of the agent
    for t, expected in [(0, 1.0), (9, 1.0), (10, -1.0), (19, -1.0), (20, 1.0)]:
        _, _, r = _step(key, _state((2, 2), (2, 3), (0, 0), t), RIGHT, P)
        assert float(r) == pytest.approx(expected - 0.05), t
    # colour 1 has the opposite sign
    _, _, r = _step(key, _state((2, 2), (0, 0), (2, 3), 10), RIGHT, P)
    assert float(r) == pytest.approx(1.0 - 0.05)


def test_step_cost_when_nothing_is_collected_and_time_advances():
    _, s, r = _step(jax.random.PRNGKey(1), _state((2, 2), (0, 0), (4, 4), 3), UP, P)
    assert float(r) == pytest.approx(-0.05)
    assert int(s.t) == 4
    np.testing.assert_array_equal(s.agent, [1, 2])
    np.testing.assert_array_equal(s.objects, [[0, 0], [4, 4]])


def test_collected_object_respawns_on_a_free_cell():
    for seed in range(30):
        _, s, _ = _step(jax.random.PRNGKey(seed), _state((2, 2), (2, 3), (1, 1)), RIGHT, P)
        new = tuple(np.asarray(s.objects[0]))
        assert new != (2, 3) and new != (1, 1)  # not on the agent, not on the other object
        np.testing.assert_array_equal(s.objects[1], [1, 1])


def test_torus_wrap_and_egocentric_observation():
    obs, s, _ = _step(jax.random.PRNGKey(0), _state((2, 0), (0, 0), (4, 4)), LEFT, P)
    np.testing.assert_array_equal(s.agent, [2, 4])
    o = np.asarray(obs).reshape(2, 5, 5)
    # colour 0 at (0,0) relative to (2,4): (-2, +1) mod 5 = (3, 1); colour 1 at (4,4): (2, 0)
    assert o[0, 3, 1] == 1 and o[0].sum() == 1
    assert o[1, 2, 0] == 1 and o[1].sum() == 1


def test_reset_under_vmap_gives_distinct_cells():
    obs, s = jax.vmap(lambda k: tc.reset(k, P))(jax.random.split(jax.random.PRNGKey(3), 16))
    assert obs.shape == (16, tc.obs_size(P))
    pos = np.concatenate([np.asarray(s.agent)[:, None], np.asarray(s.objects)], 1)
    for p in pos:
        assert len({tuple(x) for x in p}) == 3


def test_bad_params_raise():
    with pytest.raises(ValueError, match="size"):
        tc.reset(jax.random.PRNGKey(0), tc.TwoColoursParams(size=2))
    with pytest.raises(ValueError, match="swap_every"):
        tc.check_params(tc.TwoColoursParams(swap_every=0))
    with pytest.raises(ValueError, match="step_cost"):
        tc.check_params(tc.TwoColoursParams(step_cost=-1.0))
