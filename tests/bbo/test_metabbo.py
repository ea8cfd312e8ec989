"""MetaBBO: meta-fitness reference values, task sampler, switch grouping, checkpoint/resume."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.problems.bbob.bbob_fns import bbob_fns

from metalab.bbo.metabbo import MetaBBOConfig, meta_fitness, train
from metalab.bbo.problems import make_evaluate, sample_task
from metalab.bbo.weights import load_weights


def test_meta_fitness_is_median_of_per_task_zscores():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, 2, 6)) * np.array([1.0, 100.0])[None, :, None]
    f2 = f.reshape(6, 6)
    z = (f2 - f2.mean(1, keepdims=True)) / (f2.std(1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(meta_fitness(jnp.asarray(f)), np.median(z, axis=0), rtol=1e-4)
    # invariant to a per-task affine rescaling (random optimum value, scale)
    g = f * 7.0 + 1000.0
    np.testing.assert_allclose(
        meta_fitness(jnp.asarray(g)), meta_fitness(jnp.asarray(f)), atol=1e-4
    )


def test_task_sampler_and_evaluate():
    task = sample_task(jax.random.PRNGKey(0), 6, 3, ("noiseless",), (0.5, 2.0), 2.0)
    d = int(task.num_dims)
    assert 3 <= d <= 6 and 0.5 <= float(task.sigma0) <= 2.0
    r = np.asarray(task.R)
    np.testing.assert_allclose(r @ r.T, np.eye(6), atol=1e-5)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-4)
    names = ("sphere", "rastrigin", "ellipsoidal")
    evaluate = make_evaluate(names)
    x = jnp.stack([task.x_opt, task.x_opt + 1.0])
    for i, name in enumerate(names):
        fit, regret = evaluate(i, task, x, jax.random.PRNGKey(1))
        ref = jax.vmap(bbob_fns[name], in_axes=(0, None, None, None, None))(
            x, task.x_opt, task.R, task.Q, task.num_dims
        )
        np.testing.assert_allclose(regret, ref[0] + ref[1], rtol=1e-5)
        np.testing.assert_allclose(fit - task.f_opt, regret, rtol=1e-4, atol=1e-3)
    assert float(regret[0]) == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="unknown BBOB"):
        make_evaluate(("spherez",))


def test_train_checkpoint_resume_and_self_referential(tmp_path):
    cfg = MetaBBOConfig(
        train_fns=("sphere", "rastrigin"),
        noise_models=("noiseless",),
        sizes=((2, 3, 4, 3, 2), (2, 4, 6, 2, 1)),
        meta_population=4,
        meta_generations=2,
        checkpoint_every=1,
    )
    net_full, rec = train(cfg, tmp_path / "full", progress=False)
    assert sorted(rec["history"]["size_index"]) == [0.0, 1.0]  # each size once per epoch
    train(dataclasses.replace(cfg, meta_generations=1), tmp_path / "half", progress=False)
    # a different task distribution cannot resume this checkpoint
    with pytest.raises(ValueError, match="different config"):
        train(dataclasses.replace(cfg, sizes=((2, 3, 4, 4, 2),)), tmp_path / "half", progress=False)
    # extending the run (more meta-generations) resumes from generation 1 and matches
    net_resumed, _ = train(cfg, tmp_path / "half", progress=False)
    for a, b in zip(jax.tree.leaves(net_full), jax.tree.leaves(net_resumed), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert rec["config"]["meta_generations"] == 2 and rec["wall_time_s"] >= 0
    assert rec["generations_completed"] == 2 and len(rec["history"]["win_vs_init"]) == 2
    loaded = load_weights(tmp_path / "full" / "les_metalab")
    for a, b in zip(jax.tree.leaves(net_full), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_allclose(a, b)
    # a time budget stops after the first generation and still writes the weights
    _, rec_t = train(cfg, tmp_path / "budget", progress=False, time_budget=0.0)
    assert rec_t["generations_completed"] == 1
    sr = dataclasses.replace(cfg, outer="self", meta_generations=1)
    net_sr, _ = train(sr, tmp_path / "self", progress=False)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(net_sr))
    with pytest.raises(ValueError, match="requires optimiser='les'"):
        MetaBBOConfig(optimiser="lga", outer="self")
    with pytest.raises(ValueError, match="bad size"):
        MetaBBOConfig(sizes=((5, 3, 4, 4, 2),))


def test_size_sampler_avoids_held_out_dims_and_warm_start():
    ks = jax.random.split(jax.random.PRNGKey(0), 400)
    dims = jax.vmap(lambda k: sample_task(k, 22, 18, exclude_dims=(20,)).num_dims)(ks)
    assert 20 not in set(np.asarray(dims).tolist()) and {18, 19, 21, 22} <= set(dims.tolist())
    # init="evosax" warm-starts from evosax's weights (LGA: legacy offset folded in)
    from jax.flatten_util import ravel_pytree

    from metalab.bbo.metabbo import init_net

    net = init_net(MetaBBOConfig(optimiser="lga", init="evosax"))
    assert "sigma_offset" not in net and ravel_pytree(net)[0].size == 1906


def test_warm_start_from_metalab_or_a_file_and_bad_init(tmp_path):
    from jax.flatten_util import ravel_pytree

    from metalab.bbo.metabbo import HIGHD_EXCLUDE_DIMS, HIGHD_SIZES, init_net
    from metalab.bbo.weights import WEIGHTS_DIR

    shipped = ravel_pytree(load_weights(WEIGHTS_DIR / "les_metalab.npz"))[0]
    for init in ("metalab", str(WEIGHTS_DIR / "les_metalab.npz")):
        cfg = MetaBBOConfig(init=init, sizes=HIGHD_SIZES, exclude_dims=HIGHD_EXCLUDE_DIMS)
        np.testing.assert_array_equal(ravel_pytree(init_net(cfg))[0], shipped)
    with pytest.raises(ValueError, match="init must be one of"):
        MetaBBOConfig(init="metalib")
    with pytest.raises(ValueError, match="init: weights file"):
        MetaBBOConfig(init=str(tmp_path / "missing.npz"))
    # the high-D table never reaches D <= 100 and avoids the evaluation N and T values
    assert min(s[0] for s in HIGHD_SIZES) > 100
    assert not {s[2] for s in HIGHD_SIZES} & {32, 64, 128}
    assert not {s[3] for s in HIGHD_SIZES} & {100, 500}
    assert {200, 1000} <= set(HIGHD_EXCLUDE_DIMS)


@pytest.mark.ray
def test_ray_executor_matches_local():
    ray = pytest.importorskip("ray")
    from jax.flatten_util import ravel_pytree

    from metalab.bbo.metabbo import LocalExecutor, RayExecutor, init_net

    cfg = MetaBBOConfig(
        train_fns=("sphere", "rastrigin"), noise_models=("noiseless",), sizes=((2, 3, 4, 3, 2),)
    )
    theta, _ = ravel_pytree(init_net(cfg))
    thetas = np.asarray(theta)[None] + 0.1 * np.random.default_rng(0).normal(size=(5, theta.size))
    key = np.asarray(jax.random.PRNGKey(3))
    local = LocalExecutor(cfg)(0, thetas, key)
    ex = RayExecutor(cfg, workers=2)
    try:
        remote = ex(0, thetas, key)
    finally:
        ex.close()
        ray.shutdown()
    np.testing.assert_allclose(remote[0], local[0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(remote[1], local[1], rtol=1e-4, atol=1e-4)


def test_rollout_ignores_nan_regret():
    from metalab.bbo import DES
    from metalab.bbo.problems import rollout

    algo = DES(4, 2)

    def fit(x, k):
        r = jnp.sum(x**2, axis=1)
        return r, r.at[0].set(jnp.nan)  # one overflowing evaluation per generation

    out = rollout(algo, algo.default_params, fit, jax.random.PRNGKey(0), jnp.ones(2), 1.0, 3)
    assert np.all(np.isfinite(np.asarray(out.best_regret)))
