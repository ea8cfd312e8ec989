"""One API table over every metagrad method (as optax's alias_test does for optimisers).

Each entry builds a pure function of the family's protocol and inputs for it; every entry goes
through the same checks: jit equals eager, vmap equals a Python loop, outputs and gradients are
finite, a second call with new values does not recompile, and the structure of what comes back
(meta-gradients shaped like the meta-parameters, metrics dicts) is kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.metagrad import accelerated_pg as apg
from metalab.metagrad import bmg, bmg_epsilon, contextual, meta_ac, optimistic, problems
from metalab.rl import actor_critic as ac
from metalab.rl import q_learning as ql
from metalab.rl.envs import deep_sea, garnet
from metalab.rl.envs import two_colours as tc


@dataclass
class Case:
    """``fn(batched_arg, *rest)``; ``xs`` a batch (leading axis) of values of the first
    argument; ``grad_of`` (optional) returns a scalar of the output whose gradient w.r.t. the
    first argument must be finite; ``meta_like`` says the output's second element is a
    meta-gradient shaped like the first argument."""

    fn: Any
    xs: Any
    rest: tuple = ()
    grad_of: Any = None
    meta_like: bool = False


A = jnp.array([[1.0, 0.5, 0.0], [0.2, 1.5, -0.3], [0.0, 0.1, 0.8]])
X0 = jnp.array([0.3, -0.2, 0.5])
BATCHES = jnp.array([[1.0, 0.0, 0.5], [0.5, -1.0, 0.2]])
TARGET = jnp.array([0.2, 0.4, -0.1])


def _f(x, b):
    return 0.5 * jnp.sum((A @ x - b) ** 2)


def _update(x, w, b):
    return x - w * jax.grad(_f)(x, b)


def _bmg_case(**kw) -> Case:
    proj = None if kw.get("match") != "kl" else (lambda x, b: jnp.stack([x, -x]))
    method = bmg.meta_gradient(_update, _f, project_fn=proj, **kw)
    return Case(
        lambda w: method.meta_grad(w, X0, BATCHES, TARGET),
        jnp.array([0.05, 0.1, 0.2]),
        grad_of=lambda w: method.meta_loss(w, X0, BATCHES, TARGET),
        meta_like=True,
    )


def _quad():
    return problems.random_quadratic(jax.random.PRNGKey(0), 4, 10.0)


def _opt_mg_case() -> Case:
    p = _quad()
    method = optimistic.averaging_meta_gradient(lambda x: problems.quadratic_value(p, x))
    ws = jnp.stack([p.x0, p.x0 + 1.0, p.x0 - 1.0])
    return Case(
        lambda w: method.meta_grad(w, 0.5 * p.x0, 0.3),
        ws,
        grad_of=lambda w: method.meta_loss(w, 0.5 * p.x0, 0.3),
        meta_like=True,
    )


def _opt_train_case(optimistic_: bool) -> Case:
    p = _quad()
    train = optimistic.make_train(
        optimistic.MetaOptConfig(optimistic=optimistic_, steps=8), problems.quadratic_value
    )
    return Case(
        lambda s: train(p, optimistic.FTRLParams(s)).subopt,
        jnp.array([0.5, 1.0, 2.0]),
        grad_of=lambda s: train(p, optimistic.FTRLParams(s)).subopt[-1],
    )


def _mdp():
    return garnet.make_garnet(jax.random.PRNGKey(0), 4, 2, 2, 0.8)


def _apg_case(method: str, noise: float = 0.0) -> Case:
    mdp = _mdp()
    train = apg.make_train(apg.AcceleratedPGConfig(method=method, num_iters=5, adv_noise=noise))

    def fn(lr):
        return train(mdp, apg.PGParams(lr=lr, beta=0.5, meta_lr=0.01), jax.random.PRNGKey(3))

    return Case(fn, jnp.array([0.5, 1.0, 2.0]), grad_of=lambda lr: fn(lr)["J"][-1])


def _eps_mg_case() -> Case:
    tr = ql.Transitions(
        s=jnp.array([[0, 1]]),
        a=jnp.array([[1, 0]]),
        r=jnp.array([[1.0, 0.0]]),
        s2=jnp.array([[1, 2]]),
        done=jnp.array([[False, True]]),
    )
    q = jnp.array([[0.0, 1.0], [0.5, 0.0], [0.0, 0.0]])
    method = bmg_epsilon.epsilon_meta_gradient(0.5, 0.9, 2)
    return Case(
        lambda phi: method.meta_grad(phi, q, tr),
        jnp.array([-2.0, 0.0, 1.0]),
        grad_of=lambda phi: method.meta_loss(phi, q, tr),
        meta_like=True,
    )


def _eps_train_case() -> Case:
    env, envp = deep_sea.make_deep_sea(3)
    cfg = bmg_epsilon.EpsilonConfig(
        env=env,
        env_params=envp,
        index_fn=lambda s: deep_sea.cell_index(s, 3),
        num_states=10,
        num_actions=2,
        num_envs=2,
        batch_len=3,
        num_batches=3,
    )
    train = bmg_epsilon.make_train(cfg)
    return Case(
        lambda e: train(jax.random.PRNGKey(0), bmg_epsilon.EpsilonParams(e)),
        jnp.array([0.1, 0.3, 0.5]),
    )


def _meta_ac_case(L: int) -> Case:
    env = tc.env_fns(tc.TwoColoursParams(swap_every=6, step_cost=0.01, size=3))
    net = ac.ACNet(num_actions=tc.NUM_ACTIONS)
    base = ac.make_hyper(entropy=0.05, lr=1.0, discount=0.9)
    hyper_fn = contextual.make_hyper_fn(base, 1.0, 2.0)
    cfg = meta_ac.MetaACConfig(num_envs=2, rollout_len=2, num_meta_steps=2, num_bootstrap=L)
    train = meta_ac.make_train(cfg, env, net, hyper_fn)
    phi = contextual.init_phi(0.05, 1.0, 1.0, 2.0)
    mask = contextual.context_mask("full")
    return Case(
        lambda k: train(k, meta_ac.MetaACParams(phi, mask)),
        jax.random.split(jax.random.PRNGKey(0), 2),
    )


def _hyper_fn_case() -> Case:
    fn = contextual.make_hyper_fn(ac.make_hyper(entropy=0.05, lr=1.0), 1.0, 2.0)
    phi = contextual.init_phi(0.05, 1.0, 1.0, 2.0)
    ctx = jnp.stack([jnp.ones(6), jnp.linspace(0, 1, 6), -jnp.linspace(0, 1, 6)])
    return Case(
        lambda c: fn(phi, c),
        ctx,
        grad_of=lambda c: fn(phi, c).entropy + fn(phi, c).lr,
    )


CASES = {
    "bmg/L0": lambda: _bmg_case(num_bootstrap=0),
    "bmg/L2-l2": lambda: _bmg_case(num_bootstrap=2, match="l2"),
    "bmg/L1-kl": lambda: _bmg_case(num_bootstrap=1, match="kl"),
    "bmg/truncated": lambda: _bmg_case(num_bootstrap=0, truncation=1),
    "optimistic/meta_grad": _opt_mg_case,
    "optimistic/train-mg": lambda: _opt_train_case(False),
    "optimistic/train-bmg": lambda: _opt_train_case(True),
    **{f"accelerated_pg/{m}": (lambda m=m: _apg_case(m)) for m in apg.METHODS},
    "accelerated_pg/npg-noisy": lambda: _apg_case("npg", 0.1),
    "bmg_epsilon/meta_grad": _eps_mg_case,
    "bmg_epsilon/train": _eps_train_case,
    "meta_ac/mg": lambda: _meta_ac_case(0),
    "meta_ac/bmg": lambda: _meta_ac_case(2),
    "contextual/hyper_fn": _hyper_fn_case,
}


def _close(a, b, rtol=1e-4, atol=1e-5):
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


@pytest.mark.parametrize("name", sorted(CASES))
def test_api_table(name):
    case = CASES[name]()
    n = jax.tree.leaves(case.xs)[0].shape[0]
    item = [jax.tree.map(lambda v, i=i: v[i], case.xs) for i in range(n)]
    f = jax.jit(case.fn)
    outs = [f(x) for x in item]
    # no recompile on calls with new values; the same structure comes back each time
    assert f._cache_size() == 1
    assert all(jax.tree.structure(o) == jax.tree.structure(outs[0]) for o in outs)
    # jit equals eager
    _close(outs[0], case.fn(item[0]))
    # vmap equals a loop
    _close(jax.jit(jax.vmap(case.fn))(case.xs), jax.tree.map(lambda *ys: jnp.stack(ys), *outs))
    # outputs and gradients finite
    assert all(bool(jnp.all(jnp.isfinite(v))) for o in outs for v in jax.tree.leaves(o))
    if case.grad_of is not None:
        g = jax.jit(jax.grad(case.grad_of))(item[-1])
        assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(g))
    if case.meta_like:  # (loss, grad): the meta-gradient has the meta-parameters' structure
        assert jax.tree.structure(outs[0][1]) == jax.tree.structure(item[0])
        assert [v.shape for v in jax.tree.leaves(outs[0][1])] == [
            jnp.shape(v) for v in jax.tree.leaves(item[0])
        ]
