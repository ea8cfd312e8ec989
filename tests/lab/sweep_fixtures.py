"""Tiny experiments for the sweep and scale tests (METALAB_PLUGINS=sweep_fixtures).

``test-sweep-effect``: per seed, ``score/a = base + effect + noise * e`` and ``score/b = base``,
judged by one declared superiority rule (a beats b, paired t). Not vmapped, so a seed can sleep
(``sleep``) and the kill test has time to strike between points. Its ladder raises ``effect``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, param

PAPER = Paper("A sweep test fixture", "metalab", 2026)


@dataclass(frozen=True)
class EffectConfig:
    effect: float = param(0.0, "true mean advantage of a over b", lo=0.0, hi=100.0)
    noise: float = param(1.0, "sd of the per-seed noise on a", lo=0.0, hi=100.0)
    sleep: float = param(0.0, "seconds each seed sleeps", lo=0.0, hi=60.0)
    label: str = param("x", "a string field; 'y' makes run raise", choices=("x", "y"))
    widths: tuple[int, ...] = param((4,), "a tuple field", lo=1)


RULES = (
    Rule(
        "a beats b",
        "superiority",
        a="score/a",
        b="score/b",
        test="t",
        paired=True,
        direction="greater",
        doc="fixture: a's score exceeds b's",
    ),
)


def effect_run(cfg: EffectConfig, key) -> dict:
    if cfg.label == "y":
        raise RuntimeError("fixture: label y fails")
    time.sleep(cfg.sleep)
    seed = int(np.asarray(key)[-1])
    rng = np.random.default_rng(seed)
    base, e = rng.normal(), rng.normal()
    return {
        "score/a": np.float64(base + cfg.effect + cfg.noise * e),
        "score/b": np.float64(base),
        "stamp/t": np.float64(time.time()),
    }


def effect_verdict(data, cfg: EffectConfig) -> Verdict:
    return Verdict(judge(RULES, data), summary="a vs b")


def _presets(**kw):
    return {p: EffectConfig(**kw) for p in ("smoke", "quick", "full")}


EXPERIMENTS = (
    Experiment(
        name="test-sweep-effect",
        paper=PAPER,
        claim="a beats b.",
        config_cls=EffectConfig,
        presets=_presets(),
        seeds={"smoke": 6, "quick": 6, "full": 6},
        run=effect_run,
        verdict=effect_verdict,
        rules=RULES,
        vmappable=False,
        default=False,
        ladder=(
            {"effect": 0.0},
            {"effect": 0.3, "seeds": 8},
            {"effect": 3.0, "preset": "quick", "seeds": 8},
        ),
    ),
    Experiment(
        name="test-sweep-slowladder",
        paper=PAPER,
        claim="a beats b, slowly.",
        config_cls=EffectConfig,
        presets=_presets(),
        seeds={"smoke": 4, "quick": 4, "full": 4},
        run=effect_run,
        verdict=effect_verdict,
        rules=RULES,
        vmappable=False,
        default=False,
        ladder=(
            {"effect": 1.0},
            {"effect": 2.0, "sleep": 8.0, "seeds": 8},
            {"effect": 4.0, "sleep": 8.0, "seeds": 8},
        ),
    ),
)
