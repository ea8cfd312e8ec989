"""Bootstrapped DQN with prior functions: networks, replay, TD errors/loss, schedule, training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl import boot_dqn, ensemble_nets, replay


def test_lookup_mlp_equals_dense_on_one_hot():
    n, hidden, a = 9, (7, 5), 2
    params = ensemble_nets.init_lookup_mlp(jax.random.PRNGKey(0), n, hidden, a)
    cells = jnp.arange(n + 1)  # n = the all-zero (terminal) observation
    one_hot = jax.nn.one_hot(cells, n)  # row n is all zeros
    lookup = jax.jit(jax.vmap(lambda c: ensemble_nets.apply_lookup_mlp(params, c)))(cells)
    dense = jax.vmap(lambda x: ensemble_nets.apply_dense_mlp(params, x))(one_hot)
    np.testing.assert_allclose(lookup, dense, rtol=1e-6, atol=1e-6)
    # gradients agree as well
    g1 = jax.grad(lambda p: jax.vmap(lambda c: ensemble_nets.apply_lookup_mlp(p, c))(cells).sum())(
        params
    )
    g2 = jax.grad(lambda p: jax.vmap(lambda x: ensemble_nets.apply_dense_mlp(p, x))(one_hot).sum())(
        params
    )
    for k in params:
        np.testing.assert_allclose(g1[k], g2[k], rtol=1e-5, atol=1e-6)


def test_init_scale_like_haiku():
    p = ensemble_nets.init_lookup_mlp(jax.random.PRNGKey(1), 400, (50,), 2)
    w = np.asarray(p["w0"])
    assert np.abs(w).max() <= 2.0 / 20.0 + 1e-6  # truncated at 2 std, std = 1/sqrt(400)
    assert 0.7 / 20 < w.std() < 1.0 / 20  # truncated normal std ~ 0.88 sigma
    assert np.all(np.asarray(p["b0"]) == 0)


def test_replay_ring_buffer():
    buf = replay.init({"x": jnp.int32(0), "v": jnp.zeros(2)}, capacity=3)
    add = jax.jit(replay.add)
    for i in range(5):
        buf = add(buf, {"x": jnp.int32(i), "v": jnp.full(2, float(i))})
    assert int(buf.size) == 3 and int(buf.pos) == 2
    np.testing.assert_array_equal(buf.data["x"], [3, 4, 2])  # 0, 1 overwritten by 3, 4
    batch = replay.sample(buf, jax.random.PRNGKey(0), 200)
    assert set(np.asarray(batch["x"]).tolist()) == {2, 3, 4}
    np.testing.assert_array_equal(batch["v"][:, 0], batch["x"])
    buf2 = replay.add(replay.init(jnp.float32(0), 4), jnp.float32(7.0))
    assert set(np.asarray(replay.sample(buf2, jax.random.PRNGKey(1), 50)).tolist()) == {7.0}
    with pytest.raises(ValueError, match="capacity"):
        replay.init(jnp.float32(0), 0)


def _small_config(**kw):
    base = dict(
        num_ensemble=3,
        hidden=(6,),
        prior_scale=2.0,
        batch_size=4,
        replay_capacity=50,
        min_replay_size=4,
        discount=0.9,
    )
    base.update(kw)
    return boot_dqn.BootDQNConfig(**base)


def _batch(cfg):
    return boot_dqn.Transition(
        cell_tm1=jnp.array([0, 3, 5, 2]),
        a_tm1=jnp.array([1, 0, 1, 0]),
        r_t=jnp.array([0.5, -0.1, 1.0, 0.0]),
        discount_t=jnp.array([1.0, 1.0, 0.0, 1.0]),
        cell_t=jnp.array([3, 5, 9, 4]),
        mask_t=jnp.array([[1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1]], jnp.float32),
        noise_t=jnp.array([[0.1, -0.2, 0.3], [0.0, 0.5, -0.5], [1.0, 0.0, 0.0], [0.2, 0.2, 0.2]]),
    )


def test_td_errors_and_loss_by_hand():
    """Each member: delta = r + s_z z_k + gamma d max_a Qbar_k(s') - Q_k(s, a), with
    Q_k = f_k + s_p p_k; loss = sum_k mean_b m_kb delta_kb^2 (bsuite's per-member loss)."""
    cfg = _small_config(mask_prob=0.5, noise_scale=0.3)
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 9, 2)
    target = jax.tree.map(lambda x: x + 0.05, st.params)  # distinct target parameters
    b = _batch(cfg)
    delta = boot_dqn.td_errors(st.params, target, st.prior_table, b, cfg)
    loss, _ = boot_dqn.loss_fn(st.params, target, st.prior_table, b, cfg)
    expected_loss = 0.0
    for k in range(3):
        pk = jax.tree.map(lambda x, k=k: x[k], st.params)
        tk = jax.tree.map(lambda x, k=k: x[k], target)
        for i in range(4):
            q = (
                ensemble_nets.apply_lookup_mlp(pk, b.cell_tm1[i])
                + 2.0 * st.prior_table[k, b.cell_tm1[i]]
            )
            q_next = (
                ensemble_nets.apply_lookup_mlp(tk, b.cell_t[i])
                + 2.0 * st.prior_table[k, b.cell_t[i]]
            )
            r = b.r_t[i] + 0.3 * b.noise_t[i, k]
            d = r + 0.9 * b.discount_t[i] * q_next.max() - q[b.a_tm1[i]]
            np.testing.assert_allclose(delta[k, i], d, rtol=1e-5, atol=1e-6)
            expected_loss += b.mask_t[i, k] * d**2 / 4
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)


