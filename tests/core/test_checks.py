"""The checks toolkit against scipy/statsmodels on fixed data, and its contract."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW, ttost_ind, ttost_paired

from metalab.core import checks
from metalab.core.checks import ALPHA, POWER, Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, param

RNG = np.random.default_rng(1234)
A = RNG.normal(1.0, 1.0, 12)
B = A - RNG.normal(0.6, 0.8, 12)  # paired: a is better by ~0.6
C = RNG.normal(0.2, 1.5, 9)  # unpaired sample
DATA = {"a": A, "b": B, "c": C}


def one(rule: Rule, data=DATA):
    return judge((rule,), data)[0]


def test_paired_t_matches_scipy_and_ci_and_mde():
    c = one(Rule("x", "superiority", a="a", b="b"))
    d = A - B
    assert c.p_value == pytest.approx(sps.ttest_rel(A, B, alternative="greater").pvalue)
    lo, hi = DescrStatsW(d).tconfint_mean(alpha=2 * ALPHA)
    assert c.ci == pytest.approx((lo, hi))
    assert c.value == pytest.approx(d.mean())
    dz = TTestPower().solve_power(nobs=12, alpha=ALPHA, power=POWER, alternative="larger")
    assert c.mde == pytest.approx(dz * d.std(ddof=1))
    assert c.effect_size == pytest.approx(d.mean() / d.std(ddof=1))
    assert c.n == 12 and c.passed and c.ci_level == pytest.approx(0.9)
    # the same data, the other direction: the check can fail
    worse = one(Rule("x", "superiority", a="b", b="a"))
    assert not worse.passed and worse.p_value > 0.5


def test_direction_less_and_margin():
    c = one(Rule("x", "superiority", a="b", b="a", direction="less"))
    assert c.p_value == pytest.approx(sps.ttest_rel(B, A, alternative="less").pvalue)
    m = 0.3
    c = one(Rule("x", "superiority", a="a", b="b", margin=m))
    assert c.p_value == pytest.approx(sps.ttest_1samp(A - B - m, 0, alternative="greater").pvalue)
    ni = one(Rule("x", "non_inferiority", a="b", b="a", margin=1.0))
    assert ni.p_value == pytest.approx(
        sps.ttest_1samp(B - A + 1.0, 0, alternative="greater").pvalue
    )


def test_welch_matches_scipy_and_statsmodels_ci():
    c = one(Rule("x", "superiority", a="a", b="c", paired=False))
    assert c.p_value == pytest.approx(
        sps.ttest_ind(A, C, equal_var=False, alternative="greater").pvalue
    )
    cm = CompareMeans(DescrStatsW(A), DescrStatsW(C))
    assert c.ci == pytest.approx(cm.tconfint_diff(alpha=2 * ALPHA, usevar="unequal"))
    pooled = math.sqrt((A.var(ddof=1) * 11 + C.var(ddof=1) * 8) / 19)
    d = TTestIndPower().solve_power(
        nobs1=12, ratio=9 / 12, alpha=ALPHA, power=POWER, alternative="larger"
    )
    assert c.mde == pytest.approx(d * pooled)


def test_tost_matches_statsmodels():
    c = one(Rule("x", "equivalence", a="a", b="b", margin=1.5))
    assert c.p_value == pytest.approx(ttost_paired(A, B, -1.5, 1.5)[0])
    c = one(Rule("x", "equivalence", a="a", b="c", margin=1.5, paired=False))
    assert c.p_value == pytest.approx(ttost_ind(A, C, -1.5, 1.5, usevar="unequal")[0])
    # a margin too tight for this data cannot pass
    assert not one(Rule("x", "equivalence", a="a", b="b", margin=0.05)).passed


def test_rank_and_sign_tests_match_scipy():
    d = A - B
    c = one(Rule("x", "superiority", a="a", b="b", test="wilcoxon"))
    assert c.p_value == pytest.approx(sps.wilcoxon(d, alternative="greater").pvalue)
    i, j = np.triu_indices(12)
    assert c.value == pytest.approx(np.median((d[i] + d[j]) / 2))
    c = one(Rule("x", "superiority", a="a", b="c", test="wilcoxon", paired=False))
    assert c.p_value == pytest.approx(sps.mannwhitneyu(A, C, alternative="greater").pvalue)
    c = one(Rule("x", "superiority", a="a", b="b", test="sign"))
    k = int((d > 0).sum())
    assert c.p_value == pytest.approx(sps.binomtest(k, 12, 0.5, alternative="greater").pvalue)
    assert c.value == pytest.approx(k / 12)


def test_signed_rank_interval_uses_the_exact_critical_value():
    # Tables: n = 10, one-sided 0.05 -> critical T = 10 (P(T+ <= 10) = 0.042, P(<= 11) = 0.053)
    cdf = checks._signed_rank_null_cdf(10)
    assert cdf[10] == pytest.approx(43 / 1024) and cdf[11] > ALPHA
    d = np.arange(1.0, 11.0)
    _, (lo, hi) = checks._hl_one(d, 1 - 2 * ALPHA)
    i, j = np.triu_indices(10)
    w = np.sort((d[i] + d[j]) / 2)
    assert (lo, hi) == (w[10], w[w.size - 11])


def test_one_sample_and_wins_and_trend():
    c = one(Rule("x", "one_sample", a="a", margin=0.5))
    assert c.p_value == pytest.approx(sps.ttest_1samp(A, 0.5, alternative="greater").pvalue)
    # wins: 8 problems, per-problem means over 3 seeds; lower is better
    reg_a = np.array([[1, 2, 3, 4, 5, 6, 7, 8.0]] * 3)
    reg_b = reg_a + np.array([1, 1, 1, 1, 1, 1, -1, 0.0])  # a wins 6, loses 1, ties 1
    c = judge(
        (Rule("w", "wins", a="ra", b="rb", direction="less", transform="log"),),
        {"ra": reg_a, "rb": reg_b},
    )[0]
    assert c.value == pytest.approx(6 / 7) and c.n == 7
    assert c.p_value == pytest.approx(sps.binomtest(6, 7, 0.5, alternative="greater").pvalue)
    # trend: per-seed slopes then a one-sample t-test
    x = np.array([1.0, 2, 4, 8])
    y = np.stack([0.3 * np.log(x) + RNG.normal(0, 0.1, 4) for _ in range(6)])
    c = judge(
        (Rule("t", "trend", a="x", b="y", x_transform="log"),), {"x": np.stack([x] * 6), "y": y}
    )[0]
    slopes = np.array([np.polyfit(np.log(x), yy, 1)[0] for yy in y])
    assert c.value == pytest.approx(slopes.mean())
    assert c.p_value == pytest.approx(sps.ttest_1samp(slopes, 0, alternative="greater").pvalue)


def test_holm_within_groups_only():
    rules = (
        Rule("g1", "superiority", a="a", b="b", group="g"),
        Rule("g2", "superiority", a="a", b="c", paired=False, group="g"),
        Rule("alone", "superiority", a="a", b="c", paired=False),
    )
    cs = judge(rules, DATA)
    raw = [cs[0].p_value, cs[1].p_value]
    assert [cs[0].p_adjusted, cs[1].p_adjusted] == pytest.approx(
        list(multipletests(raw, method="holm")[1])
    )
    assert cs[2].p_adjusted == cs[2].p_value
    assert all(c.passed == (c.p_adjusted < ALPHA) for c in cs)


def test_exact_ties_are_no_evidence_and_still_count_in_holm():
    # Every seed at the same ceiling: a paired non-inferiority t-test is undefined (zero
    # variance) and must not pass; it used to return p = 0 and pass on no evidence.
    tie = {"a": np.full(6, 200.0), "b": np.full(6, 200.0), "c": C[:6]}
    ni = Rule("ni", "non_inferiority", a="a", b="b", margin=5.0)
    c = one(ni, tie)
    assert not c.passed and math.isnan(c.p_value) and "undefined" in c.threshold
    unpaired = Rule("u", "superiority", a="a", b="b", paired=False)
    assert math.isnan(one(unpaired, {"a": np.full(4, 2.0), "b": np.full(4, 1.0)}).p_value)
    # In a Holm group, the undefined member counts as p = 1: the family size stays 2.
    rules = (
        Rule("g1", "superiority", a="a", b="c", paired=False, group="g"),
        dataclasses.replace(ni, group="g"),
    )
    cs = judge(rules, {**tie, "a": A[:6] + 3.0, "b": A[:6] + 3.0})
    assert cs[0].p_adjusted == pytest.approx(min(1.0, 2 * cs[0].p_value))
    assert math.isnan(cs[1].p_adjusted) and not cs[1].passed


def test_mde_sign_is_the_power_point():
    m = checks.mde_sign(10)  # critical k = 9 of 10
    assert sps.binom.sf(8, 10, m) == pytest.approx(POWER, abs=1e-6)
    assert checks.mde_sign(4) == math.inf  # 4 units can never reach p < 0.05


def test_mde_is_the_80_percent_power_point_by_simulation():
    n, sd = 10, 1.0
    mde = checks.mde_t(n, sd)
    rng = np.random.default_rng(0)
    x = rng.normal(mde, sd, (4000, n))
    power = (sps.ttest_1samp(x, 0, axis=1, alternative="greater").pvalue < ALPHA).mean()
    assert power == pytest.approx(POWER, abs=0.03)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "better"}, "kind"),
        ({"kind": "superiority", "test": "z"}, "test"),
        ({"kind": "superiority", "direction": "up"}, "direction"),
        ({"kind": "superiority", "transform": "sqrt"}, "transform"),
        ({"kind": "superiority", "margin": math.nan}, "margin"),
    ],
)
def test_bad_rules_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"Rule.{field}"):
        Rule("x", a="a", b="b", **kwargs)


def test_bad_data_is_named():
    with pytest.raises(KeyError, match="available: a, b, c"):
        one(Rule("x", "superiority", a="a", b="missing"))
    with pytest.raises(ValueError, match="positive"):
        one(Rule("x", "superiority", a="a", b="b", transform="log"), {"a": A, "b": B - 10})
    with pytest.raises(ValueError, match="one value per seed"):
        one(Rule("x", "superiority", a="m", b="m2"), {"m": np.ones((3, 2)), "m2": np.ones((3, 2))})


def test_experiment_judge_enforces_declared_rules_and_stacks_seeds():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        n: int = param(1, "n")

    rules = (Rule("a beats b", "superiority", a="x/a", b="x/b"),)
    seen = {}

    def good(data, cfg):
        seen["shape"] = data["x/a"].shape
        return Verdict(judge(rules, data), summary="ok")

    def sneaky(data, cfg):
        c = judge(rules, data)[0]
        return Verdict((dataclasses.replace(c, name="other"),))

    def exp(verdict):
        return Experiment(
            name="t",
            paper=Paper("t", "t", 2020),
            claim="c",
            config_cls=Cfg,
            presets={p: Cfg() for p in ("smoke", "quick", "full")},
            run=lambda c, k: {},
            verdict=verdict,
            rules=rules,
        )

    metrics = [{"x/a": np.float64(i + 1.0), "x/b": np.float64(i * 0.5)} for i in range(5)]
    v = exp(good).judge(metrics, Cfg())
    assert seen["shape"] == (5,) and v.rules_hash == checks.rules_hash(rules)
    assert v.checks[0].rule == rules[0].text()
    with pytest.raises(ValueError, match="not the declared rules"):
        exp(sneaky).judge(metrics, Cfg())


def test_an_experiment_without_declared_rules_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        n: int = param(1, "n")

    with pytest.raises(ValueError, match="declare the claim's checks as rules"):
        Experiment(
            name="t",
            paper=Paper("t", "t", 2020),
            claim="c",
            config_cls=Cfg,
            presets={p: Cfg() for p in ("smoke", "quick", "full")},
            run=lambda c, k: {},
            verdict=lambda d, c: Verdict(()),
        )


def test_readme_example_runs(readme_example):
    _, printed = readme_example("checks")
    assert "superiority" in printed and printed.strip().endswith("True")
