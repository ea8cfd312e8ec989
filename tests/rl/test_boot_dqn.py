"""Bootstrapped DQN with prior functions: networks, replay, TD errors/loss, schedule, training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl import boot_dqn, ensemble_nets, replay
from metalab.rl.envs import deep_sea


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
    g = jax.grad(lambda p: boot_dqn.loss_fn(p, st.params, st.prior_table, _batch(cfg), cfg)[0])(
        st.params
    )
    assert jax.tree.structure(g) == jax.tree.structure(st.params)


def test_member_gradients_are_independent():
    cfg = _small_config()
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 9, 2)
    b = _batch(cfg)

    def loss_of_member(p, k):
        return jnp.mean(boot_dqn.td_errors(p, st.params, st.prior_table, b, cfg)[k] ** 2)

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


@pytest.mark.parametrize("table", [False, True])
def test_update_counts_and_target_copy(table):
    """Target parameters (or, with a target table, the table of their values) are copied at
    SGD-step counts divisible by target_update_period and kept in between."""
    cfg = _small_config(min_replay_size=2, target_update_period=2, target_table=table)
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 9, 2)
    assert (st.target_table is not None) == table and (st.target_params is None) == table
    upd = jax.jit(lambda k, s: boot_dqn.update(k, s, 1, 0, 0.5, 1.0, 4, cfg))

    def target_of(s):  # the target network's values at every input
        if table:
            return s.target_table
        return boot_dqn.target_q_table(s.target_params, s.prior_table, cfg.prior_scale)

    def values_of(p, s):
        return boot_dqn.target_q_table(p, s.prior_table, cfg.prior_scale)

    st1, _ = upd(jax.random.PRNGKey(1), st)  # size 1: no learning; sgd 0 -> target = params
    assert int(st1.sgd_steps) == 0
    st2, _ = upd(jax.random.PRNGKey(2), st1)  # learns; sgd 1 -> target kept
    assert int(st2.sgd_steps) == 1
    assert float(jnp.abs(st2.params["w1"] - st1.params["w1"]).max()) > 0
    np.testing.assert_allclose(target_of(st2), values_of(st1.params, st1), rtol=1e-6, atol=1e-6)
    st3, _ = upd(jax.random.PRNGKey(3), st2)  # sgd 2 -> copy
    np.testing.assert_allclose(target_of(st3), values_of(st3.params, st3), rtol=1e-6, atol=1e-6)
    if not table:
        np.testing.assert_array_equal(st2.target_params["w1"], st1.params["w1"])
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


def _rand_batch(key, num_cells, batch_size, k, mask=False, noise=False):
    ks = jax.random.split(key, 7)
    return boot_dqn.Transition(
        cell_tm1=jax.random.randint(ks[0], (batch_size,), 0, num_cells),
        a_tm1=jax.random.randint(ks[1], (batch_size,), 0, 2),
        r_t=jax.random.normal(ks[2], (batch_size,)),
        discount_t=(jax.random.uniform(ks[3], (batch_size,)) > 0.2).astype(jnp.float32),
        cell_t=jax.random.randint(ks[4], (batch_size,), 0, num_cells + 1),
        mask_t=jax.random.bernoulli(ks[5], 0.5, (batch_size, k if mask else 0)).astype(jnp.float32),
        noise_t=jax.random.normal(ks[6], (batch_size, k if noise else 0)),
    )


@pytest.mark.parametrize(
    "tdu_on,mask,noise,hidden",
    [(False, False, False, (6, 5)), (True, True, True, (6, 5)), (True, False, False, (12, 10))],
)
def test_fused_grads_equal_autodiff(tdu_on, mask, noise, hidden):
    """The hand-written backward pass equals jax.grad of loss_fn (rows and every layer); hidden
    widths below and above the multiply + reduce threshold (8) take both product paths."""
    cfg = boot_dqn.BootDQNConfig(
        num_ensemble=4,
        hidden=hidden,
        batch_size=9,
        num_explorers=2 if tdu_on else 0,
        beta=0.8,
        mask_prob=0.5 if mask else 1.0,
        noise_scale=0.3 if noise else 0.0,
    )
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 7, 2)
    target = jax.tree.map(lambda x: 0.8 * x, st.params)
    b = _rand_batch(jax.random.PRNGKey(1), 7, 9, 4, mask, noise)
    g_ref, s_ref = jax.grad(boot_dqn.loss_fn, has_aux=True)(
        st.params, target, st.prior_table, b, cfg
    )
    q_t = boot_dqn.ensemble_q(target, st.prior_table, cfg.prior_scale, b.cell_t)
    uniq, inv = jnp.unique(b.cell_tm1, size=9, fill_value=7, return_inverse=True)
    rows = st.params["w0"].at[:, uniq].get(mode="fill", fill_value=0.0)
    rest = {k: v for k, v in st.params.items() if k != "w0"}
    (g_rest, g_rows), s = jax.jit(
        lambda: boot_dqn.fused_grads(rest, rows, inv.reshape(-1), b, st.prior_table, q_t, cfg)
    )()
    for k in rest:
        np.testing.assert_allclose(g_rest[k], g_ref[k], rtol=2e-4, atol=1e-6)
    assert g_rows.shape == (9, 4, hidden[0])  # cell-major [U, K, H]
    dense_rows = (
        jnp.zeros_like(st.params["w0"]).at[:, uniq].set(jnp.swapaxes(g_rows, 0, 1), mode="drop")
    )
    np.testing.assert_allclose(dense_rows, g_ref["w0"], rtol=2e-4, atol=1e-6)
    np.testing.assert_allclose(s, s_ref, rtol=1e-5)


def test_target_table_equals_target_network():
    cfg = _small_config()
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, 9, 2)
    cells = jnp.arange(10)
    table = boot_dqn.target_q_table(st.params, st.prior_table, cfg.prior_scale)
    direct = boot_dqn.ensemble_q(st.params, st.prior_table, cfg.prior_scale, cells)
    np.testing.assert_allclose(table, direct, rtol=1e-5, atol=1e-6)
    b = _rand_batch(jax.random.PRNGKey(2), 9, cfg.batch_size, cfg.num_ensemble)
    tgt = jax.tree.map(lambda x: 1.1 * x, st.params)
    ttab = boot_dqn.target_q_table(tgt, st.prior_table, cfg.prior_scale)
    l1 = boot_dqn.loss_fn(st.params, tgt, st.prior_table, b, cfg)[0]
    l2 = boot_dqn.loss_fn(st.params, tgt, st.prior_table, b, cfg, None, None, ttab)[0]
    np.testing.assert_allclose(l1, l2, rtol=1e-5)


def test_sparse_update_equals_dense_adam_when_every_row_is_touched():
    """Lazy Adam differs from Adam only on rows outside the minibatch: with every cell in every
    minibatch the two agents' parameters stay equal; untouched rows never move."""
    n = 3
    base = boot_dqn.BootDQNConfig(num_ensemble=3, hidden=(4, 4), batch_size=6, target_table=False)
    dense = boot_dqn.init(jax.random.PRNGKey(0), base, n, 2)
    sp_cfg = base._replace(sparse_first_layer=True, target_table=True)
    sparse = boot_dqn.init(jax.random.PRNGKey(0), sp_cfg, n, 2)
    for i in range(4):
        b = _rand_batch(jax.random.PRNGKey(10 + i), n, 6, 3)
        b = b._replace(cell_tm1=jnp.array([0, 1, 2, 2, 1, 0]))
        p, o, _ = boot_dqn._sgd(dense, b, base)
        dense = dense._replace(params=p, opt_state=o)
        p, o, _ = boot_dqn._sgd(sparse, b, sp_cfg)
        sparse = sparse._replace(params=p, opt_state=o)
    assert sparse.params["w0"].shape == (n, 3, 4)  # cell-major [C, K, H]
    sparse_params = boot_dqn.member_major(sparse.params, sp_cfg)
    for k in dense.params:
        np.testing.assert_allclose(sparse_params[k], dense.params[k], rtol=1e-4, atol=1e-6)
    # a minibatch on cell 0 only leaves rows 1, 2 (and their moments) unchanged
    b = _rand_batch(jax.random.PRNGKey(3), n, 6, 3)._replace(cell_tm1=jnp.zeros(6, jnp.int32))
    p, o, _ = boot_dqn._sgd(sparse, b, sp_cfg)
    np.testing.assert_array_equal(p["w0"][1:], sparse.params["w0"][1:])
    np.testing.assert_array_equal(o[1].mu[:, 1:], sparse.opt_state[1].mu[:, 1:])
    assert float(jnp.abs(p["w0"][0] - sparse.params["w0"][0]).max()) > 0


