"""Trend and onset detection of sweeps on synthetic data (reference: scipy / statsmodels)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats as sps

from metalab.core.checks import ALPHA
from metalab.lab.sweep_trend import fit_trend, onset, se_from_ci, spans_decades


def test_unweighted_fit_matches_linregress():
    x = np.array([1.0, 2.0, 3.0, 5.0, 8.0])
    y = np.array([0.1, 0.5, 0.4, 1.2, 1.9])
    t = fit_trend(x, y, log_x=False)
    r = sps.linregress(x, y)
    h = r.stderr * sps.t.ppf(1 - ALPHA / 2, x.size - 2)
    assert t.slope == pytest.approx(r.slope)
    assert t.ci == pytest.approx((r.slope - h, r.slope + h))
    assert t.p_value == pytest.approx(r.pvalue)
    assert not t.weighted and not t.log_x


def test_weighted_fit_matches_statsmodels_wls_when_points_scatter_more_than_their_cis():
    x = np.array([10.0, 100.0, 1000.0, 10000.0])
    y = np.array([0.0, 1.5, 1.0, 3.5])  # scatter >> the CIs below: dispersion > 1
    se = np.array([0.1, 0.2, 0.1, 0.3])
    z = sps.norm.ppf(1 - ALPHA / 2)
    t = fit_trend(x, y, y - z * se, y + z * se)
    assert t.log_x and t.weighted
    fit = sm.WLS(y, sm.add_constant(np.log10(x)), weights=1 / se**2).fit()
    assert t.slope == pytest.approx(fit.params[1])
    lo, hi = fit.conf_int(ALPHA)[1]
    assert t.ci == pytest.approx((lo, hi))


def test_weighted_fit_floors_the_dispersion_at_the_seed_noise():
    # Points exactly on a line: residual scatter 0, so the slope's CI comes from the points'
    # CIs alone (known variances), never narrower.
    x = np.array([1.0, 2.0, 3.0, 4.0])
    y = 0.5 * x
    se = np.full(4, 0.2)
    z = sps.norm.ppf(1 - ALPHA / 2)
    t = fit_trend(x, y, y - z * se, y + z * se, log_x=False)
    X = np.column_stack([np.ones(4), x])
    se_slope = math.sqrt(np.linalg.inv(X.T @ (X / 0.04))[1, 1])
    q = sps.t.ppf(1 - ALPHA / 2, 2)
    assert t.slope == pytest.approx(0.5)
    assert t.ci == pytest.approx((0.5 - q * se_slope, 0.5 + q * se_slope))


def test_two_points_with_cis_give_a_normal_interval():
    z = sps.norm.ppf(1 - ALPHA / 2)
    t = fit_trend([1.0, 2.0], [0.0, 1.0], [-0.1 * z, 1 - 0.1 * z], [0.1 * z, 1 + 0.1 * z])
    half = z * math.sqrt(0.01 + 0.01)
    assert t.ci == pytest.approx((1 - half, 1 + half))
    assert math.isnan(fit_trend([1.0, 2.0], [0.0, 1.0]).ci[0])  # no CIs: no interval


def test_ci_level_of_one_sided_checks_is_respected():
    # A 90% interval (one-sided checks) implies a larger se than the same width at 95%.
    se90 = se_from_ci([0.0], [1.0], 0.9)[0]
    se95 = se_from_ci([0.0], [1.0], 0.95)[0]
    assert se90 == pytest.approx(1 / (2 * sps.norm.ppf(0.95)))
    assert se90 > se95


def test_detects_a_growing_effect_and_not_a_flat_one():
    rng = np.random.default_rng(0)
    x = np.array([1, 3, 10, 30, 100, 300, 1000], float)
    se = np.full(x.size, 0.1)
    z = sps.norm.ppf(1 - ALPHA / 2)
    grow = 0.4 * np.log10(x) + rng.normal(0, 0.1, x.size)
    t = fit_trend(x, grow, grow - z * se, grow + z * se, toward=1)
    assert t.log_x and t.ci[0] > 0 and t.ci[0] < 0.4 < t.ci[1]
    assert t.p_toward < ALPHA
    flat = rng.normal(0, 0.1, x.size)
    f = fit_trend(x, flat, flat - z * se, flat + z * se, toward=1)
    assert f.ci[0] < 0 < f.ci[1] and f.p_value > ALPHA
    down = fit_trend(x, -grow, -grow - z * se, -grow + z * se, toward=1)
    assert down.p_toward > 1 - ALPHA  # a shrinking effect is no evidence toward the claim


def test_spans_decades():
    assert spans_decades([1e-4, 1e-3, 1e-2])
    assert spans_decades([8, 16, 32, 64, 128])
    assert not spans_decades([8, 16, 32])
    assert not spans_decades([0, 1, 100])
    assert not spans_decades([5])


@pytest.mark.parametrize(
    ("passed", "value", "first"),
    [
        ([False, False, True, True], 3.0, 3.0),
        ([False, True, False, True], 4.0, 2.0),
        ([True, True, True, True], 1.0, 1.0),
        ([False, False, False, False], None, None),
        ([True, True, True, False], None, 1.0),
    ],
)
def test_onset(passed, value, first):
    o = onset([1.0, 2.0, 3.0, 4.0], passed)
    assert o.value == value and o.first_pass == first
    assert o.points == 4 and o.passes == sum(passed)


def test_onset_needs_every_point_at_a_value_to_pass():
    o = onset([1, 1, 2, 2], [True, False, True, True])
    assert o.value == 2 and o.first_pass == 2
    assert "holds from x=2" in o.describe("x")
