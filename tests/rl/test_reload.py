"""ReLOAD: the optimistic update by hand and against optax, Lagrangian, projection, LP optimum."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from metalab.experiments import reload_cmdp
from metalab.rl import reload as rl
from metalab.rl import successor_features as sf
from metalab.rl.envs.cmdp import random_cmdp, solve_lp


def test_optimistic_update_hand_computed():
    # u_t = -lr (2 g_t - g_{t-1}); the first step uses g_{-1} = g_0.
    opt = rl.make_optimizer(0.1, optimistic=True)
    s = opt.init(jnp.zeros(()))
    u1, s = opt.update(jnp.asarray(1.0), s)
    u2, s = opt.update(jnp.asarray(3.0), s)
    u3, s = opt.update(jnp.asarray(-2.0), s)
    np.testing.assert_allclose([float(u1), float(u2), float(u3)], [-0.1, -0.5, 0.7], rtol=1e-6)
    gda = rl.make_optimizer(0.1, optimistic=False)
    u, _ = gda.update(jnp.asarray(3.0), gda.init(jnp.zeros(())))
    np.testing.assert_allclose(float(u), -0.3, rtol=1e-6)


def test_update_matches_manual_optimistic_ascent_descent():
    cmdp = random_cmdp(jax.random.PRNGKey(0), 4, 2, 0.8)
    params = rl.ReloadParams(jnp.asarray(0.5), jnp.asarray(0.7), jnp.asarray(10.0))
    state = rl.init(jax.random.PRNGKey(1), cmdp, params, optimistic=True, init_scale=0.5)
    th, lam = np.asarray(state.logits), 0.0
    g_prev = h_prev = None
    step = jax.jit(lambda s: rl.update(s, cmdp, params, optimistic=True, direction="npg")[0])
    for _ in range(4):
        state = step(state)
        g = np.asarray(rl.policy_direction(cmdp, jnp.asarray(th), lam, "npg"))
        pi = sf.softmax_policy(jnp.asarray(th))
        v_c = float(sf.normalised_value(cmdp.P, pi, cmdp.c, cmdp.d0, cmdp.gamma))
        h = -(v_c - float(cmdp.threshold))  # dL/dlam
        g_prev = g if g_prev is None else g_prev
        h_prev = h if h_prev is None else h_prev
        th = th + 0.5 * (2 * g - g_prev)
        lam = float(np.clip(lam - 0.7 * (2 * h - h_prev), 0.0, 10.0))
        g_prev, h_prev = g, h
        np.testing.assert_allclose(np.asarray(state.logits), th, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(state.multiplier), lam, rtol=1e-5, atol=1e-7)


def test_optimistic_converges_on_bilinear_game_where_gda_does_not():
    # min_x max_y x*y: GDA spirals out, optimistic GDA converges to (0, 0).
    def run(optimistic):
        ox, oy = rl.make_optimizer(0.2, optimistic), rl.make_optimizer(0.2, optimistic)
        x, y = jnp.asarray(1.0), jnp.asarray(1.0)
        sx, sy = ox.init(x), oy.init(y)
        for _ in range(500):
            ux, sx = ox.update(y, sx)  # x descends d(xy)/dx = y
            uy, sy = oy.update(-x, sy)  # y ascends d(xy)/dy = x
            x, y = optax.apply_updates(x, ux), optax.apply_updates(y, uy)
        return float(jnp.hypot(x, y))

    assert run(True) < 0.05
    assert run(False) > 10.0


def test_lagrangian_and_multiplier_projection():
    cmdp = random_cmdp(jax.random.PRNGKey(2), 5, 3, 0.9)
    logits = jax.random.normal(jax.random.PRNGKey(3), (5, 3))
    pi = sf.softmax_policy(logits)
    v_r = sf.normalised_value(cmdp.P, pi, cmdp.r, cmdp.d0, cmdp.gamma)
    v_c = sf.normalised_value(cmdp.P, pi, cmdp.c, cmdp.d0, cmdp.gamma)
    np.testing.assert_allclose(
        float(rl.lagrangian(cmdp, logits, 2.0)),
        float(v_r - 2.0 * (v_c - cmdp.threshold)),
        rtol=1e-6,
    )
    # A huge multiplier step stays inside [0, multiplier_max].
    params = rl.ReloadParams(jnp.asarray(1.0), jnp.asarray(1e4), jnp.asarray(3.0))
    _, info = rl.make_train(200, optimistic=True)(jax.random.PRNGKey(0), cmdp, params)
    lam = np.asarray(info["multiplier"])
    assert lam.min() >= 0.0 and lam.max() <= 3.0
    assert lam.max() == pytest.approx(3.0) or lam.min() == pytest.approx(0.0)


def test_threshold_binds_and_reload_reaches_lp_optimum():
    cmdp = random_cmdp(jax.random.PRNGKey(4), 4, 2, 0.8)
    lp = solve_lp(cmdp)
    # the LP policy's exact values reproduce the LP objective, constraint active.
    pi = jnp.asarray(lp["policy"], jnp.float32)
    v_r = float(sf.normalised_value(cmdp.P, pi, cmdp.r, cmdp.d0, cmdp.gamma))
    v_c = float(sf.normalised_value(cmdp.P, pi, cmdp.c, cmdp.d0, cmdp.gamma))
    np.testing.assert_allclose(v_r, lp["value"], rtol=1e-4)
    np.testing.assert_allclose(v_c, float(cmdp.threshold), rtol=1e-4)
    assert lp["multiplier"] > 0
    params = rl.ReloadParams(jnp.asarray(3.0), jnp.asarray(3.0), jnp.asarray(100.0))
    state, info = jax.jit(rl.make_train(4000, optimistic=True))(jax.random.PRNGKey(0), cmdp, params)
    assert abs(float(info["value"][-1]) - lp["value"]) < 1e-3
    assert float(info["violation"][-1]) < 1e-3
    assert abs(float(state.multiplier) - lp["multiplier"]) < 0.02


def test_random_cmdp_vmaps_and_validates():
    ms = jax.vmap(lambda k: random_cmdp(k, 4, 2, 0.9))(jax.random.split(jax.random.PRNGKey(0), 3))
    assert ms.P.shape == (3, 4, 2, 4)
    np.testing.assert_allclose(np.asarray(ms.P.sum(-1)), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="threshold_frac"):
        random_cmdp(jax.random.PRNGKey(0), threshold_frac=1.5)
    with pytest.raises(ValueError, match="direction"):
        rl.make_train(10, True, direction="adam")


def test_decay_fit_on_synthetic_envelope():
    x = jnp.arange(1, 21) * 1000.0
    y = 10.0 ** (-x / 1e4)  # one decade per 10k iterations
    np.testing.assert_allclose(float(rl.fit_log_decay(x, y)) * 1e4, -1.0, rtol=1e-3)
    v = jnp.asarray([0.1, -0.2, 0.05, -1.0, 0.3, 0.0])
    np.testing.assert_allclose(np.asarray(rl.windowed_violation(v, 2)), [0.1, 0.05, 0.3])


def test_smoke_experiment_runs_vmapped():
    exp = reload_cmdp.EXPERIMENT
    cfg = exp.config("smoke")
    out = jax.jit(jax.vmap(lambda k: exp.run(cfg, k)))(jax.random.split(jax.random.PRNGKey(0), 2))
    ms = [{k: np.asarray(v)[i] for k, v in out.items()} for i in range(2)]
    assert all(np.all(np.isfinite(v)) for m in ms for v in m.values())
    v = exp.verdict(ms, cfg)
    assert len(v.checks) == 4


def test_discounted_returns_by_hand():
    x = jnp.asarray([[1.0], [2.0], [3.0]])
    done = jnp.asarray([[0.0], [1.0], [0.0]])
    g = rl.discounted_returns(x, done, 0.5)
    # G_2 = 3; G_1 = 2 (episode ends at t = 1); G_0 = 1 + 0.5 * 2 = 2
    np.testing.assert_allclose(np.asarray(g[:, 0]), [2.0, 2.0, 3.0])


def test_deep_smoke_experiment():
    exp = reload_cmdp.DEEP_EXPERIMENT
    assert exp in reload_cmdp.EXPERIMENTS
    cfg = exp.config("smoke")
    out = jax.jit(jax.vmap(lambda k: exp.run(cfg, k)))(jax.random.split(jax.random.PRNGKey(0), 2))
    ms = [{k: np.asarray(v)[i] for k, v in out.items()} for i in range(2)]
    assert all(np.all(np.isfinite(v)) for m in ms for v in m.values())
    for m in ms:
        assert m["multiplier/gda"].min() >= 0 and m["multiplier/reload"].min() >= 0
        assert m["cost_rate/reload"].min() >= 0.0 and m["cost_rate/reload"].max() <= 1.0
    assert len(exp.verdict(ms, cfg).checks) == 2
    with pytest.raises(ValueError, match="cost_action"):
        rl.make_deep_train(cost_action=5)
