"""The bbo reproductions: declared rules judged on synthetic data (the toolkit's wins and
non-inferiority procedures), and validation-seed tuning of the baselines."""

from __future__ import annotations

import numpy as np

from metalab.experiments.les_bbob import EXPERIMENT as LES_BBOB
from metalab.experiments.les_bbob import LESBBOBConfig, derive_regrets, tuned_on_validation
from metalab.experiments.les_neuroevolution import EXPERIMENT as NEURO


def _fake(ours, theirs, n_seeds=6, noise=0.01):
    """Seed-stacked fn_grid data: LES one setting; baselines a 2-point grid (2nd is worse)."""
    rng = np.random.default_rng(0)
    out = {"fn_grid/les": ours[None, :, None] + noise * rng.normal(size=(n_seeds, len(ours), 1))}
    for b in ("openes", "snes", "gaussian_ga", "evosax_les", "cma_es", "sep_cma_es"):
        g = np.stack([theirs, theirs + 1.0], axis=1)
        out[f"fn_grid/{b}"] = g[None] + noise * rng.normal(size=(n_seeds, *g.shape))
    return out


def test_les_bbob_rules_can_fail_and_pass():
    fns = tuple(f"f{i}" for i in range(14))
    cfg = LESBBOBConfig(fns=fns, validation_seeds=2)
    base = np.linspace(-2, 3, 14)
    v = LES_BBOB.verdict(_fake(base - 1.0, base), cfg)
    assert v.reproduced and all(c.value == 1.0 and c.n == 14 for c in v.checks)
    mixed = base.copy()
    mixed[:9] -= 1.0
    mixed[9:] += 1.0  # 9 of 14 wins: a majority, not significant after Holm
    v = LES_BBOB.verdict(_fake(mixed, base), cfg)
    assert not any(c.passed for c in v.checks)
    assert "cma_es" in v.notes and "sep_cma_es" in v.notes


def test_tuning_uses_validation_seeds_only():
    g = np.zeros((5, 1, 2))
    g[:2, 0, 1] = -1.0  # validation seeds prefer setting 1
    g[2:, 0, 0] = -5.0  # evaluation seeds would prefer setting 0
    np.testing.assert_array_equal(tuned_on_validation(g, 2), np.zeros((3, 1)))
    r = derive_regrets({"fn_grid/x": g, "other": np.ones(5)}, 2)
    assert list(r) == ["regret/x"] and r["regret/x"].shape == (3, 1)


def test_neuroevolution_rules_not_won_by_ties():
    rng = np.random.default_rng(1)
    s = 6
    data = {
        "digits_test_acc/les": 0.85 + 0.005 * rng.normal(size=s),
        "digits_test_acc/openes": 0.96 + 0.005 * rng.normal(size=s),
        "digits_test_acc/snes": 0.96 + 0.005 * rng.normal(size=s),
        "cartpole_auc/les": 0.6 + 0.02 * rng.normal(size=s),
        "cartpole_auc/openes": 0.6 + 0.02 * rng.normal(size=s),
        "cartpole_auc/snes": 0.3 + 0.02 * rng.normal(size=s),
        "cartpole_return/les": np.full(s, 500.0),
        "cartpole_return/openes": np.full(s, 500.0),
        "cartpole_return/snes": np.full(s, 500.0),
    }
    v = NEURO.verdict(data, NEURO.presets["quick"])
    passed = {c.name: c.passed for c in v.checks}
    assert not passed["digits: LES not worse than openes"]  # 0.11 worse: fails
    assert passed["CartPole: LES not worse than snes"]
    assert all(np.isfinite(c.mde) for c in v.checks)
