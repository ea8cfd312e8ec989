"""The checks toolkit: every verdict in metalab is computed here, from declared rules.

An experiment declares its checks as data next to its claim, before any numbers exist::

    RULES = (
        Rule("BMG beats MG", "superiority", a="return/bmg", b="return/mg"),
        Rule("no-context MG gives no gain", "equivalence", a="ret/mg0", b="ret/base",
             margin=0.05),
    )

and its verdict calls :func:`judge` on the seed-stacked metrics (leading axis = seed). One
procedure per kind of claim, so that every experiment reports the same things:

* the declared rule, verbatim (:meth:`Rule.text`);
* the statistic and a confidence interval computed from the same data, with the same pairing,
  as the test (for a one-sided test at level ``ALPHA`` the interval is the two-sided
  ``1 - 2 ALPHA`` interval, whose bound on the tested side is the one-sided ``1 - ALPHA`` bound,
  so "p < ALPHA" and "the interval excludes the null" agree for the t-based procedures);
* the p-value, Holm-adjusted across the checks of one ``group``;
* an effect size and the **minimum detectable effect** (MDE): the smallest true effect, in the
  units of the statistic, that the test would detect with probability ``POWER`` at ``ALPHA``
  with the samples at hand. A check whose MDE exceeds the paper's effect cannot see the claim.

Kinds (``s`` is +1 for ``direction="greater"`` and -1 for ``"less"``; ``d = a - b``):

=================  =====================================================================
superiority        H0: s*delta <= margin      (a better than b by more than ``margin``)
non_inferiority    H0: s*delta <= -margin     (a not worse than b by ``margin`` or more)
equivalence        H0: |delta| >= margin      (two one-sided tests, TOST; ``margin`` > 0)
one_sample         H0: s*(a - margin) <= 0    (``margin`` is the reference value)
wins               per-problem means of a and b; H0: P(a better) <= 1/2; exact sign test
                   over problems (arrays ``[seeds, problems]``)
trend              slope of b on a (per seed, then across seeds); H0: s*slope <= margin
=================  =====================================================================

Tests: ``"t"`` (paired/one-sample t; Welch's t when ``paired=False``), ``"wilcoxon"``
(signed-rank; Mann-Whitney U when ``paired=False``; statistic the Hodges-Lehmann estimate with
its distribution-free interval), ``"sign"`` (exact binomial on the signs; statistic the fraction
of units in the tested direction, Clopper-Pearson interval). The rank tests' MDE is the t-test's
divided by sqrt(3/pi), their asymptotic relative efficiency under normality (stated, not exact).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy import stats as sps

__all__ = [
    "ALPHA",
    "POWER",
    "KINDS",
    "TESTS",
    "Rule",
    "judge",
    "evaluate",
    "holm_adjust",
    "rules_hash",
    "stack_seeds",
    "mde_t",
    "mde_sign",
]

ALPHA = 0.05
"""The one significance level of the project (one-sided tests use it on their side)."""
POWER = 0.8
"""The power at which minimum detectable effects are stated."""

KINDS = ("superiority", "non_inferiority", "equivalence", "one_sample", "wins", "trend")
TESTS = ("t", "wilcoxon", "sign")
DIRECTIONS = ("greater", "less")
TRANSFORMS = ("none", "log")
_RANK_ARE = math.sqrt(3.0 / math.pi)  # sqrt of the Wilcoxon/Mann-Whitney ARE under normality

# The imports below are deferred to keep `import metalab` light; Check lives with the
# experiment contract, which imports nothing from core.
_Check: Any = None


def _check_cls():
    global _Check
    if _Check is None:
        from metalab.experiments.base import Check

        _Check = Check
    return _Check


def _choice(field: str, value: Any, allowed: Sequence[Any]) -> None:
    if value not in allowed:
        raise ValueError(
            f"Rule.{field}: got {value!r}; allowed: {', '.join(repr(x) for x in allowed)}"
        )


@dataclass(frozen=True)
class Rule:
    """A declared check: which metrics are compared, how, and what passes.

    Attributes:
      name: short label, unique within an experiment (``"BMG beats MG"``).
      kind: one of :data:`KINDS` (see the module docstring for each null hypothesis).
      a: key of the first quantity in the data given to :func:`judge` (for ``trend``: the x
        values, shape ``[levels]`` or ``[seeds, levels]``).
      b: key of the second quantity (None for ``one_sample``; for ``trend``: the y values,
        shape ``[seeds, levels]``).
      test: ``"t"``, ``"wilcoxon"`` or ``"sign"``.
      paired: pair a and b by seed (paired tests) or not (Welch / Mann-Whitney).
      direction: ``"greater"`` (a larger is better / the slope is positive) or ``"less"``.
      margin: superiority: required advantage; non-inferiority/equivalence: the margin
        (> 0 for equivalence); one_sample: the reference value; trend: the slope to beat.
        In the transformed units when ``transform="log"``.
      transform: ``"none"`` or ``"log"`` (natural log of a and b before testing: ratios of
        regrets, iteration counts, ...). Values must then be positive.
      x_transform: for ``trend``, ``"log"`` regresses on log x.
      group: checks sharing a group are Holm-adjusted together (None: on its own).
      doc: the sentence of the paper this rule tests.
    """

    name: str
    kind: str
    a: str
    b: str | None = None
    test: str = "t"
    paired: bool = True
    direction: str = "greater"
    margin: float = 0.0
    transform: str = "none"
    x_transform: str = "none"
    group: str | None = None
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Rule.name: must be a non-empty string")
        _choice("kind", self.kind, KINDS)
        _choice("test", self.test, TESTS)
        _choice("direction", self.direction, DIRECTIONS)
        _choice("transform", self.transform, TRANSFORMS)
        _choice("x_transform", self.x_transform, TRANSFORMS)
        if not isinstance(self.margin, int | float) or not math.isfinite(self.margin):
            raise ValueError(f"Rule.margin: got {self.margin!r}; must be a finite number")
        needs_b = self.kind != "one_sample"
        if needs_b and not self.b:
            raise ValueError(f"Rule {self.name!r}: kind {self.kind!r} needs b (a data key)")
        if not needs_b and self.b:
            raise ValueError(f"Rule {self.name!r}: one_sample takes no b; use margin")
        if self.kind == "equivalence" and self.margin <= 0:
            raise ValueError(f"Rule {self.name!r}: equivalence needs margin > 0")
        if self.kind == "non_inferiority" and self.margin < 0:
            raise ValueError(f"Rule {self.name!r}: non_inferiority needs margin >= 0")
        if self.kind == "wins" and self.test != "sign":
            object.__setattr__(self, "test", "sign")  # wins are always a sign test
        if self.kind == "equivalence" and self.test == "sign":
            raise ValueError(f"Rule {self.name!r}: equivalence takes test 't' or 'wilcoxon'")
        if self.test == "sign" and not self.paired:
            raise ValueError(f"Rule {self.name!r}: the sign test is paired; set paired=True")

    # -- the rule in words -------------------------------------------------------------------
    def text(self) -> str:
        """The declared rule, verbatim, as the report prints it."""
        op = ">" if self.direction == "greater" else "<"
        f = (lambda k: f"log {k}") if self.transform == "log" else (lambda k: k)
        a, b = f(self.a), f(self.b) if self.b else ""
        test = _test_name(self)
        m = self.margin
        if self.kind == "superiority":
            lhs = f"{a} - {b}"
            body = f"{lhs} {op} {m:g}" if m else f"{a} {op} {b}"
        elif self.kind == "non_inferiority":
            worse = "-" if self.direction == "greater" else "+"
            body = f"{a} - {b} {op} {worse}{m:g} (not worse by {m:g} or more)"
        elif self.kind == "equivalence":
            body = f"|{a} - {b}| < {m:g} (two one-sided tests)"
        elif self.kind == "one_sample":
            body = f"{a} {op} {m:g}"
        elif self.kind == "wins":
            better = "higher" if self.direction == "greater" else "lower"
            body = f"{a} has a {better} per-problem mean than {b} on more than half the problems"
        else:  # trend
            x = f"log {self.a}" if self.x_transform == "log" else self.a
            body = f"slope of {f(self.b or '')} on {x} {op} {m:g}"
        holm = f", Holm across group '{self.group}'" if self.group else ""
        pairing = (
            ""
            if self.kind in ("one_sample", "wins", "trend")
            else (", paired by seed" if self.paired else ", unpaired")
        )
        return f"{self.kind}: {body}; {test}{pairing}; pass if p < {ALPHA:g}{holm}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rules_hash(rules: Sequence[Rule]) -> str:
    """A short stable hash of declared rules (stored with each verdict)."""
    blob = json.dumps([r.to_dict() for r in rules], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def stack_seeds(metrics: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Stack per-seed metric dicts into one dict of arrays with a leading seed axis."""
    if not metrics:
        raise ValueError("stack_seeds: no seeds to stack")
    keys = list(metrics[0])
    out = {}
    for k in keys:
        try:
            out[k] = np.stack([np.asarray(m[k]) for m in metrics])
        except KeyError:
            raise KeyError(f"stack_seeds: metric {k!r} is missing from some seeds") from None
        except ValueError as e:
            raise ValueError(
                f"stack_seeds: metric {k!r} has different shapes across seeds: {e}"
            ) from None
    return out