def test_prior_table_is_a_fixed_network():
    cfg = _small_config()
    st = boot_dqn.init(jax.random.PRNGKey(3), cfg, 9, 2)
    assert st.prior_table.shape == (3, 10, 2)
    # a member's prior outputs differ across members (independent random priors)
    assert float(jnp.abs(st.prior_table[0] - st.prior_table[1]).max()) > 1e-3
    # gradients never reach the prior: the loss gradient has only the trainable tree
    g = jax.grad(
        lambda p: boot_dqn.loss_fn(p, st.target_params, st.prior_table, _batch(cfg), cfg)[0]
    )(st.params)
    assert jax.tree.structure(g) == jax.tree.structure(st.params)


def test_member_gradients_are_independent():
    cfg = _small_config()
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 9, 2)
    b = _batch(cfg)

    def loss_of_member(p, k):
        return jnp.mean(boot_dqn.td_errors(p, st.target_params, st.prior_table, b, cfg)[k] ** 2)

    g0 = jax.grad(loss_of_member)(st.params, 0)
    for name, g in g0.items():
        assert float(jnp.abs(g[1:]).max()) == 0.0, name


def test_learn_schedule_matches_bsuite_rule():
    """bsuite: learn iff replay.size >= min_replay and total_steps % sgd_period == 0; target
    copied whenever the member's SGD-step count % target_update_period == 0."""
    cfg = _small_config(min_replay_size=5, sgd_period=2, target_update_period=3)
    size, sgd = 0, 0
    for s in range(1, 40):
        size = min(size + 1, cfg.replay_capacity)
        learn = size >= cfg.min_replay_size and s % cfg.sgd_period == 0
        sgd += int(learn)
        lj, sj = boot_dqn.learn_schedule(jnp.int32(s), cfg)
        assert bool(lj) == learn and int(sj) == sgd, s


def test_update_counts_and_target_copy():
    cfg = _small_config(min_replay_size=2, target_update_period=2)
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 9, 2)
    upd = jax.jit(lambda k, s: boot_dqn.update(k, s, 1, 0, 0.5, 1.0, 4, cfg))
    st1, _ = upd(jax.random.PRNGKey(1), st)  # size 1: no learning; sgd 0 -> target = params
    assert int(st1.sgd_steps) == 0
    st2, _ = upd(jax.random.PRNGKey(2), st1)  # learns; sgd 1 -> target kept
    assert int(st2.sgd_steps) == 1
    assert float(jnp.abs(st2.params["w1"] - st1.params["w1"]).max()) > 0
    np.testing.assert_array_equal(st2.target_params["w1"], st1.params["w1"])
    st3, _ = upd(jax.random.PRNGKey(3), st2)  # sgd 2 -> copy
    np.testing.assert_array_equal(st3.target_params["w1"], st3.params["w1"])


def test_bad_config():
    with pytest.raises(ValueError, match="num_ensemble"):
        boot_dqn.BootDQNConfig(num_ensemble=0).validate()
    with pytest.raises(ValueError, match="min_replay_size"):
        boot_dqn.BootDQNConfig(min_replay_size=10, replay_capacity=5).validate()
    with pytest.raises(ValueError, match="epsilon"):
        boot_dqn.BootDQNConfig(epsilon=1.5).validate()
    with pytest.raises(ValueError, match="exploiters"):
        boot_dqn.BootDQNConfig(num_ensemble=3, num_explorers=2).validate()


def test_train_learns_small_deep_sea_under_vmap():
    """Bootstrapped DQN solves Deep Sea N = 5 (1/32 chance per random episode) quickly."""
    cfg = boot_dqn.BootDQNConfig(
        num_ensemble=10, hidden=(20, 20), batch_size=16, min_replay_size=16
    )
    train = boot_dqn.make_deep_sea_train(5, cfg, num_episodes=100)
    out = jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), 3))
    assert out["success"].shape == (3, 100)
    for k in ("return", "bad", "success", "sigma"):
        assert np.all(np.isfinite(np.asarray(out[k])))
    # random play succeeds 1/32 of the time; learning makes the last 20 mostly successes
    assert float(out["success"][:, :20].mean()) < 0.1
    assert float(out["success"][:, -20:].mean()) > 0.5
