"""The three reproductions' verdicts on fabricated metrics: they pass when the claim holds and
fail when it does not (no JAX compute; the smoke runs are in tests/test_registry.py)."""

from __future__ import annotations

import numpy as np

from metalab.experiments import alstm_lm, quantnet, spacegan


def _alstm_metrics(gap: float, n: int = 5):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        base = 7.0 + rng.normal(0, 0.05)
        out.append(
            {
                "params/alstm": np.asarray(50_000.0),
                "params/lstm": np.asarray(53_000.0),
                "best_ppl/alstm": np.asarray(base - gap),
                "best_ppl/lstm": np.asarray(base),
                "best_ppl_equal_time/alstm": np.asarray(base),
                "best_ppl_equal_time/lstm": np.asarray(base),
                "ms_per_step/alstm": np.asarray(20.0),
                "ms_per_step/lstm": np.asarray(12.0),
                "best_ppl/oracle": np.asarray(5.9),
            }
        )
    return out


def test_alstm_verdict():
    cfg = alstm_lm.PRESETS["quick"]
    good = alstm_lm.verdict(_alstm_metrics(0.5), cfg)
    assert good.reproduced and "ms/step" in good.notes
    bad = alstm_lm.verdict(_alstm_metrics(-0.5), cfg)
    assert not bad.reproduced and bad.checks[0].passed and not bad.checks[1].passed
    fewer = _alstm_metrics(0.5)
    fewer[0]["params/lstm"] = np.asarray(40_000.0)
    assert not alstm_lm.verdict(fewer, cfg).checks[0].passed


def _sg_metrics(better: bool, n: int = 5):
    rng = np.random.default_rng(1)
    f = 1.0 if better else -1.0
    out = []
    for _ in range(n):
        m = {}
        for d in ("toy", "baltimore"):
            s = 0.5 + rng.uniform(0, 0.1)
            m[f"mie_{d}/mie_selected"] = np.asarray(s)
            for k in ("last", "rmse_selected", "no_neighbours"):
                m[f"mie_{d}/{k}"] = np.asarray(s * np.exp(f * rng.uniform(0.1, 0.3)))
            m[f"cv_rmse_{d}/spacegan_ensemble"] = np.asarray(s)
            m[f"cv_rmse_{d}/bagging"] = np.asarray(s * np.exp(f * 0.2))
            m[f"cv_rmse_{d}/single"] = np.asarray(s * 1.3)
        out.append(m)
    return out


def test_spacegan_verdict():
    cfg = spacegan.PRESETS["quick"]
    assert spacegan.verdict(_sg_metrics(True), cfg).reproduced
    bad = spacegan.verdict(_sg_metrics(False), cfg)
    assert not any(c.passed for c in bad.checks) and len(bad.checks) == 4


def _qn_metrics(margin: float, n: int = 8):
    rng = np.random.default_rng(2)
    out = []
    for _ in range(n):
        m = {}
        for metric in ("sharpe", "calmar"):
            base = rng.normal(0.5, 0.1)
            m[f"{metric}/quantnet"] = np.asarray(base + margin)
            m[f"{metric}/no_transfer"] = np.asarray(base)
            for b in quantnet.BASELINES:
                m[f"{metric}/{b}"] = np.asarray(base - 0.1 * (b == "tsmom"))
        for name in ("quantnet", "no_transfer") + quantnet.BASELINES:
            m[f"sharpe_short_history/{name}"] = np.asarray(0.3)
        out.append(m)
    return out


def test_quantnet_verdict():
    cfg = quantnet.PRESETS["quick"]
    good = quantnet.verdict(_qn_metrics(0.3), cfg)
    assert good.reproduced and len(good.checks) == 4
    bad = quantnet.verdict(_qn_metrics(-0.3), cfg)
    assert not any(c.passed for c in bad.checks)