# -- power ------------------------------------------------------------------------------------
def mde_t(n: int, sd: float, *, two_sample_n2: int | None = None, tails: int = 1) -> float:
    """Minimum detectable difference of a t-test at ``ALPHA`` with power ``POWER``.

    One-sample/paired (``two_sample_n2=None``): ``d * sd`` where ``d`` solves the power
    equation of statsmodels' ``TTestPower``; two-sample: ``TTestIndPower`` with the pooled sd.
    ``tails=2`` uses the two-sided level (for equivalence margins). Returns nan if n < 2.
    """
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if n < 2 or (two_sample_n2 is not None and two_sample_n2 < 2) or not np.isfinite(sd):
        return math.nan
    if sd == 0:
        return 0.0
    alt = "larger" if tails == 1 else "two-sided"
    if two_sample_n2 is None:
        d = TTestPower().solve_power(nobs=n, alpha=ALPHA, power=POWER, alternative=alt)
    else:
        d = TTestIndPower().solve_power(
            nobs1=n, ratio=two_sample_n2 / n, alpha=ALPHA, power=POWER, alternative=alt
        )
    return float(np.asarray(d).item() * sd)


def mde_sign(n: int) -> float:
    """Smallest true success fraction an exact one-sided sign test over ``n`` units detects
    with power ``POWER`` at ``ALPHA`` (inf if no outcome of ``n`` units can reach ``ALPHA``)."""
    if n < 1:
        return math.inf
    # smallest k with P(X >= k | 1/2) <= ALPHA
    ks = np.arange(n + 1)
    tail = sps.binom.sf(ks - 1, n, 0.5)
    ok = ks[tail <= ALPHA]
    if ok.size == 0:
        return math.inf
    k = int(ok[0])
    lo, hi = 0.5, 1.0
    if sps.binom.sf(k - 1, n, hi) < POWER:
        return math.inf
    for _ in range(60):
        mid = (lo + hi) / 2
        if sps.binom.sf(k - 1, n, mid) >= POWER:
            hi = mid
        else:
            lo = mid
    return hi