def test_sparse_agent_learns_and_mapping_is_traced():
    """The sparse agent solves Deep Sea N = 5; one compiled train serves several mappings."""
    cfg = boot_dqn.BootDQNConfig(
        num_ensemble=10,
        hidden=(20, 20),
        batch_size=16,
        min_replay_size=16,
        sparse_first_layer=True,
    )
    train = boot_dqn.make_deep_sea_train(5, cfg, num_episodes=100)
    maps = jax.vmap(lambda k: deep_sea.random_action_mapping(k, 5))(
        jax.random.split(jax.random.PRNGKey(4), 3)
    )
    out = jax.jit(jax.vmap(lambda k, m: train(k, None, None, m)))(
        jax.random.split(jax.random.PRNGKey(0), 3), maps
    )
    assert float(out["success"][:, -20:].mean()) > 0.5


def test_sparse_step_does_not_depend_on_row_bucket():
    """The sparse SGD step compiled for several widths (lax.switch on the number of distinct
    cells) gives the step compiled for one width: same parameters and moments."""
    n = 12
    base = boot_dqn.BootDQNConfig(
        num_ensemble=3, hidden=(6, 5), batch_size=10, sparse_first_layer=True
    )
    for cells in ([0, 1, 2, 2, 1, 0, 0, 1, 2, 0], list(range(10)), [5] * 10):
        b = _rand_batch(jax.random.PRNGKey(7), n, 10, 3)._replace(cell_tm1=jnp.array(cells))
        outs = []
        for bucket in (2, 3, 10):
            cfg = base._replace(row_bucket=bucket)
            st = boot_dqn.init(jax.random.PRNGKey(0), cfg, n, 2)
            outs.append(jax.jit(lambda s, bb, c=cfg: boot_dqn._sgd(s, bb, c))(st, b))
        for other in outs[:2]:
            for x, y in zip(jax.tree.leaves(other), jax.tree.leaves(outs[2]), strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="row_bucket"):
        boot_dqn.BootDQNConfig(row_bucket=0).validate()


