"""Deep Sea: gymnax's dynamics with bsuite's mapping against bsuite's own environment."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from bsuite.environments import deep_sea as bsuite_deep_sea

from metalab.rl.envs import deep_sea


class _ScriptedRng:
    """Stands in for bsuite's numpy RandomState: returns the draws gymnax made."""

    def __init__(self):
        self.normal = 0.0
        self.uniform = 0.5

    def randn(self):
        return self.normal

    def rand(self):
        return self.uniform


@pytest.mark.parametrize("size,seed", [(5, 0), (10, 42), (20, 7)])
def test_action_mapping_matches_bsuite(size, seed):
    env = bsuite_deep_sea.DeepSea(size=size, mapping_seed=seed)
    np.testing.assert_array_equal(
        deep_sea.bsuite_action_mapping(size, seed), env._action_mapping.astype(np.int32)
    )
    ours, _ = deep_sea.make_deep_sea(size, mapping_seed=seed)
    np.testing.assert_array_equal(np.asarray(ours.action_mapping), env._action_mapping)


@pytest.mark.parametrize("deterministic", [True, False])
def test_optimal_return_matches_bsuite(deterministic):
    for size in (4, 10, 30):
        env = bsuite_deep_sea.DeepSea(size=size, deterministic=deterministic, seed=0)
        assert deep_sea.optimal_return(size, deterministic) == pytest.approx(env._optimal_return)
        ours, params = deep_sea.make_deep_sea(size, deterministic)
        _, st = jax.jit(ours.reset_env)(jax.random.PRNGKey(0), params)
        assert float(st.optimal_return) == pytest.approx(env._optimal_return, rel=1e-6)


@pytest.mark.parametrize("deterministic", [True, False])
def test_trajectories_match_bsuite(deterministic):
    """Same mapping seed, same actions, same random draws -> same rewards, observations,
    terminations, bad-episode counts and denoised returns, episode after episode."""
    size, seed = 6, 3
    ref = bsuite_deep_sea.DeepSea(size=size, deterministic=deterministic, mapping_seed=seed)
    ref._rng = _ScriptedRng()
    env, params = deep_sea.make_deep_sea(size, deterministic, mapping_seed=seed)
    step = jax.jit(lambda k, s, a: env.step_env(k, s, a, params))
    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(0)
    denoised = 0
    total_bad = 0
    for episode in range(12):
        ts = ref.reset()
        key, k0 = jax.random.split(key)
        obs, st = env.reset_env(k0, params)
        np.testing.assert_array_equal(np.asarray(obs), ts.observation)
        # bias towards "right" so that the treasure and the stochastic paths are reached
        p_right = 0.95 if episode % 2 == 0 else 0.5
        for _ in range(size):
            right = rng.random() < p_right
            mapping = ref._action_mapping[ref._row, ref._column]
            action = int(mapping if right else 1 - mapping)
            key, k = jax.random.split(key)
            k_reward, k_trans = jax.random.split(k)  # the draws gymnax makes inside step_env
            ref._rng.normal = float(jax.random.normal(k_reward, ()))
            ref._rng.uniform = float(jax.random.uniform(k_trans, (), minval=0, maxval=1))
            ts = ref.step(action)
            obs, st, r, done, _ = step(k, st, action)
            np.testing.assert_allclose(float(r), ts.reward, rtol=1e-5, atol=1e-6)
            np.testing.assert_array_equal(np.asarray(obs), ts.observation)
            assert bool(done) == ts.last()
            cell = int(deep_sea.cell_index(st, size))
            expected_cell = size * size if ts.last() else int(np.argmax(ts.observation))
            assert cell == expected_cell
        denoised += int(st.denoised_return)
        total_bad += int(st.bad_episode)
        info = ref.bsuite_info()
        assert info["denoised_return"] == denoised
        assert info["total_bad_episodes"] == total_bad
    assert denoised > 0 or not deterministic  # the right-biased episodes found the treasure


def test_optimal_policy_return():
    size = 8
    env, params = deep_sea.make_deep_sea(size)
    _, st = env.reset_env(jax.random.PRNGKey(0), params)
    step = jax.jit(
        lambda s: env.step_env(jax.random.PRNGKey(1), s, s.action_mapping[s.row, s.column], params)
    )
    total = 0.0
    for _ in range(size):
        _, st, r, done, _ = step(st)
        total += float(r)
    assert bool(done) and not bool(st.bad_episode)
    assert total == pytest.approx(deep_sea.optimal_return(size), abs=1e-6)


