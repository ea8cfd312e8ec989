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


def _fake(rng, life, rec, tuned):
    m = {}
    for lv in contextual_mg.LEVELS:
        m[f"lifetime/mg-{lv}"] = np.float32(life[lv] + 0.005 * rng.normal())
        m[f"recovery/mg-{lv}"] = np.float32(rec[lv] + 0.005 * rng.normal())
        m[f"diverged/mg-{lv}"] = np.float32(0.0)
    for e in contextual_mg.PRESETS["smoke"].fixed_entropies:
        m[f"lifetime/fixed-{e:g}"] = np.float32(tuned)
    m["lifetime/tuned"] = np.float32(tuned + 0.005 * rng.normal())
    m["tuned_entropy"] = np.float32(0.1)
    return m


def test_verdict_can_pass_and_fail():
    cfg = contextual_mg.PRESETS["smoke"]
    rng = np.random.default_rng(0)
    up = {"none": 0.1, "performance": 0.2, "full": 0.3}
    down = {"none": 0.3, "performance": 0.2, "full": 0.1}
    good = [_fake(rng, up, up, tuned=0.1) for _ in range(8)]
    assert contextual_mg.EXPERIMENT.judge(good, cfg).reproduced
    # reversed context ordering and no-context MG far above the baseline: every check fails
    bad = [_fake(rng, down, down, tuned=0.1) for _ in range(8)]
    assert not any(c.passed for c in contextual_mg.EXPERIMENT.judge(bad, cfg).checks)
    # no-context MG far *below* the baseline fails the equivalence too (absence of evidence)
    below = [_fake(rng, up, up, tuned=0.3) for _ in range(8)]
    checks = contextual_mg.EXPERIMENT.judge(below, cfg).checks
    assert checks[0].passed and not checks[2].passed


def test_bad_config_raises():
    from dataclasses import replace

    with pytest.raises(ValueError, match="multiple"):
        contextual_mg.run(
            replace(contextual_mg.PRESETS["smoke"], swap_every=41), jax.random.PRNGKey(0)
        )
