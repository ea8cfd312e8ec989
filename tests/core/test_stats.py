"""Statistics helpers against hand-computed values and known effects."""

import math

import numpy as np
import pytest

from metalab.core import stats


def test_mean_ci_matches_t_formula():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    m, lo, hi = stats.mean_ci(x)
    # sd = 1.2910, sem = 0.6455, t_{0.975,3} = 3.1824
    assert m == 2.5
    assert hi - m == pytest.approx(0.6454972 * 3.1824463, rel=1e-6)
    assert m - lo == pytest.approx(hi - m)


def test_bootstrap_ci_brackets_the_mean_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 1.0, size=40)
    a = stats.bootstrap_ci(x, seed=1)
    b = stats.bootstrap_ci(x, seed=1)
    assert a == b
    assert a[1] < a[0] < a[2]
    assert a[1] < 3.0 < a[2]
    assert stats.bootstrap_ci([5.0]) == (5.0, 5.0, 5.0)


def test_welch_and_cohens_d_hand_values():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0])
    r = stats.welch_t(a, b)
    # means 4 and 2, variances 4 and 1: t = 2 / sqrt(4/3 + 1/3) = 1.5492
    assert r.statistic == pytest.approx(2 / math.sqrt(5 / 3))
    assert r.effect_size == pytest.approx(2 / math.sqrt(2.5))
    assert stats.welch_t(a, b, alternative="greater").p_value == pytest.approx(r.p_value / 2)


def test_paired_and_wilcoxon_directions():
    a = np.array([1.1, 2.2, 3.3, 4.1, 5.3, 6.2, 7.4, 8.1])
    b = a - np.array([0.1, 0.2, 0.3, 0.1, 0.3, 0.2, 0.4, 0.1])
    assert stats.paired_t(a, b, alternative="greater").p_value < 0.01
    assert stats.paired_t(a, b, alternative="less").p_value > 0.99
    w = stats.wilcoxon(a, b, alternative="greater")
    assert w.p_value == pytest.approx(1 / 256)  # exact: all 8 differences positive
    assert w.effect_size == 1.0
    assert stats.wilcoxon(np.zeros(5)).p_value == 1.0


def test_mann_whitney_effect_is_probability_of_superiority():
    r = stats.mann_whitney([4, 5, 6], [1, 2, 3], alternative="greater")
    assert r.effect_size == 1.0
    assert r.p_value == pytest.approx(0.05)  # 1 / C(6, 3)


def test_holm_adjustment():
    adj = stats.holm([0.01, 0.04, 0.03])
    np.testing.assert_allclose(adj, [0.03, 0.06, 0.06])


def test_sign_test_exact():
    assert stats.sign_test(10, 10) == pytest.approx(0.5**10)


def test_anova_detects_a_real_effect_and_not_a_null_one():
    rng = np.random.default_rng(0)
    a = np.repeat(["x", "y", "z"], 20)
    b = np.tile(["p", "q"], 30)
    effect = {"x": 0.0, "y": 1.0, "z": 2.0}
    score = np.array([effect[v] for v in a]) + rng.normal(0, 0.5, a.size)
    table = stats.anova({"score": score, "a": a, "b": b}, "score ~ C(a) * C(b)")
    assert table.loc["C(a)", "PR(>F)"] < 1e-6
    assert table.loc["C(b)", "PR(>F)"] > 0.01
    assert 0.5 < table.loc["C(a)", "partial_eta_sq"] < 1.0
    assert math.isnan(table.loc["Residual", "eta_sq"])


def test_loglinear_slope_recovers_exponent():
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    s, lo, hi = stats.loglinear_slope(x, 3 * x**0.5)
    assert s == pytest.approx(0.5)
    assert lo == pytest.approx(0.5) and hi == pytest.approx(0.5)


def test_empty_sample_is_a_clear_error():
    with pytest.raises(ValueError, match="empty sample"):
        stats.mean_ci([])
