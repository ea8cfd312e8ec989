"""TDU: the bonus on a hand-computed batch, its stop-gradient, the loss, and the experiment."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import rlax

from metalab.experiments import tdu_deep_sea
from metalab.rl import boot_dqn, tdu


def test_bonus_on_hand_computed_batch():
    # K = 5 members, the last 2 explorers; 3 transitions.
    td = jnp.array(
        [
            [1.0, 0.0, -2.0],  # exploiter
            [3.0, 0.0, 2.0],  # exploiter
            [2.0, 0.0, 0.0],  # exploiter
            [10.0, 5.0, 7.0],  # explorer (excluded from the std)
            [-4.0, 1.0, 0.5],  # explorer
        ]
    )
    is_x = tdu.explorer_mask(5, 2)
    np.testing.assert_array_equal(is_x, [False, False, False, True, True])
    sigma = tdu.td_uncertainty(td, is_x)
    # transition 0: {1, 3, 2}: mean 2, squares 1 + 1 + 0 = 2, /(3 - 1) -> var 1
    # transition 1: {0, 0, 0}: 0
    # transition 2: {-2, 2, 0}: mean 0, squares 4 + 4 + 0 = 8, /2 -> var 4
    np.testing.assert_allclose(sigma, [1.0, 0.0, 2.0], atol=1e-6)
    beta = 0.5
    out, s2 = tdu.tdu_td_errors(td, is_x, beta)
    np.testing.assert_allclose(s2, sigma)
    expected = np.asarray(td).copy()
    expected[3:] += beta * np.array([1.0, 0.0, 2.0])
    np.testing.assert_allclose(out, expected, atol=1e-6)
    r = jnp.array([0.1, -0.2, 1.0])
    np.testing.assert_allclose(
        tdu.tdu_rewards(r, sigma, is_x, beta),
        np.stack([r, r, r, r + beta * sigma, r + beta * sigma]),
        atol=1e-6,
    )


def test_bonus_is_stop_gradient():
    td = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    is_x = tdu.explorer_mask(3, 1)
    g = jax.grad(lambda d: tdu.tdu_td_errors(d, is_x, 2.0)[0].sum())(td)
    np.testing.assert_array_equal(g, np.ones_like(td))  # no path through sigma


def test_jit_vmap_and_traced_beta():
    td = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 5))  # [seeds, K, B]
    is_x = tdu.explorer_mask(6, 3)
    f = jax.jit(jax.vmap(lambda d, b: tdu.tdu_td_errors(d, is_x, b)[1], in_axes=(0, None)))
    sig = f(td, jnp.float32(0.3))
    np.testing.assert_allclose(sig, np.std(np.asarray(td)[:, :3], axis=1, ddof=1), rtol=1e-5)


def test_tdu_loss_equals_explicit_bonus_rewards():
    """boot_dqn's TDU loss == explorers trained (with rlax) on r + beta * sigma, where sigma is
    the std of the exploiters' extrinsic TD errors on each transition."""
    cfg = boot_dqn.BootDQNConfig(
        num_ensemble=4, num_explorers=2, beta=0.7, hidden=(5,), batch_size=3, discount=0.9
    )
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 4, 2)
    target = jax.tree.map(lambda x: x * 0.9, st.params)
    b = boot_dqn.Transition(
        cell_tm1=jnp.array([0, 1, 2]),
        a_tm1=jnp.array([1, 0, 1]),
        r_t=jnp.array([0.0, -0.01, 1.0]),
        discount_t=jnp.array([1.0, 1.0, 0.0]),
        cell_t=jnp.array([1, 3, 4]),
        mask_t=jnp.zeros((3, 0)),
        noise_t=jnp.zeros((3, 0)),
    )
    loss, sigma_mean = boot_dqn.loss_fn(st.params, target, st.prior_table, b, cfg)
    q_tm1 = boot_dqn.ensemble_q(st.params, st.prior_table, cfg.prior_scale, b.cell_tm1)
    q_t = boot_dqn.ensemble_q(target, st.prior_table, cfg.prior_scale, b.cell_t)
    ext = np.array(
        [
            [
                float(
                    rlax.q_learning(
                        q_tm1[k, i], b.a_tm1[i], b.r_t[i], 0.9 * b.discount_t[i], q_t[k, i]
                    )
                )
                for i in range(3)
            ]
            for k in range(4)
        ]
    )
    sigma = np.std(ext[:2], axis=0, ddof=1)
    expected = 0.0
    for k in range(4):
        for i in range(3):
            r = b.r_t[i] + (0.7 * sigma[i] if k >= 2 else 0.0)
            d = float(rlax.q_learning(q_tm1[k, i], b.a_tm1[i], r, 0.9 * b.discount_t[i], q_t[k, i]))
            expected += d**2 / 3
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(sigma_mean, sigma.mean(), rtol=1e-5)
    # beta = 0 is exactly bootstrapped DQN
    l0, _ = boot_dqn.loss_fn(st.params, target, st.prior_table, b, cfg._replace(beta=0.0))
    lb, _ = boot_dqn.loss_fn(
        st.params, target, st.prior_table, b, cfg._replace(beta=0.0, num_explorers=0)
    )
    np.testing.assert_allclose(l0, lb, rtol=1e-6)


