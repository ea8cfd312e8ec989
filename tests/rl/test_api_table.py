"""One test table for the RL family (diversity, constraints, tabular MDPs, environments).

Every environment with gymnax's ``reset(key, params)`` / ``step(key, state, action, params)``
and every ``make_train(...) -> train(key, ...)`` goes through the same checks: jit equals eager,
and vmap over keys equals a Python loop over keys (optax's ``alias_test`` pattern). The deep
ReLOAD agent is left to ``test_reload.py``'s smoke test (its compile is the slowest).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl import actor_critic as ac
from metalab.rl import diverse_sf as ds
from metalab.rl import domino as dm
from metalab.rl import exact
from metalab.rl import reload as rl
from metalab.rl.envs import two_colours as tc
from metalab.rl.envs.cmdp import random_cmdp
from metalab.rl.envs.diversity_grid import diversity_grid, grid_env
from metalab.rl.envs.garnet import make_garnet

KEYS = jax.random.split(jax.random.PRNGKey(0), 3)


def _close(a, b, atol=2e-5):
    jax.tree.map(
        lambda x, y: np.testing.assert_allclose(
            np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=2e-4, atol=atol
        ),
        a,
        b,
    )


# ---- environments: gymnax reset/step ---------------------------------------------------------


def _two_colours():
    env, params = tc.TwoColours(), tc.TwoColoursParams(swap_every=3, step_cost=0.01, size=3)
    return env, params, tc.NUM_ACTIONS


def _grid():
    env = grid_env(gamma=0.9)
    return env, env.default_params(), 4


ENVS = {"two_colours": _two_colours, "grid": _grid}


def _episode(env, params, n_actions, key, steps=3):
    k0, key = jax.random.split(key)
    obs, s = env.reset(k0, params)
    out = [obs]
    for t in range(steps):
        k, key = jax.random.split(key)
        a = jax.random.randint(jax.random.fold_in(k, t), (), 0, n_actions)
        obs, s, r, done, _ = env.step(k, s, a, params)
        out += [obs, r, jnp.asarray(done, jnp.float32)]
    return out


@pytest.mark.parametrize("name", sorted(ENVS))
def test_env_jit_equals_eager_and_vmap_equals_loop(name):
    env, params, n_actions = ENVS[name]()
    f = lambda k: _episode(env, params, n_actions, k)
    _close(jax.jit(f)(KEYS[0]), f(KEYS[0]))
    batched = jax.vmap(f)(KEYS)
    for i, k in enumerate(KEYS):
        _close(jax.tree.map(lambda x, i=i: x[i], batched), f(k))


# ---- agents and solvers: make_train(...) -> train(key, ...) ----------------------------------


def _ac():
    params = tc.TwoColoursParams(swap_every=5, step_cost=0.01, size=3)
    net = ac.ACNet(tc.NUM_ACTIONS)
    cfg = ac.ACConfig(tc.env_fns(params), net, num_envs=2, rollout_len=3, num_updates=2)
    return ac.make_train(cfg)


def _reload_tabular():
    cmdp = random_cmdp(jax.random.PRNGKey(1), 4, 2, 0.8, n_constraints=2)
    params = rl.ReloadParams(jnp.asarray(1.0), jnp.asarray(1.0), jnp.asarray(10.0))
    train = rl.make_train(20, optimistic=True, init_scale=1.0)
    return lambda key: train(key, cmdp, params)[1]


def _domino():
    mdp = exact.as_jax(
        diversity_grid(
            height=3, width=3, start=(1, 1), goals=((0, 0), (2, 2)), goal_rewards=(1.0, 1.0)
        )
    )
    params = dm.DominoParams(*(jnp.asarray(x) for x in (0.9, 0.5, 1.0, 0.1, 0.5)))
    train = dm.make_train(2, 10)
    return lambda key: train(key, mdp, params)[1]


def _diverse_sf():
    mdp = exact.as_jax(
        diversity_grid(
            height=3,
            width=3,
            start=(1, 1),
            goals=((0, 0), (2, 2)),
            goal_rewards=(1.0, 1.0),
            features="xy",
        )
    )
    v = exact.optimal_normalised_value(mdp.P, mdp.r, mdp.d0, mdp.gamma)
    params = ds.DiverseSFParams(*(jnp.asarray(x) for x in (0.9, 1.0, 0.1, 1e-3)))
    train = ds.make_train(3, 3, "learned_discriminator")
    return lambda key: train(key, mdp, params, v)[0].psi


def _garnet_exact():
    def f(key):
        mdp = make_garnet(key, 5, 3, 2, 0.9)
        pi = jnp.full((5, 3), 1.0 / 3)
        return (
            exact.q_values(mdp, pi),
            exact.occupancy(mdp, pi),
            exact.policy_iteration(mdp.P, mdp.r, mdp.gamma, 10)[0],
        )

    return f


TRAINS = {
    "actor_critic": _ac,
    "reload_tabular": _reload_tabular,
    "domino": _domino,
    "diverse_sf": _diverse_sf,
    "garnet_exact": _garnet_exact,
}


# Adam's first steps are +-lr whatever the gradient's size, so the learned discriminator turns
# float32 rounding differences between compiled programs into ~1e-4 differences of the SFs.
ATOL = {"diverse_sf": 2e-3}


@pytest.mark.parametrize("name", sorted(TRAINS))
def test_train_jit_equals_eager_and_vmap_equals_loop(name):
    train = TRAINS[name]()
    atol = ATOL.get(name, 2e-5)
    out = jax.jit(train)(KEYS[0])
    _close(out, train(KEYS[0]), atol)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(out))
    batched = jax.jit(jax.vmap(train))(KEYS)
    for i, k in enumerate(KEYS):
        _close(jax.tree.map(lambda x, i=i: x[i], batched), jax.jit(train)(k), atol)


def test_one_tabular_type_for_garnet_cmdp_and_grid():
    g = make_garnet(jax.random.PRNGKey(0), 4, 2, 2, 0.9)
    c = random_cmdp(jax.random.PRNGKey(0), 4, 2, 0.9)
    d = diversity_grid()
    assert type(g) is type(c) is type(d) is exact.TabularMDP
    assert g.R is g.r and g.rho is g.d0  # the Garnet names are aliases
    for m in (g, c, d):
        exact.validate(m)
