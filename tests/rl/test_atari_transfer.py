"""Atari-curricula transfer analysis: ANOVA, transfer ratios, sign tests, the DQN update."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from metalab.rl.atari.analysis import (
    anova_formula,
    factor_anova,
    majority_sign_test,
    normalised_score,
    strongest_term,
    transfer_ratio,
)
from metalab.rl.atari.dqn import Batch, DQNConfig, make_agent, n_step_targets
from metalab.rl.atari.train import ReplayBuffer, TrainBudget
from metalab.rl.atari_transfer import map_runs


def _design(effect_a: float, effect_ab: float, reps: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                for _ in range(reps):
                    y = effect_a * a + effect_ab * a * b + rng.normal()
                    rows.append({"a": a, "b": b, "c": c, "y": y})
    return pd.DataFrame(rows)


def test_anova_formula():
    assert anova_formula("y", ["a", "b"], 2) == "y ~ C(a) + C(b) + C(a):C(b)"
    assert anova_formula("y", ["a", "b", "c"], 1) == "y ~ C(a) + C(b) + C(c)"
    with pytest.raises(ValueError, match="order must be >= 1"):
        anova_formula("y", ["a"], 0)


def test_anova_finds_a_known_main_effect_and_interaction():
    df = _design(3.0, 3.0)
    t = factor_anova(df, "y", ["a", "b", "c"], order=2)
    assert t.loc["C(a)", "PR(>F)"] < 1e-6 and t.loc["C(a):C(b)", "PR(>F)"] < 1e-4
    assert t.loc["C(c)", "PR(>F)"] > 0.01
    main, inter = strongest_term(t, 1), strongest_term(t, 2)
    assert main.term == "C(a)" and inter.term == "C(a):C(b)"
    assert main.p_holm < 0.001 and inter.p_holm < 0.001
    # Balanced design: type II sums of squares partition the total; eta^2 sum to 1.
    assert np.isclose(t["sum_sq"].sum(), ((df["y"] - df["y"].mean()) ** 2).sum())
    assert np.isclose(
        t["eta_sq"].drop("Residual").sum() + t.loc["Residual", "sum_sq"] / t["sum_sq"].sum(), 1.0
    )
    pe = t.loc["C(a)", "sum_sq"] / (t.loc["C(a)", "sum_sq"] + t.loc["Residual", "sum_sq"])
    assert np.isclose(t.loc["C(a)", "partial_eta_sq"], pe)


def test_anova_sum_of_squares_by_hand():
    df = pd.DataFrame({"a": [0, 0, 1, 1], "y": [1.0, 3.0, 4.0, 6.0]})
    t = factor_anova(df, "y", ["a"], order=1)
    # Group means 2 and 5, grand mean 3.5: SS_a = 4 * 1.5^2 = 9, SS_res = 4.
    assert np.isclose(t.loc["C(a)", "sum_sq"], 9.0) and np.isclose(t.loc["Residual", "sum_sq"], 4.0)
    assert np.isclose(t.loc["C(a)", "F"], 9.0 / (4.0 / 2))
    assert np.isclose(t.loc["C(a)", "eta_sq"], 9.0 / 13.0)


def test_anova_null_case_is_not_significant():
    t = factor_anova(_design(0.0, 0.0, seed=1), "y", ["a", "b", "c"], order=2)
    assert strongest_term(t, 1).p_holm > 0.05 and strongest_term(t, 2).p_holm > 0.05


def test_anova_drops_constant_factors_and_rejects_missing_ones():
    df = _design(1.0, 0.0).assign(d=0)
    t = factor_anova(df, "y", ["a", "d"], order=2)
    assert list(t.index) == ["C(a)", "Residual"]
    with pytest.raises(ValueError, match="not in the data"):
        factor_anova(df, "y", ["zz"])


def test_transfer_ratio_and_normalised_score_by_hand():
    np.testing.assert_allclose(transfer_ratio([3.0, 5.0], [2.0, 4.0], [1.0, 0.0]), [2.0, 1.25])
    np.testing.assert_allclose(transfer_ratio([6.0], [3.0]), [2.0])
    np.testing.assert_allclose(normalised_score([50.0, 10.0], [10.0, 10.0], 90.0), [0.5, 0.0])
    assert np.isfinite(transfer_ratio([1.0], [0.0])).all()


def test_majority_sign_test_exact():
    r = majority_sign_test([2, 2, 2, 2, 2, 2, 2, 0, 1], [1, 1, 1, 1, 1, 1, 1, 1, 1])
    assert (r.wins, r.losses, r.ties) == (7, 1, 1)
    assert np.isclose(r.p_value, 9 / 256)  # P(X >= 7), X ~ Bin(8, 1/2)
    assert majority_sign_test([1, 1], [1, 1]).p_value == 1.0


def test_n_step_targets_by_hand():
    g, d = n_step_targets(np.array([1.0, 2.0, 3.0]), np.array([0, 1, 0]), 0.5)
    assert np.isclose(g, 2.0) and d == 0.0  # the episode ends after the second reward
    g, d = n_step_targets(jnp.array([1.0, 2.0, 3.0]), jnp.array([0, 0, 0]), 0.5)
    assert np.isclose(g, 2.75) and np.isclose(d, 0.125)


def test_replay_samples_consistent_n_step_windows():
    buf = ReplayBuffer(capacity=10, num_streams=2, obs_shape=(1, 1, 1))
    for t in range(14):  # wraps around: rows hold steps 4..13
        buf.add(np.full((2, 1, 1, 1), t), np.array([t, t]), np.array([t, 10 * t]), np.zeros(2))
    b = buf.sample(np.random.default_rng(0), 64, n=2, gamma=0.5)
    t0 = b.obs_tm1[..., 0, 0, 0].astype(float)
    assert t0.min() >= 4 and t0.max() <= 11  # the bootstrap row t0 + 2 must exist
    np.testing.assert_allclose(b.a_tm1, t0)
    np.testing.assert_allclose(b.obs_t[..., 0, 0, 0], t0 + 2)
    np.testing.assert_allclose(b.r_t[0], t0[0] + 0.5 * (t0[0] + 1))
    np.testing.assert_allclose(b.r_t[1], 10 * t0[1] + 5 * (t0[1] + 1))
    np.testing.assert_allclose(b.discount_t, 0.25)


def test_epsilon_schedule():
    bud = TrainBudget(steps=100, eps_start=1.0, eps_end=0.1, eps_decay_frac=0.5)
    assert np.isclose(bud.epsilon(0), 1.0) and np.isclose(bud.epsilon(25), 0.55)
    assert np.isclose(bud.epsilon(80), 0.1)


def test_one_dqn_update_matches_a_hand_written_double_q_adam_step():
    cfg = DQNConfig(num_actions=3, network="mlp", learning_rate=1e-3, n_step=1, target_period=2)
    agent = make_agent(cfg)
    k0, k2 = jax.random.split(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 256, (4, 2, 6, 5)).astype(np.uint8)
    state = jax.jit(agent.init)(k0, obs[0])
    # Make the target network differ from the online one (host-side, no eager JAX ops).
    state = state._replace(target_params=jax.tree.map(lambda x: 0.5 * np.asarray(x), state.params))
    batch = Batch(
        obs,
        np.array([0, 1, 2, 1]),
        np.array([1.0, 0.0, -1.0, 2.0], np.float32),
        np.array([0.99, 0.0, 0.99, 0.5], np.float32),
        obs[::-1].copy(),
    )

    def manual_loss(p, target_params):
        q = agent.q_values(p, batch.obs_tm1)
        sel = jnp.argmax(agent.q_values(p, batch.obs_t), -1)
        qt = agent.q_values(target_params, batch.obs_t)
        target = batch.r_t + batch.discount_t * qt[jnp.arange(4), sel]
        td = jax.lax.stop_gradient(target) - q[jnp.arange(4), batch.a_tm1]
        huber = jnp.where(jnp.abs(td) <= 1.0, 0.5 * td**2, jnp.abs(td) - 0.5)
        return huber.mean()

    loss_ref, g = jax.jit(jax.value_and_grad(manual_loss))(state.params, state.target_params)
    update = jax.jit(agent.update)
    new, loss = update(state, batch)
    assert np.isclose(loss, loss_ref, rtol=1e-5)
    # First Adam step (bias-corrected): delta = -lr * g / (|g| + eps); no clipping at this norm.
    for x, gg, y in zip(
        jax.tree.leaves(state.params), jax.tree.leaves(g), jax.tree.leaves(new.params), strict=True
    ):
        gg = np.asarray(gg, np.float64)
        expected = np.asarray(x) - cfg.learning_rate * gg / (np.abs(gg) + cfg.adam_eps)
        np.testing.assert_allclose(y, expected, atol=1e-6)
    assert int(new.step) == 1
    # vmap over two agents gives the same first update.
    two = jax.tree.map(lambda x: np.stack([np.asarray(x)] * 2), (state, batch))
    new2, _ = jax.jit(jax.vmap(agent.update))(*two)
    for a, b in zip(jax.tree.leaves(new2.params), jax.tree.leaves(new.params), strict=True):
        np.testing.assert_allclose(np.asarray(a)[1], b, rtol=1e-5, atol=1e-7)
    # The target network is copied after every second update.
    after2, _ = update(new, batch)
    for a, b in zip(
        jax.tree.leaves(after2.target_params), jax.tree.leaves(after2.params), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # Greedy action at epsilon 0 is the argmax of Q.
    a = jax.jit(agent.act)(state.params, obs[0], k2, 0.0)
    assert int(a) == int(np.argmax(jax.jit(agent.q_values)(state.params, obs[0])))


def test_dqn_config_rejects_bad_values():
    with pytest.raises(ValueError, match="network="):
        DQNConfig(num_actions=3, network="resnet")
    with pytest.raises(ValueError, match="gamma"):
        DQNConfig(num_actions=3, gamma=1.5)


def test_map_runs_in_process():
    assert map_runs(lambda a, b: a * b, [(1, 2), (3, 4)]) == [2, 12]


def _fake_metrics(cfg, effect: float, ft_gain: float, seed: int, game_effect: bool = False):
    """Scores with a factor effect ``effect``; with ``game_effect`` the random policy shows the
    same effect (the game variant, not learning, causes it)."""
    from metalab.experiments.atari_transfer import variants_of

    rng = np.random.default_rng(seed)
    vs = variants_of(cfg)
    f = np.array([[dict(v.factors)[k] for k in ("shields", "invisible", "difficulty")] for v in vs])
    base = 100 + effect * f[:, 1] + effect * f[:, 0] * f[:, 2]
    scratch = base + rng.normal(0, 5, len(vs))
    random = (base - 60 if game_effect else np.full(len(vs), 40.0)) + rng.normal(0, 5, len(vs))
    return {
        "score/scratch": scratch,
        "score/zero_shot": base + rng.normal(0, 5, len(vs)),
        "score/finetune": scratch + ft_gain + rng.normal(0, 1, len(vs)),
        "score/random": random,
    }


def test_excess_partial_eta_sq_is_centred_under_the_null():
    from metalab.rl.atari.analysis import excess_partial_eta_sq

    rng = np.random.default_rng(0)
    base = _design(0.0, 0.0, reps=1)
    for order in (1, 2):
        vals = [
            excess_partial_eta_sq(
                base.assign(y=rng.normal(size=len(base))), "y", ["a", "b", "c"], order
            )
            for _ in range(400)
        ]
        assert abs(np.mean(np.asarray(vals) > 0) - 0.5) < 0.08, (order, np.mean(vals))
    strong = _design(10.0, 10.0, reps=1)
    assert excess_partial_eta_sq(strong, "y", ["a", "b", "c"], 1) > 0.3
    with pytest.raises(ValueError, match="residual"):
        excess_partial_eta_sq(strong, "y", ["a", "b", "c"], 3)


def test_verdict_on_synthetic_scores_with_and_without_effects():
    pytest.importorskip("ale_py")
    from metalab.core.checks import stack_seeds
    from metalab.experiments.atari_transfer import EXPERIMENT

    cfg = EXPERIMENT.config("quick")
    strong = [_fake_metrics(cfg, 60.0, 10.0, s) for s in range(5)]
    v = EXPERIMENT.judge(strong, cfg)
    assert [c.name for c in v.checks] == [r.name for r in EXPERIMENT.rules]
    assert all(c.passed for c in v.checks), v.checks
    # the same factor effects, but a random policy shows them too: not credited to learning
    game = [_fake_metrics(cfg, 60.0, 10.0, s, game_effect=True) for s in range(5)]
    v = EXPERIMENT.verdict(stack_seeds(game), cfg)
    assert v.checks[0].passed  # agents still beat random by 60 points
    assert not v.checks[1].passed and not v.checks[2].passed
    null = [_fake_metrics(cfg, 0.0, -10.0, s + 10) for s in range(5)]
    v = EXPERIMENT.verdict(stack_seeds(null), cfg)
    assert not v.checks[-1].passed
    assert sum(c.passed for c in v.checks[1:5]) <= 1


def test_study_spec_refuses_a_local_replay_that_cannot_fit():
    from metalab.rl.atari.variants import make_variant
    from metalab.rl.atari_transfer import EnvSpec, StudySpec

    vs = tuple(make_variant("space_invaders", m, d) for m in range(16) for d in (0, 1))
    big = TrainBudget(steps=2_500_000, replay_capacity=200_000)
    kw = dict(base=vs[0], variants=vs, env=EnvSpec(obs_hw=(84, 84), stack=4), transfer_budget=big)
    with pytest.raises(ValueError, match="set ray_address"):
        StudySpec(**kw)
    assert StudySpec(**kw, ray_address="auto").replay_bytes() == 200_000 * 32 * 4 * 84 * 84


def test_ray_branch_runs_one_task_per_variant(monkeypatch):
    """The per-variant task path of run_study, with Ray replaced by an in-process map."""
    pytest.importorskip("ale_py")
    import pickle

    from metalab.rl import atari_transfer as at

    calls = []

    def fake_map(fn, arg_list, ray_address=""):
        calls.append((ray_address, [a[1] for a in arg_list]))
        pickle.dumps(arg_list)  # what Ray would have to ship
        return [fn(*a) for a in arg_list]

    monkeypatch.setattr(at, "map_runs", fake_map)
    vs = at.select_variants("freeway", modes=(0, 1), difficulties=(1,))
    tiny = at.TrainBudget(steps=12, batch_size=4, learn_start=6, train_every=2, curve_points=3)
    spec = at.StudySpec(
        base=vs[0],
        variants=vs,
        agent=at.DQNConfig(num_actions=1, network="mlp", n_step=2),
        env=at.EnvSpec(obs_hw=(21, 20), noop_max=0, eval_max_steps=8),
        base_budget=tiny,
        transfer_budget=tiny,
        ray_address="ray://nowhere:10001",
    )
    out = at.run_study(spec, jax.random.PRNGKey(0))
    assert calls == [("ray://nowhere:10001", [(0,), (1,)])] * 2  # finetune, then scratch
    assert out["finetune"].shape == out["scratch"].shape == (2,)
    assert out["finetune_curve"].shape == (2, 3) and np.isfinite(out["scratch_curve"]).all()
