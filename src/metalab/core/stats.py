"""Statistics over seeds: summaries, confidence intervals, tests, multiple-comparison control.

Thin, documented wrappers over scipy and statsmodels so that every verdict in metalab uses the
same procedures. All functions take plain numpy arrays (one value per seed or per paired unit)
and return floats / small dataclasses; none of them is traced by JAX.

Conventions: ``alternative="greater"`` tests whether ``a`` is larger than ``b`` (or than 0 for
one-sample tests). Confidence intervals are two-sided at level ``1 - alpha``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

Alternative = Literal["two-sided", "greater", "less"]


@dataclass(frozen=True)
class TestResult:
    """Result of a hypothesis test: statistic, p-value, effect size and its name."""

    statistic: float
    p_value: float
    effect_size: float
    effect_name: str
    test: str


def _arr(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("empty sample: a statistic needs at least one value")
    return a


def mean_ci(x, alpha: float = 0.05) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval ``(mean, low, high)``; degenerate for n = 1."""
    a = _arr(x)
    m = float(a.mean())
    if a.size < 2 or np.allclose(a, a[0]):
        return m, m, m
    h = float(sps.sem(a) * sps.t.ppf(1 - alpha / 2, a.size - 1))
    return m, m - h, m + h


def bootstrap_ci(
    x,
    stat=np.mean,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Percentile bootstrap CI of ``stat`` over a 1-d sample: ``(stat(x), low, high)``.

    Deterministic for a given ``seed``. Uses scipy's resampling with the percentile method so
    that tiny samples (n = 2 or 3) still give an interval.
    """
    a = _arr(x)
    point = float(stat(a))
    if a.size < 2 or np.allclose(a, a[0]):
        return point, point, point
    res = sps.bootstrap(
        (a,),
        lambda s, axis: stat(s, axis=axis),
        confidence_level=1 - alpha,
        n_resamples=n_resamples,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    return point, float(res.confidence_interval.low), float(res.confidence_interval.high)


def cohens_d(a, b) -> float:
    """Cohen's d with pooled standard deviation (``a`` minus ``b``)."""
    a, b = _arr(a), _arr(b)
    va, vb = a.var(ddof=1) if a.size > 1 else 0.0, b.var(ddof=1) if b.size > 1 else 0.0
    pooled = math.sqrt(((a.size - 1) * va + (b.size - 1) * vb) / max(a.size + b.size - 2, 1))
    diff = float(a.mean() - b.mean())
    if pooled == 0.0:
        return math.copysign(math.inf, diff) if diff else 0.0
    return diff / pooled


def welch_t(a, b, alternative: Alternative = "two-sided") -> TestResult:
    """Welch's unequal-variance t-test of ``mean(a)`` vs ``mean(b)``, effect size Cohen's d."""
    a, b = _arr(a), _arr(b)
    r = sps.ttest_ind(a, b, equal_var=False, alternative=alternative)
    p = (
        float(r.pvalue)
        if np.isfinite(r.pvalue)
        else _degenerate_p(a.mean() - b.mean(), alternative)
    )
    return TestResult(float(r.statistic), p, cohens_d(a, b), "Cohen's d", "Welch t-test")


def mann_whitney(a, b, alternative: Alternative = "two-sided") -> TestResult:
    """Mann-Whitney U test; effect size is the common-language probability P(a > b)."""
    a, b = _arr(a), _arr(b)
    r = sps.mannwhitneyu(a, b, alternative=alternative)
    cl = float(r.statistic) / (a.size * b.size)
    return TestResult(float(r.statistic), float(r.pvalue), cl, "P(a > b)", "Mann-Whitney U")


def paired_t(a, b, alternative: Alternative = "two-sided") -> TestResult:
    """Paired t-test on ``a - b``; effect size is d_z = mean(diff) / sd(diff)."""
    d = _arr(a) - _arr(b)
    if d.size < 2 or np.allclose(d, d[0]):
        p = _degenerate_p(d.mean(), alternative)
        dz = math.copysign(math.inf, d.mean()) if d.mean() else 0.0
        return TestResult(math.nan, p, dz, "d_z", "paired t-test")
    r = sps.ttest_rel(_arr(a), _arr(b), alternative=alternative)
    dz = float(d.mean() / d.std(ddof=1))
    return TestResult(float(r.statistic), float(r.pvalue), dz, "d_z", "paired t-test")


def wilcoxon(a, b=None, alternative: Alternative = "two-sided") -> TestResult:
    """Wilcoxon signed-rank test on ``a - b`` (or on ``a`` if ``b`` is None).

    Effect size is the matched-pairs rank-biserial correlation in [-1, 1]. Zero differences are
    dropped (``zero_method="wilcox"``); if all differences are zero, p = 1.
    """
    d = _arr(a) - (0.0 if b is None else _arr(b))
    nz = d[d != 0]
    if nz.size == 0:
        return TestResult(0.0, 1.0, 0.0, "rank-biserial r", "Wilcoxon signed-rank")
    r = sps.wilcoxon(nz, alternative=alternative)
    ranks = sps.rankdata(np.abs(nz))
    rb = float((ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum())
    return TestResult(
        float(r.statistic), float(r.pvalue), rb, "rank-biserial r", "Wilcoxon signed-rank"
    )


def one_sample_t(x, popmean: float = 0.0, alternative: Alternative = "two-sided") -> TestResult:
    """One-sample t-test of ``mean(x)`` against ``popmean``; effect size (mean - popmean) / sd."""
    a = _arr(x)
    if a.size < 2 or np.allclose(a, a[0]):
        diff = a.mean() - popmean
        return TestResult(math.nan, _degenerate_p(diff, alternative), math.nan, "d", "one-sample t")
    r = sps.ttest_1samp(a, popmean, alternative=alternative)
    d = float((a.mean() - popmean) / a.std(ddof=1))
    return TestResult(float(r.statistic), float(r.pvalue), d, "d", "one-sample t-test")


def sign_test(
    successes: int, n: int, p: float = 0.5, alternative: Alternative = "greater"
) -> float:
    """Exact binomial test p-value for ``successes`` out of ``n`` against rate ``p``."""
    if n <= 0:
        raise ValueError("sign_test needs n >= 1")
    return float(sps.binomtest(int(successes), int(n), p, alternative=alternative).pvalue)


def holm(p_values) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (same order as the input), via statsmodels."""
    from statsmodels.stats.multitest import multipletests

    p = _arr(p_values)
    return multipletests(p, method="holm")[1]


def _degenerate_p(diff: float, alternative: Alternative) -> float:
    """p-value when the sample has zero variance: 0 if the effect is in the tested direction."""
    if diff == 0:
        return 1.0
    if alternative == "two-sided":
        return 0.0
    return 0.0 if (diff > 0) == (alternative == "greater") else 1.0


def anova(data, formula: str, typ: int = 2):
    """ANOVA table with effect sizes for a linear model, via statsmodels.

    Args:
      data: a pandas DataFrame (or a dict of equal-length columns).
      formula: a patsy formula, e.g. ``"score ~ C(mode) * C(difficulty)"``.
      typ: the sum-of-squares type (2 by default; 3 for unbalanced designs with interactions).

    Returns:
      The statsmodels ANOVA DataFrame with two added columns: ``eta_sq`` (SS / SS_total) and
      ``partial_eta_sq`` (SS / (SS + SS_residual)).
    """
    import pandas as pd
    import statsmodels.api as sm
    from statsmodels.formula.api import ols

    df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
    model = ols(formula, data=df).fit()
    table = sm.stats.anova_lm(model, typ=typ)
    ss_resid = float(table.loc["Residual", "sum_sq"])
    total = float(table["sum_sq"].sum())
    table["eta_sq"] = table["sum_sq"] / total
    table["partial_eta_sq"] = table["sum_sq"] / (table["sum_sq"] + ss_resid)
    table.loc["Residual", ["eta_sq", "partial_eta_sq"]] = np.nan
    return table


def loglinear_slope(x, y) -> tuple[float, float, float]:
    """Least-squares slope of ``log y`` on ``log x`` with a 95% CI: ``(slope, low, high)``.

    Used to estimate scaling exponents, e.g. iterations ~ condition_number ** slope.
    """
    lx, ly = np.log(_arr(x)), np.log(_arr(y))
    r = sps.linregress(lx, ly)
    h = float(r.stderr * sps.t.ppf(0.975, max(lx.size - 2, 1)))
    return float(r.slope), float(r.slope - h), float(r.slope + h)
