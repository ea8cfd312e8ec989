"""MLP training tasks for MetaBBO: parameter layout, data sampler, evaluator, schedule."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from metalab.bbo.les import LES
from metalab.bbo.metabbo import (
    NEURO_EVAL_SIZES,
    NEURO_SIZES,
    SIZE_TABLES,
    LocalExecutor,
    MetaBBOConfig,
    init_net,
    main,
    make_neuro_evaluator,
    size_order,
    train,
)
from metalab.bbo.neuro_tasks import (
    check_neuro_size,
    cross_entropy,
    heldout_cross_entropy,
    mlp_logits,
    n_mlp_params,
    sample_neuro_task,
)
from metalab.bbo.problems import rollout


def test_flat_mlp_matches_a_layered_mlp():
    d_in, hidden, classes = 5, 4, 3
    ks = jax.random.split(jax.random.PRNGKey(0), 5)
    layers = {
        "a_w1": jax.random.normal(ks[0], (d_in, hidden)),
        "b_b1": jax.random.normal(ks[1], (hidden,)),
        "c_w2": jax.random.normal(ks[2], (hidden, classes)),
        "d_b2": jax.random.normal(ks[3], (classes,)),
    }
    theta, _ = ravel_pytree(layers)  # dict keys sort as W1, b1, W2, b2
    assert theta.size == n_mlp_params(d_in, hidden, classes) == 5 * 4 + 4 + 4 * 3 + 3
    x = jax.random.normal(ks[4], (7, d_in))
    ref = jnp.tanh(x @ layers["a_w1"] + layers["b_b1"]) @ layers["c_w2"] + layers["d_b2"]
    np.testing.assert_allclose(mlp_logits(theta, x, d_in, hidden, classes), ref, rtol=1e-5)


def test_sampler_shapes_scalings_and_initial_loss():
    arch = (12, 6, 4)
    keys = jax.random.split(jax.random.PRNGKey(1), 64)
    tasks = jax.vmap(lambda k: sample_neuro_task(k, *arch, n_examples=128))(keys)
    assert tasks.x.shape == (64, 128, 12) and tasks.mean0.shape == (64, n_mlp_params(*arch))
    sig = np.asarray(tasks.sigma0)
    assert sig.min() >= 0.03 - 1e-6 and sig.max() <= 0.3 + 1e-6 and sig.std() > 0.01
    y = np.asarray(tasks.y)
    assert y.min() == 0 and y.max() == 3
    # both input scalings occur: per-feature [0, 1] (min 0, max 1) and standardised (mean 0)
    x = np.asarray(tasks.x)
    unit = np.all(np.isclose(x.min(1), 0.0, atol=1e-5), axis=1)
    standard = np.all(np.abs(x.mean(1)) < 1e-4, axis=1) & ~unit
    assert unit.any() and standard.any() and np.all(unit | standard)
    # biases start at 0; the LeCun init gives a loss near log(classes), not a degenerate one
    first = jax.tree.map(lambda a: a[0], tasks)
    b1 = np.asarray(first.mean0[12 * 6 : 12 * 6 + 6])
    assert np.all(b1 == 0.0)
    xent = jax.vmap(lambda t: cross_entropy(t.mean0, t, *arch))(tasks)
    assert np.all(np.isfinite(xent)) and 0.5 * np.log(4) < float(np.median(xent)) < 3 * np.log(4)
    # the loss is the mean negative log-softmax of the true class (reference in float64 numpy)
    logits = np.asarray(mlp_logits(first.mean0, first.x, *arch), np.float64)
    log_z = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    ref = np.mean(log_z - logits[np.arange(len(y[0])), y[0]])
    assert float(cross_entropy(first.mean0, first, *arch)) == pytest.approx(ref, rel=1e-5)


def test_bad_sizes_and_ranges_name_the_field():
    with pytest.raises(ValueError, match="d_in, hidden, classes, N, T, K"):
        check_neuro_size((4, 3, 2, 8, 10))
    with pytest.raises(ValueError, match="classes >= 2"):
        check_neuro_size((4, 3, 1, 8, 10, 1))
    with pytest.raises(ValueError, match="neuro size"):
        MetaBBOConfig(neuro_sizes=((4, 3, 2, 1, 10, 1),))
    with pytest.raises(ValueError, match="neuro_sigma_range"):
        MetaBBOConfig(neuro_sigma_range=(0.3, 0.1))
    with pytest.raises(ValueError, match="sigma_range"):
        sample_neuro_task(jax.random.PRNGKey(0), 3, 2, 2, sigma_range=(0.0, 0.1))
    with pytest.raises(ValueError, match="n_test"):
        sample_neuro_task(jax.random.PRNGKey(0), 3, 2, 2, n_test=-1)
    with pytest.raises(ValueError, match="neuro_score must be one of"):
        MetaBBOConfig(neuro_score="test")
    with pytest.raises(ValueError, match="neuro_examples must be >= 2"):
        MetaBBOConfig(neuro_examples=1)
    with pytest.raises(ValueError, match="neuro_test_examples"):
        MetaBBOConfig(neuro_score="heldout", neuro_test_examples=0)
    with pytest.raises(ValueError, match="sizes or neuro_sizes"):
        MetaBBOConfig(sizes=(), neuro_sizes=())


def test_neuro_table_avoids_the_digits_task():
    # les-neuroevolution's digits MLP (64-16-10, D 1,210) at N 32 / T 200 is the evaluation
    assert all(n_mlp_params(*s[:3]) != n_mlp_params(64, 16, 10) for s in NEURO_SIZES)
    assert not {s[3] for s in NEURO_SIZES} & {32} and not {s[4] for s in NEURO_SIZES} & {200}


def test_eval_regime_table_is_mlp_only_and_avoids_digits_and_validation_archs(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "les_highd_validation.py"
    spec = importlib.util.spec_from_file_location("les_highd_validation", path)
    val = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(val)

    bbob, mlp = SIZE_TABLES["neuro-eval"]
    assert bbob == () and mlp == NEURO_EVAL_SIZES
    held_out = {(64, 16, 10), *val.VAL_ARCHS, *val.SELECT_ARCHS}
    assert not {s[:3] for s in mlp} & held_out
    assert not {s[:3] for s in mlp} & {s[:3] for s in NEURO_SIZES}
    # an MLP-only table trains (sigma0 fixed by an equal range), from the command line too
    main([
        "--sizes", "neuro-eval", "--meta-population", "2", "--meta-generations", "1",
        "--neuro-sigma-range", "0.1", "0.1", "--neuro-examples", "8", "--no-progress",
        "--out", str(tmp_path / "cli"),
    ])  # fmt: skip
    cfg = json.loads((tmp_path / "cli" / "config.json").read_text())
    assert cfg["sizes"] == [] and cfg["neuro_sigma_range"] == [0.1, 0.1]
    assert [tuple(s) for s in cfg["neuro_sizes"]] == list(NEURO_EVAL_SIZES)


def test_evaluator_pairs_candidates_and_training_schedules_both_kinds(tmp_path):
    cfg = MetaBBOConfig(
        train_fns=("sphere",),
        noise_models=("noiseless",),
        sizes=((2, 3, 4, 3, 1),),
        neuro_sizes=((4, 3, 2, 6, 5, 2),),
        meta_population=4,
        meta_generations=4,
    )
    # one epoch visits the BBOB size (index 0) and the MLP size (index 1) once each
    assert sorted(size_order(cfg, g) for g in range(2)) == [0, 1]
    ex = LocalExecutor(cfg)
    theta0, _ = ravel_pytree(init_net(cfg))
    thetas = np.stack([theta0, theta0, theta0 + 0.01])
    fit, regret = ex(1, thetas, np.asarray(jax.random.PRNGKey(3)))
    assert fit.shape == (2, 3) and regret.shape == (2, 3)
    np.testing.assert_allclose(fit[:, 0], fit[:, 1])  # same tasks and keys for every candidate
    assert np.all(regret <= fit + 1e-6) and np.all(np.isfinite(fit))
    _, rec = train(cfg, tmp_path / "run", progress=False)
    assert sorted(rec["history"]["size_index"]) == [0.0, 0.0, 1.0, 1.0]
    assert rec["config"]["neuro_sizes"] == [[4, 3, 2, 6, 5, 2]]


def test_heldout_split_leaves_the_training_split_and_uses_its_statistics():
    arch = (10, 5, 3)
    for seed in range(6):
        k = jax.random.PRNGKey(seed)
        plain = sample_neuro_task(k, *arch, n_examples=200)
        split = sample_neuro_task(k, *arch, n_examples=200, n_test=300)
        for f in ("x", "y", "mean0", "sigma0"):  # the training task is the same
            np.testing.assert_array_equal(getattr(plain, f), getattr(split, f))
        assert plain.x_test.shape == (0, 10) and split.x_test.shape == (300, 10)
        x, xt = np.asarray(split.x), np.asarray(split.x_test)
        if np.isclose(x.min(), 0.0, atol=1e-6) and np.isclose(x.max(), 1.0, atol=1e-6):
            # min-max scaled with the training split's range: the test split may leave [0, 1]
            assert xt.min() < 0.0 or xt.max() > 1.0
        else:  # standardised with the training mean: the test mean is near 0, not exactly 0
            assert 0 < np.abs(xt.mean(0)).max() < 0.5
        # the held-out loss is the training loss's formula on the other split
        swapped = split._replace(x_test=split.x, y_test=split.y)
        assert float(heldout_cross_entropy(split.mean0, swapped, *arch)) == pytest.approx(
            float(cross_entropy(split.mean0, split, *arch)), rel=1e-6
        )


def test_rollout_final_solution_is_the_mean_of_an_explicit_loop():
    algo = LES(8, 6)
    params = algo.default_params.replace(std_init=jnp.float32(0.3))
    mean0 = jnp.linspace(-1.0, 1.0, 6)

    def fit(x, _):
        f = jnp.sum(x**2, axis=1)
        return f, f

    key = jax.random.PRNGKey(4)
    out = rollout(algo, params, fit, key, mean0, jnp.float32(0.3), 5)
    k_init, k_loop = jax.random.split(key)
    state = algo.init(k_init, mean0, params)
    for k in jax.random.split(k_loop, 5):
        k_ask, k_eval, k_tell = jax.random.split(k, 3)
        x, state = algo.ask(k_ask, state, params)
        state, _ = algo.tell(k_tell, x, fit(x, k_eval)[0], state, params)
    np.testing.assert_allclose(out.final_solution, algo.get_mean(state), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out.final_solution, mean0)


def test_heldout_score_is_the_final_means_test_loss_and_differs_from_best():
    size = (4, 3, 2, 6, 8, 2)
    base = dict(train_fns=("sphere",), sizes=((2, 3, 4, 3, 1),), neuro_sizes=(size,))
    best_cfg = MetaBBOConfig(**base)
    held_cfg = MetaBBOConfig(**base, neuro_score="heldout", neuro_test_examples=64)
    theta0, unravel = ravel_pytree(init_net(best_cfg))
    thetas = jnp.stack([theta0, theta0 + 0.02])
    key = jax.random.PRNGKey(5)
    f_best, _ = make_neuro_evaluator(best_cfg, size, unravel)(thetas, key)
    f_held, r_held = make_neuro_evaluator(held_cfg, size, unravel)(thetas, key)
    np.testing.assert_array_equal(f_held, r_held)
    # one task by hand: the same task keys and run keys as the evaluator
    k_task, k_run = jax.random.split(key)
    task = sample_neuro_task(jax.random.split(k_task, 2)[0], 4, 3, 2, n_test=64)
    algo = LES(6, n_mlp_params(4, 3, 2), weights=unravel(theta0))
    params = algo.default_params.replace(std_init=task.sigma0)

    def fit(x, _):
        f = jax.vmap(lambda w: cross_entropy(w, task, 4, 3, 2))(x)
        return f, f

    out = rollout(algo, params, fit, jax.random.split(k_run, 2)[0], task.mean0, task.sigma0, 8)
    ref = heldout_cross_entropy(out.final_solution, task, 4, 3, 2)
    assert float(f_held[0, 0]) == pytest.approx(float(ref), rel=1e-5)
    assert float(f_best[0, 0]) == pytest.approx(float(out.gen_best_fitness[-1]), rel=1e-5)
    assert not np.allclose(f_held, f_best)