def _tmde_equiv(se: float, df: float) -> float:
    """Smallest equivalence margin TOST accepts with power POWER when the truth is 0."""
    if not (np.isfinite(se) and df > 0):
        return math.nan
    return float((sps.t.ppf(1 - ALPHA, df) + sps.t.ppf(1 - (1 - POWER) / 2, df)) * se)


# -- small estimators ---------------------------------------------------------------------------
def _t_ci(x: np.ndarray, level: float) -> tuple[float, float]:
    n = x.size
    if n < 2:
        return (math.nan, math.nan)
    m, se = float(x.mean()), float(x.std(ddof=1) / math.sqrt(n))
    if se == 0:
        return (m, m)
    h = float(sps.t.ppf(0.5 + level / 2, n - 1) * se)
    return (m - h, m + h)


def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Standard error and Welch-Satterthwaite degrees of freedom of mean(a) - mean(b)."""
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return 0.0, float(a.size + b.size - 2)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return se, float(df)


def _signed_rank_null_cdf(n: int) -> np.ndarray:
    """Exact null CDF of the signed-rank statistic T+ for n units (counts of subset sums)."""
    top = n * (n + 1) // 2
    counts = np.zeros(top + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[: top + 1 - r].copy()
    return np.cumsum(counts) / 2.0**n


def _hl_one(d: np.ndarray, level: float) -> tuple[float, tuple[float, float]]:
    """Hodges-Lehmann pseudo-median of ``d`` and its signed-rank interval (Walsh averages)."""
    i, j = np.triu_indices(d.size)
    w = np.sort((d[i] + d[j]) / 2.0)
    est = float(np.median(w))
    tail = (1 - level) / 2
    if d.size > 60:
        n = d.size
        mu, sd = n * (n + 1) / 4, math.sqrt(n * (n + 1) * (2 * n + 1) / 24)
        k = int(math.floor(mu - sps.norm.ppf(1 - tail) * sd))
    else:
        cdf = _signed_rank_null_cdf(d.size)
        # largest k with P(T+ <= k - 1) <= tail; the interval is [w_(k), w_(M-k+1)] (1-based)
        ks = np.nonzero(cdf <= tail + 1e-12)[0]
        k = int(ks[-1]) + 1 if ks.size else 0
    if k < 1:
        return est, (-math.inf, math.inf)
    return est, (float(w[k - 1]), float(w[w.size - k]))


def _hl_two(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, tuple[float, float]]:
    """Hodges-Lehmann shift (median of a_i - b_j) and its Mann-Whitney interval (normal
    approximation to the U quantile)."""
    diffs = np.sort((a[:, None] - b[None, :]).ravel())
    est = float(np.median(diffs))
    n, m = a.size, b.size
    tail = (1 - level) / 2
    k = int(math.floor(n * m / 2 - sps.norm.ppf(1 - tail) * math.sqrt(n * m * (n + m + 1) / 12)))
    if k < 1:
        return est, (-math.inf, math.inf)
    return est, (float(diffs[k - 1]), float(diffs[diffs.size - k]))


def _binom_ci(k: int, n: int, level: float) -> tuple[float, float]:
    if n == 0:
        return (math.nan, math.nan)
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return (float(ci.low), float(ci.high))


def _rank_biserial(d: np.ndarray) -> float:
    nz = d[d != 0]
    if nz.size == 0:
        return 0.0
    r = sps.rankdata(np.abs(nz))
    return float((r[nz > 0].sum() - r[nz < 0].sum()) / r.sum())


def _one_sided_p(x: np.ndarray, test: str) -> float:
    """p of H0: location(x) <= 0 against > 0, for the one-sample versions of the tests."""
    if test == "t":
        if x.size < 2:
            return math.nan
        if np.allclose(x, x[0]):
            # Zero variance (every seed gave the same value, e.g. all runs at a score ceiling):
            # the t statistic is undefined, so the rule cannot pass on it. Returning 0 here would
            # let a non-inferiority rule pass on exact ties, which are no evidence at all.
            return math.nan
        return float(sps.ttest_1samp(x, 0.0, alternative="greater").pvalue)
    if test == "wilcoxon":
        nz = x[x != 0]
        if nz.size == 0:
            return 1.0
        return float(sps.wilcoxon(nz, alternative="greater").pvalue)
    nz = x[x != 0]
    if nz.size == 0:
        return 1.0
    return float(sps.binomtest(int((nz > 0).sum()), nz.size, 0.5, alternative="greater").pvalue)


def _two_sample_p(x: np.ndarray, y: np.ndarray, test: str) -> float:
    """p of H0: location(x) <= location(y) against >, unpaired."""
    if test == "t":
        if x.size < 2 or y.size < 2:
            return math.nan
        if np.allclose(x, x[0]) and np.allclose(y, y[0]):
            return math.nan  # zero variance in both groups: undefined (see _one_sided_p)
        return float(sps.ttest_ind(x, y, equal_var=False, alternative="greater").pvalue)
    return float(sps.mannwhitneyu(x, y, alternative="greater").pvalue)


def _test_name(rule: Rule) -> str:
    if rule.kind == "wins":
        return "exact sign test over problems, one-sided"
    if rule.kind == "trend":
        base = {"t": "one-sample t-test", "wilcoxon": "Wilcoxon signed-rank", "sign": "sign test"}
        return f"per-seed OLS slopes, {base[rule.test]}, one-sided"
    if rule.kind == "equivalence":
        return "TOST, " + (
            "paired t"
            if rule.paired and rule.test == "t"
            else "Welch t"
            if rule.test == "t"
            else "Wilcoxon signed-rank"
            if rule.paired
            else "Mann-Whitney U"
        )
    if rule.kind == "one_sample":
        return {
            "t": "one-sample t-test",
            "wilcoxon": "Wilcoxon signed-rank",
            "sign": "exact sign test",
        }[rule.test] + ", one-sided"
    if rule.test == "t":
        return ("paired t-test" if rule.paired else "Welch t-test") + ", one-sided"
    if rule.test == "wilcoxon":
        return ("Wilcoxon signed-rank" if rule.paired else "Mann-Whitney U") + ", one-sided"
    return "exact sign test, one-sided"


# -- the evaluation of one rule -------------------------------------------------------------------
def _values(rule: Rule, data: Mapping[str, Any], key: str, *, per_seed: bool) -> np.ndarray:
    if key not in data:
        avail = ", ".join(sorted(data)) or "(none)"
        raise KeyError(f"rule {rule.name!r}: data has no key {key!r}; available: {avail}")
    x = np.asarray(data[key], dtype=np.float64)
    if per_seed:
        x = x.reshape(x.shape[0]) if x.ndim > 1 and x.size == x.shape[0] else x
        if x.ndim != 1:
            raise ValueError(
                f"rule {rule.name!r}: {key!r} must hold one value per seed (shape [seeds]); "
                f"got shape {x.shape}. Reduce it to a per-seed scalar before judging."
            )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"rule {rule.name!r}: {key!r} holds non-finite values")
    return x


def _tx(rule: Rule, key: str, x: np.ndarray, how: str) -> np.ndarray:
    if how == "log":
        if np.any(x <= 0):
            raise ValueError(
                f"rule {rule.name!r}: transform 'log' needs positive values; {key!r} has "
                f"min {x.min():g}"
            )
        return np.log(x)
    return x


def _build(
    check: Any,
    rule: Rule,
    *,
    statistic: str,
    value: float,
    p: float,
    ci: tuple[float, float],
    effect: float,
    effect_name: str,
    mde: float,
    n: int,
    level: float,
    threshold: str | None = None,
):
    """One ``Check`` for ``rule``: passes iff p < ALPHA (before Holm, see :func:`holm_adjust`)."""
    p = float(p)
    threshold = threshold or f"p < {ALPHA:g}"
    if not np.isfinite(p):
        threshold += " (p undefined: too few seeds, or zero variance; not passed)"
    return check(
        name=rule.name,
        statistic=statistic,
        value=float(value),
        passed=bool(np.isfinite(p) and p < ALPHA),
        threshold=threshold,
        p_value=p,
        effect_size=float(effect),
        ci=(float(ci[0]), float(ci[1])),
        test=_test_name(rule),
        rule=rule.text(),
        p_adjusted=p,
        mde=float(mde),
        n=int(n),
        ci_level=float(level),
        group=rule.group or "",
        effect_name=effect_name,
    )


def evaluate(rule: Rule, data: Mapping[str, Any]):
    """Compute one declared rule on seed-stacked data; returns a ``Check`` (no Holm)."""
    check = _check_cls()
    if rule.kind == "wins":
        return _wins(rule, data, check)
    if rule.kind == "trend":
        return _trend(rule, data, check)
    a = _tx(rule, rule.a, _values(rule, data, rule.a, per_seed=True), rule.transform)
    b = None
    if rule.b:
        b = _tx(rule, rule.b, _values(rule, data, rule.b, per_seed=True), rule.transform)
        if rule.paired and a.shape != b.shape:
            raise ValueError(
                f"rule {rule.name!r}: paired test needs {rule.a!r} and {rule.b!r} of the same "
                f"length; got {a.size} and {b.size}"
            )
    if rule.kind == "equivalence":
        return _equivalence(rule, a, b, check)
    return _directional(rule, a, b, check)


def _directional(rule: Rule, a: np.ndarray, b: np.ndarray | None, check):
    s = 1.0 if rule.direction == "greater" else -1.0
    level = 1 - 2 * ALPHA
    if rule.kind == "one_sample":
        shift, d, what = rule.margin, a, f"{rule.a}"
        x = s * (a - rule.margin)
        paired = True
    else:
        shift = rule.margin if rule.kind == "superiority" else -rule.margin
        paired = rule.paired
        d = a - b if paired else None
        what = f"{rule.a} - {rule.b}"
        x = s * d - shift if paired else None

    if paired:
        n = a.size
        if rule.test == "t":
            p = _one_sided_p(x, "t")
            stat_name, value = f"mean of {what}", float(d.mean())
            ci = _t_ci(d, level)
            sd = float(d.std(ddof=1)) if n > 1 else math.nan
            eff_name = "d_z" if rule.kind != "one_sample" else "Cohen's d"
            eff = (
                float((d.mean() - (rule.margin if rule.kind == "one_sample" else 0)) / sd)
                if (n > 1 and sd > 0)
                else math.nan
            )
            mde = mde_t(n, sd)
        elif rule.test == "wilcoxon":
            p = _one_sided_p(x, "wilcoxon")
            value, ci = _hl_one(d, level)
            stat_name = f"Hodges-Lehmann estimate of {what}"
            eff_name, eff = "rank-biserial r", s * _rank_biserial(x)
            sd = float(d.std(ddof=1)) if n > 1 else math.nan
            mde = mde_t(n, sd) / _RANK_ARE
        else:
            nz = x[x != 0]
            k = int((nz > 0).sum())
            p = _one_sided_p(x, "sign")
            value = k / nz.size if nz.size else math.nan
            stat_name = f"fraction of seeds with {what} in the tested direction (ties dropped)"
            ci = _binom_ci(k, nz.size, level)
            eff_name, eff = "median difference", float(np.median(d))
            mde = mde_sign(nz.size)
            n = int(nz.size)
    else:
        n = a.size + b.size
        xa, xb = s * a - shift, s * b
        p = _two_sample_p(xa, xb, rule.test)
        if rule.test == "t":
            value = float(a.mean() - b.mean())
            stat_name = f"difference of means, {what}"
            if a.size > 1 and b.size > 1:
                se, df = _welch(a, b)
                h = float(sps.t.ppf(0.5 + level / 2, df) * se) if se > 0 else 0.0
                ci = (value - h, value + h)
                pooled = math.sqrt(
                    (a.var(ddof=1) * (a.size - 1) + b.var(ddof=1) * (b.size - 1))
                    / (a.size + b.size - 2)
                )
                eff = value / pooled if pooled > 0 else math.nan
                mde = mde_t(a.size, pooled, two_sample_n2=b.size)
            else:
                ci, eff, mde = (math.nan, math.nan), math.nan, math.nan
            eff_name = "Cohen's d"
        else:
            value, ci = _hl_two(a, b, level)
            stat_name = f"Hodges-Lehmann shift, {what}"
            u = sps.mannwhitneyu(xa, xb, alternative="greater").statistic
            eff_name, eff = "P(a better than b)", float(u / (a.size * b.size))
            if a.size > 1 and b.size > 1:
                pooled = math.sqrt(
                    (a.var(ddof=1) * (a.size - 1) + b.var(ddof=1) * (b.size - 1))
                    / (a.size + b.size - 2)
                )
                mde = mde_t(a.size, pooled, two_sample_n2=b.size) / _RANK_ARE
            else:
                mde = math.nan
    return _build(
        check,
        rule,
        statistic=stat_name,
        value=value,
        p=p,
        ci=ci,
        effect=eff,
        effect_name=eff_name,
        mde=mde,
        n=n,
        level=level,
    )


def _equivalence(rule: Rule, a: np.ndarray, b: np.ndarray, check):
    m = rule.margin
    level = 1 - 2 * ALPHA
    if rule.paired:
        d = a - b
        n = d.size
        if rule.test == "t":
            p = max(_one_sided_p(d + m, "t"), _one_sided_p(m - d, "t"))
            value, ci = float(d.mean()), _t_ci(d, level)
            sd = float(d.std(ddof=1)) if n > 1 else math.nan
            eff_name = "d_z"
            eff = value / sd if n > 1 and sd > 0 else math.nan
            mde = _tmde_equiv(sd / math.sqrt(n), n - 1) if n > 1 else math.nan
        else:
            p = max(_one_sided_p(d + m, "wilcoxon"), _one_sided_p(m - d, "wilcoxon"))
            value, ci = _hl_one(d, level)
            eff_name, eff = "rank-biserial r", _rank_biserial(d)
            sd = float(d.std(ddof=1)) if n > 1 else math.nan
            mde = _tmde_equiv(sd / math.sqrt(n), n - 1) / _RANK_ARE if n > 1 else math.nan
        what = (
            f"mean of {rule.a} - {rule.b}"
            if rule.test == "t"
            else (f"Hodges-Lehmann estimate of {rule.a} - {rule.b}")
        )
    else:
        n = a.size + b.size
        if rule.test == "t":
            p = max(_two_sample_p(a + m, b, "t"), _two_sample_p(b, a - m, "t"))
            value = float(a.mean() - b.mean())
            se, df = _welch(a, b) if a.size > 1 and b.size > 1 else (math.nan, 0.0)
            h = float(sps.t.ppf(0.5 + level / 2, df) * se) if df > 0 else math.nan
            ci = (value - h, value + h)
            eff_name, eff = "difference of means", value
            mde = _tmde_equiv(se, df)
            what = f"difference of means, {rule.a} - {rule.b}"
        else:
            p = max(_two_sample_p(a + m, b, "wilcoxon"), _two_sample_p(b, a - m, "wilcoxon"))
            value, ci = _hl_two(a, b, level)
            eff_name, eff = "Hodges-Lehmann shift", value
            se, df = _welch(a, b) if a.size > 1 and b.size > 1 else (math.nan, 0.0)
            mde = _tmde_equiv(se, df) / _RANK_ARE
            what = f"Hodges-Lehmann shift, {rule.a} - {rule.b}"
    return _build(
        check,
        rule,
        statistic=what,
        value=value,
        p=p,
        ci=ci,
        effect=eff,
        effect_name=eff_name,
        mde=mde,
        n=n,
        level=level,
        threshold=f"p < {ALPHA:g} (interval inside ±{m:g})",
    )


def _wins(rule: Rule, data: Mapping[str, Any], check):
    a = _tx(rule, rule.a, _values(rule, data, rule.a, per_seed=False), rule.transform)
    b = _tx(rule, rule.b, _values(rule, data, rule.b, per_seed=False), rule.transform)
    if a.shape != b.shape:
        raise ValueError(
            f"rule {rule.name!r}: {rule.a!r} and {rule.b!r} must have the same shape "
            f"[seeds, problems]; got {a.shape} and {b.shape}"
        )
    if a.ndim == 1:
        a, b = a[None], b[None]
    if a.ndim != 2:
        raise ValueError(
            f"rule {rule.name!r}: wins needs arrays of shape [seeds, problems]; got {a.shape}"
        )
    s = 1.0 if rule.direction == "greater" else -1.0
    diff = s * (a.mean(axis=0) - b.mean(axis=0)) - rule.margin
    nz = diff[diff != 0]
    k, n = int((nz > 0).sum()), int(nz.size)
    p = float(sps.binomtest(k, n, 0.5, alternative="greater").pvalue) if n else 1.0
    level = 1 - 2 * ALPHA
    return _build(
        check,
        rule,
        statistic=f"fraction of problems won ({k} of {n}, ties dropped)",
        value=k / n if n else math.nan,
        p=p,
        ci=_binom_ci(k, n, level),
        effect=float(np.median(s * (a.mean(axis=0) - b.mean(axis=0)))),
        effect_name="median per-problem advantage" + (" (log)" if rule.transform == "log" else ""),
        mde=mde_sign(n),
        n=n,
        level=level,
    )


def _trend(rule: Rule, data: Mapping[str, Any], check):
    x = _tx(rule, rule.a, _values(rule, data, rule.a, per_seed=False), rule.x_transform)
    y = _tx(rule, rule.b, _values(rule, data, rule.b, per_seed=False), rule.transform)
    if y.ndim == 1:
        y = y[None]
    if x.ndim == 2:
        if not np.allclose(x, x[:1]):
            raise ValueError(f"rule {rule.name!r}: the x values {rule.a!r} differ across seeds")
        x = x[0]
    if y.ndim != 2 or y.shape[1] != x.size or x.size < 2:
        raise ValueError(
            f"rule {rule.name!r}: trend needs x of shape [levels] (levels >= 2) and y of shape "
            f"[seeds, levels]; got {x.shape} and {y.shape}"
        )
    if np.allclose(x, x[0]):
        raise ValueError(f"rule {rule.name!r}: the x values {rule.a!r} are all equal")
    xc = x - x.mean()
    slopes = (y - y.mean(axis=1, keepdims=True)) @ xc / float(xc @ xc)
    s = 1.0 if rule.direction == "greater" else -1.0
    level = 1 - 2 * ALPHA
    n = slopes.size
    if n >= 2:
        z = s * (slopes - rule.margin)
        p = _one_sided_p(z, rule.test)
        if rule.test == "wilcoxon":
            value, ci = _hl_one(slopes, level)
        else:
            value, ci = float(slopes.mean()), _t_ci(slopes, level)
        sd = float(slopes.std(ddof=1))
        mde = mde_t(n, sd) / (_RANK_ARE if rule.test == "wilcoxon" else 1.0)
        if rule.test == "sign":
            nz = z[z != 0]
            mde = mde_sign(nz.size)
        eff = float((slopes.mean() - rule.margin) / sd) if sd > 0 else math.nan
        eff_name = "mean slope / sd of slopes"
    else:  # one seed: ordinary least squares over levels
        r = sps.linregress(x, y[0])
        df = x.size - 2
        value = float(r.slope)
        if df > 0 and r.stderr > 0:
            tstat = s * (r.slope - rule.margin) / r.stderr
            p = float(sps.t.sf(tstat, df))
            h = float(sps.t.ppf(0.5 + level / 2, df) * r.stderr)
            mde = float((sps.t.ppf(1 - ALPHA, df) + sps.t.ppf(POWER, df)) * r.stderr)
        else:
            p, h, mde = math.nan, math.nan, math.nan
        ci = (value - h, value + h)
        eff, eff_name, n = float(r.rvalue), "Pearson r", x.size
    return _build(
        check,
        rule,
        statistic="slope per unit of " + ("log " if rule.x_transform == "log" else "") + rule.a,
        value=value,
        p=p,
        ci=ci,
        effect=eff,
        effect_name=eff_name,
        mde=mde,
        n=n,
        level=level,
    )


def holm_adjust(checks: Sequence[Any]) -> tuple[Any, ...]:
    """Holm-adjust the p-values of checks that share a non-empty ``group``; a check passes iff
    its adjusted p is below ``ALPHA``. Order is kept."""
    from statsmodels.stats.multitest import multipletests

    out = list(checks)
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(out):
        if c.group:
            groups.setdefault(c.group, []).append(i)
    for idx in groups.values():
        ps = np.array([out[i].p_value for i in idx], dtype=float)
        # An undefined p still counts in the family size (as p = 1): dropping it would make the
        # other members easier to pass. Its adjusted p stays undefined.
        finite = np.isfinite(ps)
        adj = multipletests(np.where(finite, ps, 1.0), method="holm")[1]
        adj[~finite] = math.nan
        for i, pa in zip(idx, adj, strict=True):
            out[i] = replace(
                out[i], p_adjusted=float(pa), passed=bool(np.isfinite(pa) and pa < ALPHA)
            )
    return tuple(out)


def judge(rules: Sequence[Rule], data: Mapping[str, Any]) -> tuple[Any, ...]:
    """Evaluate declared rules on seed-stacked data: one ``Check`` per rule, in order, with Holm
    applied within each group. ``data`` maps keys to arrays whose leading axis is the seed."""
    names = [r.name for r in rules]
    if len(set(names)) != len(names):
        raise ValueError(f"judge: rule names must be unique; got {names}")
    return holm_adjust([evaluate(r, data) for r in rules])