def test_reachable_cells_and_partial_target_table():
    """Every cell a Deep Sea episode visits is in ``reachable_cells``; the target table
    recomputed at those rows equals the full table there."""
    size = 6
    env, params = deep_sea.make_deep_sea(size, True, 0, 0.01)
    reach = deep_sea.reachable_cells(size)
    assert len(reach) == size * (size + 1) // 2 + 1 and reach[-1] == size * size

    def episode(k):
        _, s = env.reset_env(k, params)

        def body(s, kk):
            a = jax.random.randint(kk, (), 0, 2)
            _, s2, _, _, _ = env.step_env(kk, s, a, params)
            return s2, deep_sea.cell_index(s2, size)

        return jax.lax.scan(body, s, jax.random.split(k, size))[1]

    seen = np.unique(np.asarray(jax.vmap(episode)(jax.random.split(jax.random.PRNGKey(0), 64))))
    assert set(seen.tolist()) <= set(reach.tolist())
    assert len(seen) > size  # the random walks reach many cells, not only the diagonal
    cfg = _small_config()
    st = boot_dqn.init(jax.random.PRNGKey(0), cfg, size * size, 2)
    full = boot_dqn.target_q_table(st.params, st.prior_table, cfg.prior_scale)
    part = boot_dqn.target_q_table(st.params, st.prior_table, cfg.prior_scale, reach)
    np.testing.assert_allclose(part[:, reach], full[:, reach], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("maxval", [1, 2, 3, 7, 128, 129, 9_999, 10_000, 2**31 - 1])
def test_sample_indices_equal_randint(maxval):
    """The minibatch indices (unrolled Threefry) are jax.random.randint's, bit for bit."""
    sample = jax.jit(replay.uniform_indices, static_argnums=2)
    for seed in range(3):
        k = jax.random.PRNGKey(seed)
        np.testing.assert_array_equal(
            sample(k, jnp.int32(maxval), 128), jax.random.randint(k, (128,), 0, maxval)
        )
    typed = jax.random.key(0)  # other key types go through jax.random.randint itself
    np.testing.assert_array_equal(
        replay.uniform_indices(typed, maxval, 5), jax.random.randint(typed, (5,), 0, maxval)
    )


def test_cell_major_first_layer_table_and_acting():
    """With sparse_first_layer, w0 is stored cell-major [C, K, H]: the target table and the
    acting member's values equal those of the member-major (dense) layout."""
    n, size = 36, 6
    dense_cfg = _small_config(hidden=(6, 5))
    sparse_cfg = dense_cfg._replace(sparse_first_layer=True)
    dense = boot_dqn.init(jax.random.PRNGKey(0), dense_cfg, n, 2)
    sparse = boot_dqn.init(jax.random.PRNGKey(0), sparse_cfg, n, 2)
    assert sparse.params["w0"].shape == (n, 3, 6)
    for k in dense.params:
        np.testing.assert_array_equal(
            boot_dqn.member_major(sparse.params, sparse_cfg)[k], dense.params[k]
        )
    for cells in (None, deep_sea.reachable_cells(size)):
        t_dense = boot_dqn.target_q_table(dense.params, dense.prior_table, 2.0, cells)
        t_sparse = boot_dqn.target_q_table(sparse.params, sparse.prior_table, 2.0, cells, True)
        np.testing.assert_allclose(t_sparse, t_dense, rtol=1e-6, atol=1e-6)
    for head in range(3):
        for cell in (0, 7, 35, 36):  # 36: the null input
            k = jax.random.PRNGKey(cell)
            a_d = boot_dqn.act(k, dense._replace(head=jnp.int32(head)), cell, dense_cfg)
            a_s = boot_dqn.act(k, sparse._replace(head=jnp.int32(head)), cell, sparse_cfg)
            assert int(a_d) == int(a_s)


def test_seed_axis_shares_one_row_width_under_vmap():
    """With seed_axis named in vmap, the sparse step runs one width for all seeds (the widest
    needed) and gives each seed's own single-seed step."""
    n = 12
    cfg = boot_dqn.BootDQNConfig(
        num_ensemble=3, hidden=(6, 5), batch_size=10, sparse_first_layer=True, row_bucket=2
    )
    cells = jnp.array([[0, 1, 2, 2, 1, 0, 0, 1, 2, 0], list(range(10)), [5] * 10])
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    batches = jax.vmap(lambda k, c: _rand_batch(k, n, 10, 3)._replace(cell_tm1=c))(keys, cells)
    states = jax.vmap(lambda k: boot_dqn.init(k, cfg, n, 2))(jax.random.split(keys[0], 3))
    shared = cfg._replace(seed_axis="seeds")
    step = jax.vmap(lambda s, b: boot_dqn._sgd(s, b, shared), axis_name="seeds")
    out = jax.jit(step)(states, batches)
    for i in range(3):
        one = jax.tree.map(lambda x, i=i: x[i], (states, batches))
        ref = jax.jit(lambda s, b: boot_dqn._sgd(s, b, cfg))(*one)
        for x, y in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
            np.testing.assert_allclose(x[i], y, rtol=1e-5, atol=1e-7)