def test_explorer_mask_validation():
    with pytest.raises(ValueError, match="num_explorers"):
        tdu.explorer_mask(4, 4)
    with pytest.raises(ValueError, match="exploiters"):
        tdu.explorer_mask(4, 3)


def test_experiment_smoke_and_verdict():
    exp = tdu_deep_sea.EXPERIMENT
    cfg = exp.config("smoke")
    ms = [exp.run(cfg, jax.random.PRNGKey(i)) for i in range(2)]
    for m in ms:
        for k, v in m.items():
            assert np.all(np.isfinite(v)), k
        for v in ("det", "sto"):
            assert m[f"success_rate_{v}/tdu"].shape == (cfg.curve_points,)
            for meth in ("boot_dqn", "tdu") if v == "sto" else tdu_deep_sea.METHODS:
                succ = float(m[f"successes_{v}/{meth}"])
                assert 0 <= succ <= cfg.num_episodes
                first = float(m[f"first_success_{v}/{meth}"])
                assert (first == cfg.num_episodes + 1) == (succ == 0)
                assert float(m[f"bsuite_score_{v}/{meth}"]) in (0.0, 1.0)
    # each seed draws its own MDP (the mapping is a traced input of one compiled program)
    assert tdu_deep_sea._compiled_train.cache_info().currsize <= 2
    v = exp.judge(ms, cfg)
    assert [c.name for c in v.checks] == [r.name for r in exp.rules]
    for c in v.checks:
        assert 0.0 <= c.p_value <= 1.0


def test_verdict_pairs_by_seed():
    """TDU better on every seed's MDP passes; the same numbers with TDU worse fail."""
    exp = tdu_deep_sea.EXPERIMENT
    cfg = exp.config("smoke")
    rng = np.random.default_rng(0)
    n = 10
    base = rng.uniform(50, 400, n)
    data = {
        "successes_det/eps_greedy": np.zeros(n),
        "successes_det/boot_dqn": base,
        "successes_det/tdu": base + rng.uniform(20, 60, n),
        "first_success_det/boot_dqn": 1000 - base,
        "first_success_det/tdu": 1000 - base - rng.uniform(20, 60, n),
        "successes_sto/boot_dqn": base / 2,
        "successes_sto/tdu": base / 2 + rng.uniform(20, 60, n),
        "first_success_sto/boot_dqn": 1200 - base,
        "first_success_sto/tdu": 1200 - base - rng.uniform(20, 60, n),
        "bonus_det/tdu": np.full(n, 0.3),
        "bonus_sto/tdu": np.full(n, 0.3),
    }
    v = exp.verdict(data, cfg)
    assert all(c.passed for c in v.checks)
    worse = dict(data)
    worse["successes_sto/tdu"] = data["successes_sto/boot_dqn"] - rng.uniform(20, 60, n)
    v = exp.verdict(worse, cfg)
    assert not v.checks[3].passed
