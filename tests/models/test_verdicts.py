"""The three reproductions' verdicts on fabricated metrics: they pass when the claim holds and
fail when it does not, and their checks are exactly the declared rules (no JAX compute; the
smoke runs are in tests/test_registry.py)."""

from __future__ import annotations

import numpy as np
import pytest

from metalab.experiments import alstm_lm, quantnet, spacegan


def _alstm_metrics(gap: float, n: int = 6):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        base = 7.0 + rng.normal(0, 0.05)
        a = base - gap + rng.normal(0, 0.01)
        out.append(
            {
                "params/alstm": np.asarray(50_000.0),
                "params/lstm": np.asarray(53_000.0),
                "hidden/alstm": np.asarray(64.0),
                "hidden/lstm": np.asarray(72.0),
                "best_ppl/alstm": np.asarray(a),
                "best_ppl/lstm": np.asarray(base),
                "log_ppl/alstm": np.asarray(np.log(a)),
                "log_ppl/lstm": np.asarray(np.log(base)),
                "best_ppl_equal_cpu/alstm": np.asarray(base),
                "best_ppl_equal_cpu/lstm": np.asarray(base),
                "cpu_ms_per_step/alstm": np.asarray(20.0),
                "cpu_ms_per_step/lstm": np.asarray(12.0),
                "oracle_ppl/synthetic": np.asarray(0.0),
            }
        )
    return out


def test_alstm_verdict():
    exp, cfg = alstm_lm.EXPERIMENT, alstm_lm.PRESETS["quick"]
    good = exp.judge(_alstm_metrics(0.5), cfg)
    assert good.reproduced and "ms/step" in good.notes and good.rules_hash
    bad = exp.judge(_alstm_metrics(-0.5), cfg)
    assert not bad.reproduced
    assert [c.name for c in good.checks] == [r.name for r in alstm_lm.RULES]
    assert np.isfinite(good.checks[0].mde)


def test_alstm_parameter_match_is_a_precondition():
    cfg = alstm_lm.PRESETS["smoke"]
    a, lstm = alstm_lm.lm_configs(cfg, 32)
    from metalab.models.lm import param_count

    assert (
        param_count(lstm)
        >= param_count(a)
        > param_count(type(lstm)(**{**lstm.__dict__, "hidden": lstm.hidden - 1}))
    )
    assert lstm.weight_drop == cfg.dropout_recurrent and a.dropout_policy == cfg.dropout_recurrent


def _sg_metrics(better: bool, n: int = 6):
    rng = np.random.default_rng(1)
    f = 1.0 if better else -1.0
    out = []
    for _ in range(n):
        m = {}
        s = 0.5 + rng.uniform(0, 0.1)
        for d in ("toy", "baltimore"):
            for v in spacegan.VARIANTS:
                val = s if v == "mie_selected" else s * np.exp(f * rng.uniform(0.1, 0.3))
                m[f"heldout_mie_{d}/{v}"] = np.asarray(val)
                m[f"heldout_mie/{v}"] = np.asarray(val)
            for v, val in (
                ("spacegan_ensemble", s),
                ("bagging", s * np.exp(f * rng.uniform(0.1, 0.3))),
                ("single", 1.3 * s),
            ):  # noqa: E501
                m[f"cv_rmse_{d}/{v}"] = np.asarray(val)
                m[f"cv_rmse/{v}"] = np.asarray(val)
        out.append(m)
    return out


def test_spacegan_verdict():
    exp, cfg = spacegan.EXPERIMENT, spacegan.PRESETS["quick"]
    assert exp.judge(_sg_metrics(True), cfg).reproduced
    bad = exp.judge(_sg_metrics(False), cfg)
    assert not any(c.passed for c in bad.checks) and len(bad.checks) == 4
    assert {c.group for c in bad.checks[:2]} == {"selection"}


def _qn_metrics(margin: float, n: int = 8):
    rng = np.random.default_rng(2)
    out = []
    for _ in range(n):
        m = {}
        for metric in ("sharpe", "calmar"):
            base = rng.normal(0.5, 0.1)
            m[f"{metric}/quantnet"] = np.asarray(base + margin + rng.normal(0, 0.02))
            m[f"{metric}/no_transfer"] = np.asarray(base)
            m[f"{metric}/best_baseline"] = np.asarray(base - 0.05)
            for b in quantnet.BASELINES:
                m[f"{metric}/{b}"] = np.asarray(base - 0.1 * (b == "tsmom"))
        for name in ("quantnet", "no_transfer") + quantnet.BASELINES:
            m[f"sharpe_short_history/{name}"] = np.asarray(0.3)
            m[f"median_sharpe/{name}"] = np.asarray(0.3)
        m["best_baseline_index/chosen"] = np.asarray(1.0)
        out.append(m)
    return out


@pytest.mark.parametrize("margin,passes", [(0.3, True), (-0.3, False)])
def test_quantnet_verdict(margin, passes):
    exp, cfg = quantnet.EXPERIMENT, quantnet.PRESETS["quick"]
    v = exp.judge(_qn_metrics(margin), cfg)
    assert v.reproduced is passes and len(v.checks) == 4
    assert "MDE" in v.notes
