"""Smoke presets of leap-fewshot and warpgrad-fewshot (jit + vmap over seeds, selection on
validation data, verdicts through the declared rules), and the MetaMaze branch of
warpgrad-fewshot at smoke size."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest

from metalab.experiments import registry


def _run_smoke(name):
    exp = registry.get(name)
    cfg = exp.config("smoke")
    keys = jax.random.split(jax.random.PRNGKey(0), exp.seeds["smoke"])
    out = jax.jit(jax.vmap(lambda k: exp.run(cfg, k)))(keys)
    ms = [{k: np.asarray(v)[i] for k, v in out.items()} for i in range(len(keys))]
    for m in ms:
        for k, v in m.items():
            assert np.all(np.isfinite(v)), k
    return exp, cfg, ms


def test_leap_fewshot_smoke():
    exp, cfg, ms = _run_smoke("leap-fewshot")
    for n in cfg.pool_sizes:
        for m in ("leap", "reptile", "fomaml", "pretrain", "scratch"):
            assert f"auc_n{n}/{m}" in ms[0]
    assert ms[0]["curve/leap"].shape == (cfg.inner_steps + 1,)
    # no pretraining is the same random start at every pool size
    assert ms[0][f"auc_n{cfg.pool_sizes[0]}/scratch"] == ms[0][f"auc_n{cfg.pool_sizes[-1]}/scratch"]
    # the selected settings come from the declared grids
    for m in ("leap", "reptile", "fomaml", "pretrain"):
        assert ms[0][f"select_lr/{m}"] in np.float32(cfg.lr_grid)
    v = exp.judge(ms, cfg)  # checks exactly the declared rules
    assert [c.name for c in v.checks] == [r.name for r in exp.rules]
    # a p is in [0, 1], or undefined (2 smoke seeds can tie exactly) and then the check says so
    assert all(0.0 <= c.p_value <= 1.0 or "undefined" in c.threshold for c in v.checks)
    assert all(math.isfinite(c.value) for c in v.checks)


def test_warpgrad_fewshot_smoke():
    exp, cfg, ms = _run_smoke("warpgrad-fewshot")
    assert set(ms[0]) >= {
        "fewshot_acc/maml",
        "fewshot_acc/warp_maml",
        "lh_auc/leap",
        "lh_auc/warp_leap",
    }
    assert ms[0]["lh_curve/leap"].shape == (cfg.lh_inner_steps + 1,)
    for m in ("maml", "warp_maml"):
        assert ms[0][f"select_inner_lr/{m}"] in np.float32(cfg.fs_inner_lr_grid)
    v = exp.judge(ms, cfg)
    assert [c.name for c in v.checks] == [r.name for r in exp.rules]
    # a p is in [0, 1], or undefined (2 smoke seeds can tie exactly) and then the check says so
    assert all(0.0 <= c.p_value <= 1.0 or "undefined" in c.threshold for c in v.checks)


def test_warpgrad_metamaze_branch_runs():
    from metalab.experiments import warpgrad_fewshot as wf

    cfg = dataclasses.replace(
        registry.get("warpgrad-fewshot").config("smoke"),
        long_horizon="metamaze",
        maze_horizon=4,
        maze_episodes=2,
        lh_outer_lr_grid=(1e-3,),
    )
    out = jax.jit(lambda k: wf._long_horizon(cfg, k))(jax.random.PRNGKey(0))
    for m in ("leap", "warp_leap"):
        assert np.isfinite(float(out[f"lh_auc/{m}"]))
        assert -4.0 <= float(out[f"lh_auc/{m}"]) <= 0.0  # minus a mean return in [0, T]


def test_bad_config_is_rejected_before_compute():
    from metalab.experiments import leap_fewshot as lf

    smoke = lf.EXPERIMENT.config("smoke")
    cfg = dataclasses.replace(smoke, num_shots=170, num_query=10)
    with pytest.raises(ValueError, match="exceeds the 174 images"):
        lf.run(cfg, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="strictly increasing"):
        lf.run(dataclasses.replace(smoke, pool_sizes=(4, 2)), jax.random.PRNGKey(0))
