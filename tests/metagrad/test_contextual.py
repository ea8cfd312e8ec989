"""Contextual meta-parameters: masks, exact initialisation, recovery metric, verdict logic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.experiments import contextual_mg
from metalab.metagrad import contextual, meta_ac
from metalab.rl import actor_critic as ac


def test_masks_nest_none_in_performance_in_full():
    m = {lv: np.asarray(contextual.context_mask(lv)) for lv in ("none", "performance", "full")}
    assert m["none"].sum() == 1 and m["none"][0] == 1
    assert np.all(m["none"] <= m["performance"]) and np.all(m["performance"] <= m["full"])
    assert m["full"].sum() == meta_ac.NUM_CONTEXT
    with pytest.raises(ValueError, match="context level"):
        contextual.context_mask("some")


def test_init_phi_outputs_the_base_hyperparameters_for_any_context():
    base = ac.make_hyper(entropy=0.05, lr=8.0)
    fn = contextual.make_hyper_fn(base, entropy_max=1.0, lr_max=16.0)
    phi = contextual.init_phi(0.05, 8.0, 1.0, 16.0)
    for c in (jnp.ones(6), jnp.array([1.0, -3, 2, 0.5, 0.1, 0.9])):
        h = fn(phi, c)
        assert float(h.entropy) == pytest.approx(0.05, rel=1e-5)
        assert float(h.lr) == pytest.approx(8.0, rel=1e-5)
    # the gradient w.r.t. a context weight is proportional to that feature
    g = jax.grad(lambda p: fn(p, jnp.array([1.0, 2.0, 0, 0, 0, 0])).entropy)(phi)["w"]
    assert float(g[0, 1]) == pytest.approx(2 * float(g[0, 0]), rel=1e-5)
    with pytest.raises(ValueError, match="entropy"):
        contextual.init_phi(2.0, 8.0, 1.0, 16.0)


def test_recovery_return_hand_computed():
    r = jnp.arange(10.0)
    # changes at 3 and 6 (and 9: no full window of 2 there), windows [3,4] and [6,7]
    assert float(contextual.recovery_return(r, 3, 2)) == pytest.approx((3 + 4 + 6 + 7) / 4)
    with pytest.raises(ValueError, match="no change"):
        contextual.recovery_return(r, 20, 2)


def _fake(life, rec, fixed):
    m = {}
    for lv in contextual_mg.LEVELS:
        m[f"lifetime/mg-{lv}"] = np.float32(life[lv])
        m[f"recovery/mg-{lv}"] = np.float32(rec[lv])
    for e, v in fixed.items():
        m[f"lifetime/fixed-{e:g}"] = np.float32(v)
    return m


def test_verdict_can_pass_and_fail():
    cfg = contextual_mg.PRESETS["smoke"]
    rng = np.random.default_rng(0)
    good = [
        _fake(
            {
                "none": 0.1 + 0.01 * rng.normal(),
                "performance": 0.2 + 0.01 * rng.normal(),
                "full": 0.3 + 0.01 * rng.normal(),
            },
            {
                "none": 0.0 + 0.01 * rng.normal(),
                "performance": 0.1 + 0.01 * rng.normal(),
                "full": 0.2 + 0.01 * rng.normal(),
            },
            {0.01: 0.1 + 0.01 * rng.normal(), 0.1: 0.12 + 0.01 * rng.normal()},
        )
        for _ in range(6)
    ]
    assert contextual_mg.verdict(good, cfg).reproduced
    # reversed context ordering and a no-context gain: every check fails
    bad = [
        _fake(
            {
                "none": 0.5 + 0.01 * rng.normal(),
                "performance": 0.2 + 0.01 * rng.normal(),
                "full": 0.1 + 0.01 * rng.normal(),
            },
            {
                "none": 0.3 + 0.01 * rng.normal(),
                "performance": 0.1 + 0.01 * rng.normal(),
                "full": 0.0 + 0.01 * rng.normal(),
            },
            {0.01: 0.1 + 0.01 * rng.normal(), 0.1: 0.12 + 0.01 * rng.normal()},
        )
        for _ in range(6)
    ]
    v = contextual_mg.verdict(bad, cfg)
    assert not any(c.passed for c in v.checks)


def test_bad_config_raises():
    from dataclasses import replace

    with pytest.raises(ValueError, match="multiple"):
        contextual_mg.run(
            replace(contextual_mg.PRESETS["smoke"], swap_every=41), jax.random.PRNGKey(0)
        )
