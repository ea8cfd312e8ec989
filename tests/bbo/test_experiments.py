"""The bbo reproductions: smoke presets under jit(vmap) and verdict rules on synthetic data."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from metalab.experiments import registry
from metalab.experiments.les_bbob import win_checks

NAMES = ("les-bbob", "lga-bbob", "des-heuristic", "les-neuroevolution")


@pytest.mark.parametrize("name", NAMES)
def test_smoke_preset_runs_vmapped_and_judges(name):
    exp = registry.get(name)
    cfg = exp.config("smoke")
    keys = jax.random.split(jax.random.PRNGKey(0), exp.seeds["smoke"])
    out = jax.jit(jax.vmap(lambda k: exp.run(cfg, k)))(keys)
    ms = [{k: np.asarray(v[i]) for k, v in out.items()} for i in range(len(keys))]
    for m in ms:
        for k, v in m.items():
            assert np.all(np.isfinite(v)), k
    v = exp.verdict(ms, cfg)
    assert len(v.checks) >= 1 and all(isinstance(c.passed, bool) for c in v.checks)


def _fake(ours, theirs, n_seeds=4):
    rng = np.random.default_rng(0)
    return [
        {
            "fn_grid/les": (ours + 0.01 * rng.normal(size=ours.shape))[:, None],
            "fn_grid/openes": np.stack([theirs, theirs + 1.0], axis=1),
        }
        for _ in range(n_seeds)
    ]


def test_win_checks_rule():
    fns = tuple(f"f{i}" for i in range(14))
    base = np.linspace(-2, 3, 14)
    better = _fake(base - 1.0, base)
    (c,), _ = win_checks(better, "les", ("openes",), fns)
    assert c.passed and c.value == 14 and c.p_value == pytest.approx(0.5**14)
    # winning only 9 of 14 is a majority but not significant: the check fails
    mixed = base.copy()
    mixed[:9] -= 1.0
    mixed[9:] += 1.0
    (c,), _ = win_checks(_fake(mixed, base), "les", ("openes",), fns)
    assert c.value == 9 and not c.passed
    # the baseline is tuned per function: its best grid column is used
    (c,), _ = win_checks(_fake(base + 0.5, base), "les", ("openes",), fns)
    assert c.value == 0 and not c.passed
