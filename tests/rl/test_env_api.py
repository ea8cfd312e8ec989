"""One table for metalab's own RL environments: gymnax's raw reset_env/step_env signatures,
jit equals eager, vmap equals a loop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl.envs import deep_sea
from metalab.rl.envs.permuted_bandit import PermutedBandit
from metalab.rl.envs.permuted_grid import PermutedGrid
from metalab.rl.envs.scenes import SceneEnv


def _deep_sea():
    env, params = deep_sea.make_deep_sea(5, deterministic=False)
    return env, params


ENVS = {
    "deep_sea": _deep_sea,
    "permuted_bandit": lambda: (PermutedBandit(4), None),
    "permuted_grid": lambda: (PermutedGrid(3, 4), None),
    "scenes": lambda: (SceneEnv(grid=3, num_objects=2, max_steps=4), None),
}


def _rollout(env, params, key, steps=3):
    k0, *ks = jax.random.split(key, steps + 1)
    obs, st = env.reset_env(k0, params)
    out = [obs]
    for i, k in enumerate(ks):
        obs, st, r, done, _ = env.step_env(k, st, jnp.asarray(i % 2), params)
        out += [obs, jnp.asarray(r, jnp.float32), jnp.asarray(done, jnp.float32)]
    return out


@pytest.mark.parametrize("name", sorted(ENVS))
def test_reset_step_jit_equals_eager_and_vmap_equals_loop(name):
    env, params = ENVS[name]()
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    eager = [_rollout(env, params, k) for k in keys]
    jitted = jax.jit(lambda k: _rollout(env, params, k))
    vm = jax.jit(jax.vmap(lambda k: _rollout(env, params, k)))(keys)
    for i, k in enumerate(keys):
        for a, b in zip(eager[i], jitted(k), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
        for a, b in zip(eager[i], [v[i] for v in vm], strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
