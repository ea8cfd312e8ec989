"""Transfer analysis: factorial ANOVA with effect sizes, transfer ratios, sign tests.

Reference: Rusu et al. (2022), *Probing Transfer in Deep RL without Task Engineering*
(arXiv:2210.12448): the score of an agent on each game variant is the response; the game's
factors of variation (mode switches, difficulty switch) are categorical explanatory
variables; seeds are replicates. ANOVA partitions the variance into main effects and
interactions, each with an F-test and effect sizes

    eta^2_j          = SS_j / SS_total
    partial eta^2_j  = SS_j / (SS_j + SS_residual)

(computed by :func:`metalab.core.stats.anova`, statsmodels OLS + ``anova_lm``).

Transfer measures (higher = better transfer; all scores are "higher is better"):

    transfer ratio          rho_v = (s_transfer(v) - s_ref0(v)) / (s_scratch(v) - s_ref0(v))
    normalised score        z_v   = (s(v) - s_random(v)) / (s_expert - s_random(v))
    positive transfer in v  s_finetune(v) > s_scratch(v)

with ``s_ref0 = 0`` unless a random-policy baseline is given. A sign test over variants
(exact binomial, H1: P(finetune > scratch) > 1/2) tests "positive transfer in a majority".
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass

import numpy as np

from metalab.core.stats import anova, holm, sign_test


def anova_formula(response: str, factors: list[str], order: int = 2) -> str:
    """Patsy formula with categorical main effects and interactions up to ``order``.

    ``order=1``: main effects only; ``order=len(factors)``: the full factorial.
    """
    if not factors:
        raise ValueError("anova_formula needs at least one factor")
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    terms = []
    for r in range(1, min(order, len(factors)) + 1):
        for combo in itertools.combinations(factors, r):
            terms.append(":".join(f"C({f})" for f in combo))
    return f"{response} ~ " + " + ".join(terms)


def factor_anova(df, response: str, factors: list[str], order: int = 2, typ: int = 2):
    """ANOVA of ``response`` on the categorical ``factors`` of a long DataFrame.

    Factors with a single level in ``df`` are dropped (they explain nothing). Returns the
    statsmodels table (``sum_sq, df, F, PR(>F), eta_sq, partial_eta_sq``) with an added
    ``order`` column (1 = main effect, 2 = two-way interaction, ...) and ``p_holm``: Holm-
    adjusted p-values within each order (NaN for the residual row).

    Raises:
      ValueError: no factor varies, or a factor is missing from ``df``.
    """
    missing = [f for f in factors if f not in df.columns]
    if missing:
        raise ValueError(f"factors {missing} not in the data; columns: {list(df.columns)}")
    used = [f for f in factors if df[f].nunique() > 1]
    if not used:
        raise ValueError("no factor takes more than one level; nothing to analyse")
    with warnings.catch_warnings():  # zero-variance cells make statsmodels warn; NaN p stays
        warnings.simplefilter("ignore")
        table = anova(df, anova_formula(response, used, order), typ=typ)
    table["order"] = [0 if i == "Residual" else i.count(":") + 1 for i in table.index]
    table["p_holm"] = np.nan
    for o in sorted(set(table["order"]) - {0}):
        rows = (table["order"] == o) & table["PR(>F)"].notna()
        if rows.any():
            table.loc[rows, "p_holm"] = holm(table.loc[rows, "PR(>F)"].to_numpy())
    return table


@dataclass(frozen=True)
class EffectSummary:
    """The strongest term of one order in an ANOVA table."""

    term: str
    p_value: float
    p_holm: float
    eta_sq: float
    partial_eta_sq: float
    n_significant: int
    n_terms: int


def strongest_term(table, order: int, alpha: float = 0.05) -> EffectSummary:
    """The term of ``order`` with the smallest Holm-adjusted p-value (ties: largest eta^2).

    ``n_significant`` counts terms of that order with ``p_holm < alpha``.
    """
    rows = table[(table["order"] == order) & table["PR(>F)"].notna()]
    if rows.empty:
        return EffectSummary("", math.nan, math.nan, math.nan, math.nan, 0, 0)
    rows = rows.sort_values(["p_holm", "eta_sq"], ascending=[True, False])
    best = rows.iloc[0]
    return EffectSummary(
        term=str(rows.index[0]),
        p_value=float(best["PR(>F)"]),
        p_holm=float(best["p_holm"]),
        eta_sq=float(best["eta_sq"]),
        partial_eta_sq=float(best["partial_eta_sq"]),
        n_significant=int((rows["p_holm"] < alpha).sum()),
        n_terms=len(rows),
    )


def excess_partial_eta_sq(df, response: str, factors: list[str], order: int) -> float:
    """Partial eta^2 of the order-``order`` terms beyond what chance gives, for one replicate.

    Fits ``response`` on the factors' terms up to ``order`` (sequential sums of squares, so
    the order-``order`` terms are measured after the lower-order ones) and returns

        partial eta^2 - median(Beta(df_t / 2, df_res / 2)),  partial eta^2 = SS_t / (SS_t + SS_res),

    where ``t`` pools every term of that order. Under the null of no such effects (and i.i.d.
    normal errors) partial eta^2 ~ Beta(df_t / 2, df_res / 2), so the excess is positive with
    probability exactly 1/2: an exact sign test of the excess over independent replicates
    (seeds) tests "these factor terms explain more of the response than chance". (The median,
    not the mean: with few residual degrees of freedom the null is very skewed, and a t-test on
    the excess over the mean rejects far too often.)

    Raises:
      ValueError: no residual degrees of freedom left, or no term of that order.
    """
    import statsmodels.api as sm
    from statsmodels.formula.api import ols

    used = [f for f in factors if df[f].nunique() > 1]
    if not used:
        raise ValueError("no factor takes more than one level; nothing to analyse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ols(anova_formula(response, used, order), data=df).fit()
        table = sm.stats.anova_lm(fit, typ=1)
    orders = np.array([0 if i == "Residual" else i.count(":") + 1 for i in table.index])
    rows = orders == order
    if not rows.any():
        raise ValueError(f"no term of order {order} among factors {used}")
    df_t, ss_t = float(table["df"][rows].sum()), float(table["sum_sq"][rows].sum())
    df_res, ss_res = float(table.loc["Residual", "df"]), float(table.loc["Residual", "sum_sq"])
    if df_res < 1:
        raise ValueError(
            f"no residual degrees of freedom for order {order} with {len(df)} rows and factors "
            f"{used}: lower the order or add variants"
        )
    from scipy.stats import beta as beta_dist

    total = ss_t + ss_res
    eta = ss_t / total if total > 0 else 0.0
    return float(eta - beta_dist.median(df_t / 2.0, df_res / 2.0))


def transfer_ratio(transfer, scratch, baseline=None, eps: float = 1e-8) -> np.ndarray:
    """``(transfer - baseline) / (scratch - baseline)`` elementwise (baseline 0 if None).

    A ratio > 1 means the transferred agent beats learning from scratch. Denominators with
    ``|scratch - baseline| < eps`` are replaced by ``eps`` with the sign kept (+ for 0).
    """
    t = np.asarray(transfer, np.float64)
    s = np.asarray(scratch, np.float64)
    b = np.zeros_like(s) if baseline is None else np.asarray(baseline, np.float64)
    den = s - b
    den = np.where(np.abs(den) < eps, np.where(den < 0, -eps, eps), den)
    return (t - b) / den


def normalised_score(score, random, expert, eps: float = 1e-8) -> np.ndarray:
    """``(score - random) / (expert - random)``: 0 = random policy, 1 = the expert's score."""
    s, r, e = (np.asarray(x, np.float64) for x in (score, random, expert))
    den = e - r
    den = np.where(np.abs(den) < eps, np.where(den < 0, -eps, eps), den)
    return (s - r) / den


@dataclass(frozen=True)
class SignTestResult:
    """Wins of ``a`` over ``b`` across units, ties dropped, and the one-sided binomial p."""

    wins: int
    losses: int
    ties: int
    p_value: float

    @property
    def n(self) -> int:
        return self.wins + self.losses

    @property
    def win_fraction(self) -> float:
        return self.wins / self.n if self.n else math.nan


def majority_sign_test(a, b) -> SignTestResult:
    """Exact sign test of ``a > b`` over paired units (e.g. variants), ties dropped.

    H0: P(a > b) = 1/2; H1: P(a > b) > 1/2 (one-sided). p = 1 if every pair ties.
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    ties = int(d.size - wins - losses)
    p = sign_test(wins, wins + losses) if wins + losses else 1.0
    return SignTestResult(wins, losses, ties, p)
