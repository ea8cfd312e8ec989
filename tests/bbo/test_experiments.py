"""The bbo reproductions: smoke presets under jit(vmap) and verdict rules on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from metalab.experiments.les_bbob import win_checks

NAMES = ("les-bbob", "lga-bbob", "des-heuristic", "les-neuroevolution")


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
