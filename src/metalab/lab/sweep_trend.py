"""How a check's effect moves along a swept field: a weighted trend and the onset of a claim.

Pure numpy/scipy; used by :mod:`metalab.lab.sweep` and :mod:`metalab.lab.scale`.

* :func:`fit_trend` regresses a check's effect on the swept value (or on its log10 when the
  field spans decades). Each point's effect comes with a confidence interval from its seeds;
  the points are weighted by the inverse of the variance that interval implies
  (``se = (hi - lo) / (2 z)``, conservative for t-based intervals) and the residual dispersion
  is floored at 1 (the seed noise is a lower bound on the scatter, extra scatter between points
  widens the interval). Without usable intervals the fit is ordinary least squares. The slope
  comes with a two-sided ``1 - alpha`` CI (Student t on ``n - 2`` degrees of freedom, normal
  with known variances when only two points exist) and a two-sided p-value against 0.
* :func:`onset` says from which swept value a check passes at that value and at every larger
  one in the grid ("the claim starts to hold at x"), or that it does not hold at the largest.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from metalab.core.checks import ALPHA


@dataclass(frozen=True)
class TrendFit:
    """A fitted line ``effect ~ intercept + slope * x'`` where ``x' = log10 x`` if ``log_x``.

    Attributes:
      slope: change of the effect per unit of ``x'`` (per decade when ``log_x``).
      ci: two-sided ``1 - alpha`` confidence interval of the slope (nan without one).
      p_value: two-sided p-value of slope = 0 (nan when it cannot be computed).
      p_toward: one-sided p-value of a slope toward the claim (nan if no direction given).
      intercept: the line's value at ``x' = 0``.
      n: points used; ``weighted``: inverse-variance weights from the points' CIs were used.
    """

    slope: float
    ci: tuple[float, float]
    p_value: float
    intercept: float
    n: int
    log_x: bool
    weighted: bool
    p_toward: float = math.nan

    @property
    def per(self) -> str:
        return "per decade" if self.log_x else "per unit"

    def describe(self, field: str) -> str:
        if not math.isfinite(self.slope):
            return f"no trend fitted ({self.n} point(s))"
        lo, hi = self.ci
        ci = "no CI" if not math.isfinite(lo) else f"CI [{lo:.3g}, {hi:.3g}]"
        p = "" if not math.isfinite(self.p_value) else f", p={self.p_value:.3g}"
        if math.isfinite(self.p_toward):
            p += f", one-sided p toward the claim {self.p_toward:.3g}"
        unit = f"per decade of {field}" if self.log_x else f"per unit of {field}"
        how = "weighted by the points' CIs" if self.weighted else "unweighted"
        return f"slope {self.slope:.3g} {unit} ({ci}{p}; {self.n} points, {how})"


def spans_decades(values: Sequence[float], ratio: float = 10.0) -> bool:
    """True if every value is positive and max/min >= ``ratio`` (then plot and fit on log10)."""
    v = np.asarray(values, dtype=np.float64)
    return bool(v.size > 1 and np.all(v > 0) and v.max() / v.min() >= ratio)


def se_from_ci(
    lo: Sequence[float], hi: Sequence[float], level: float | Sequence[float] = 1 - ALPHA
) -> np.ndarray:
    """Standard errors implied by two-sided intervals at ``level`` (nan where missing); a nan
    level is taken as ``1 - ALPHA``."""
    lv = np.asarray(level, np.float64)
    lv = np.where(np.isfinite(lv) & (lv > 0) & (lv < 1), lv, 1 - ALPHA)
    z = sps.norm.ppf(0.5 + lv / 2)
    return (np.asarray(hi, np.float64) - np.asarray(lo, np.float64)) / (2 * z)


def fit_trend(
    x: Sequence[float],
    y: Sequence[float],
    ci_lo: Sequence[float] | None = None,
    ci_hi: Sequence[float] | None = None,
    log_x: bool | None = None,
    ci_level: float | Sequence[float] = 1 - ALPHA,
    toward: int | None = None,
    alpha: float = ALPHA,
) -> TrendFit:
    """Fit ``y`` on ``x`` (or log10 x); see the module docstring for the weighting.

    ``ci_level``: the level of the points' intervals (one per point or one for all).
    ``toward``: +1 if larger values favour the claim, -1 if smaller do (then ``p_toward`` is
    the one-sided p-value of a slope in that direction), None if neither (e.g. equivalence).
    """
    xv = np.asarray(x, np.float64)
    yv = np.asarray(y, np.float64)
    if log_x is None:
        log_x = spans_decades(xv)
    keep = np.isfinite(xv) & np.isfinite(yv)
    if log_x:
        keep &= xv > 0
    se = None
    if ci_lo is not None and ci_hi is not None:
        se = se_from_ci(ci_lo, ci_hi, ci_level) * np.ones(np.shape(x))
    xv, yv = xv[keep], yv[keep]
    n = int(xv.size)
    nan = (math.nan, math.nan)
    if n < 2 or np.ptp(xv) == 0:
        return TrendFit(math.nan, nan, math.nan, math.nan, n, bool(log_x), False)
    xt = np.log10(xv) if log_x else xv
    weighted = False
    w = np.ones(n)
    if se is not None:
        s = se[keep]
        if np.all(np.isfinite(s)) and np.all(s > 0):
            w, weighted = 1.0 / s**2, True
    X = np.column_stack([np.ones(n), xt])
    xtwx = X.T @ (w[:, None] * X)
    beta = np.linalg.solve(xtwx, X.T @ (w * yv))
    resid = yv - X @ beta
    df = n - 2
    if df > 0:
        phi = float(np.sum(w * resid**2) / df)
        scale = max(1.0, phi) if weighted else phi
        q = sps.t.ppf(1 - alpha / 2, df)
        dist = sps.t(df)
    elif weighted:  # two points with known variances: a normal interval
        scale, q, dist = 1.0, sps.norm.ppf(1 - alpha / 2), sps.norm()
    else:
        return TrendFit(float(beta[1]), nan, math.nan, float(beta[0]), n, bool(log_x), False)
    cov = scale * np.linalg.inv(xtwx)
    se_slope = math.sqrt(max(float(cov[1, 1]), 0.0))
    slope = float(beta[1])
    p_toward = math.nan
    if se_slope == 0.0:
        p = 0.0 if slope != 0 else 1.0
        ci = (slope, slope)
        if toward:
            p_toward = 0.0 if slope * toward > 0 else 1.0
    else:
        p = float(2 * dist.sf(abs(slope) / se_slope))
        ci = (slope - q * se_slope, slope + q * se_slope)
        if toward:
            p_toward = float(dist.sf(toward * slope / se_slope))
    return TrendFit(slope, ci, p, float(beta[0]), n, bool(log_x), weighted, p_toward)


@dataclass(frozen=True)
class Onset:
    """Where a check starts to hold along the swept values.

    ``value`` is the smallest swept value from which the check passes at every larger value
    (None if it fails at the largest). ``first_pass`` is the smallest value at which it passes
    at all (None if nowhere); they differ when passes come and go along the grid.
    """

    value: float | None
    first_pass: float | None
    passes: int
    points: int

    def describe(self, field: str) -> str:
        if self.points == 0:
            return "no judged points"
        if self.value is None:
            if self.first_pass is None:
                return f"does not hold at any {field} tried"
            return (
                f"does not hold at the largest {field} tried "
                f"(passes at {self.passes} of {self.points} values, first at {self.first_pass:g})"
            )
        if self.passes == self.points:
            return f"holds at every {field} tried (from {self.value:g})"
        return f"holds from {field}={self.value:g} on"


def onset(x: Sequence[float], passed: Sequence[bool]) -> Onset:
    """The onset of a claim along ``x`` (points sharing an ``x`` must all pass)."""
    xv = np.asarray(x, np.float64)
    pv = np.asarray(passed, bool)
    levels = np.unique(xv[np.isfinite(xv)])
    ok = np.array([bool(pv[xv == lv].all()) for lv in levels], dtype=bool)
    if levels.size == 0:
        return Onset(None, None, 0, 0)
    first = float(levels[ok][0]) if ok.any() else None
    start = None
    for i in range(levels.size - 1, -1, -1):
        if not ok[i]:
            break
        start = float(levels[i])
    return Onset(start, first, int(ok.sum()), int(levels.size))