def test_solve_episode_and_score():
    solve = jax.jit(deep_sea.solve_episode, static_argnums=1)
    # deterministic: first e with cumsum(bad)/e < 0.9
    bad = jnp.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 0], jnp.float32)
    solved, ep = solve(bad)
    # cumsum/e: e=10 -> 9/10 = 0.9 (not < 0.9); e=13 -> 11/13 = 0.846
    assert bool(solved) and int(ep) == 13
    solved, ep = solve(jnp.ones(50))
    assert not bool(solved) and int(ep) == 50
    # stochastic: only e >= 100, threshold 0.8
    bad = jnp.concatenate([jnp.zeros(10), jnp.ones(150)])
    solved, ep = solve(bad, False)
    # cumsum(e) = e - 10; (e - 10) / e < 0.8  <=>  e < 50: never for e >= 100
    assert not bool(solved)
    bad = jnp.concatenate([jnp.zeros(30), jnp.ones(200)])
    solved, ep = solve(bad, False)
    # (e - 30) / e < 0.8  <=>  e < 150; first allowed e is 100
    assert bool(solved) and int(ep) == 100
    assert float(deep_sea.bsuite_score(True, 30, 5)) == 1.0  # 30 < 2^5 + 100
    assert float(deep_sea.bsuite_score(True, 140, 5)) == 0.0
    assert float(deep_sea.bsuite_score(False, 3, 10)) == 0.0


def test_bad_input():
    with pytest.raises(ValueError, match="size"):
        deep_sea.make_deep_sea(1)
    with pytest.raises(ValueError, match="unscaled_move_cost"):
        deep_sea.make_deep_sea(5, unscaled_move_cost=-1.0)


def test_vmapped_reset_step():
    env, params = deep_sea.make_deep_sea(5, deterministic=False)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)

    @jax.jit
    def reset_and_step(keys):
        _, st = jax.vmap(lambda k: env.reset_env(k, params))(keys)
        return jax.vmap(lambda k, s: env.step_env(k, s, 0, params))(keys, st)

    _, st, r, done, _ = reset_and_step(keys)
    assert r.shape == (3,) and done.shape == (3,)
    np.testing.assert_array_equal(np.asarray(st.row), 1)


def test_action_mapping_is_a_traced_input():
    """A new mapping is a new argument value: no recompilation, and mappings vmap."""
    size = 6
    env, params = deep_sea.make_deep_sea(size)
    traces = []

    @jax.jit
    def rollout(mapping):
        traces.append(1)  # runs once per compilation
        p = params.replace(action_mapping=mapping)
        _, st = env.reset_env(jax.random.PRNGKey(0), p)

        def step(st, _):  # always take the "right" action of the current cell
            a = st.action_mapping[st.row, st.column]
            _, st, r, _, _ = env.step_env(jax.random.PRNGKey(1), st, a, p)
            return st, r

        return jax.lax.scan(step, st, None, length=size)[1].sum()

    maps = jax.vmap(lambda k: deep_sea.random_action_mapping(k, size))(
        jax.random.split(jax.random.PRNGKey(3), 4)
    )
    loop = [float(rollout(m)) for m in maps]
    assert len(traces) == 1
    want = deep_sea.optimal_return(size)
    np.testing.assert_allclose(loop, want, atol=1e-6)
    # taking action 1 everywhere: the return depends on the mapping; vmap equals the loop
    ones = lambda m: jax.lax.scan(
        lambda st, _: (
            (o := env.step_env(jax.random.PRNGKey(1), st, 1, params.replace(action_mapping=m)))[1],
            o[2],
        ),
        env.reset_env(jax.random.PRNGKey(0), params.replace(action_mapping=m))[1],
        None,
        length=size,
    )[1].sum()
    v = jax.jit(jax.vmap(ones))(maps)
    np.testing.assert_allclose(v, [float(jax.jit(ones)(m)) for m in maps], rtol=1e-6)
    assert len(set(np.round(np.asarray(v), 6))) > 1  # different mappings, different MDPs
    # the installed bsuite mapping is what reset puts in the state
    _, st = env.reset_env(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(st.action_mapping, deep_sea.bsuite_action_mapping(size))
    with pytest.raises(ValueError, match="action_mapping"):
        env.reset_env(jax.random.PRNGKey(0), params.replace(action_mapping=jnp.ones((3, 3))))
