"""Tiny experiments for the lab's tests (loaded through METALAB_PLUGINS=fake_experiments)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, file_or, param

PAPER = Paper("A test fixture", "metalab", 2026)


@dataclass(frozen=True)
class NoisyConfig:
    steps: int = param(20, "curve length", lo=1, hi=10_000)
    shift: float = param(1.0, "mean of method b minus method a", lo=-10.0, hi=10.0)
    nan_seed: int = param(-1, "seed whose curve gets a NaN (-1: none)", lo=-1)
    nan_step: int = param(5, "step at which the NaN is injected", lo=0)
    mode: str = param("plain", "a string field with choices", choices=("plain", "fancy"))
    widths: tuple[int, ...] = param((4, 8), "a tuple field", lo=1)
    weights: str = param("none", "'none' or a weights file", validator=file_or("none"))


def noisy_run(cfg: NoisyConfig, key):
    ka, kb = jax.random.split(key)
    a = jax.random.normal(ka, (cfg.steps,)).cumsum()
    b = a + cfg.shift + 0.1 * jax.random.normal(kb, (cfg.steps,))
    seed = key[-1].astype(jnp.int32)  # PRNGKey(s) is [0, s]: recover the seed
    poison = (seed == cfg.nan_seed) & (jnp.arange(cfg.steps) >= cfg.nan_step)
    b = jnp.where(poison, jnp.nan, b)
    return {"curve/a": a, "curve/b": b, "final/a": a[-1], "final/b": b[-1]}


NOISY_RULES = (
    Rule(
        "b above a",
        "superiority",
        a="final/b",
        b="final/a",
        test="t",
        paired=True,
        direction="greater",
        doc="fixture: b's final value exceeds a's",
    ),
)


def noisy_verdict(data, cfg: NoisyConfig) -> Verdict:
    diff = data["final/b"] - data["final/a"]
    return Verdict(judge(NOISY_RULES, data), summary=f"b - a = {diff.mean():.3f}")


@dataclass(frozen=True)
class SlowConfig:
    sleep: float = param(0.5, "seconds each seed sleeps", lo=0.0, hi=60.0)


def slow_run(cfg: SlowConfig, key):
    time.sleep(cfg.sleep)
    x = np.asarray(jax.random.normal(key, (3,)))
    return {"value/x": np.float64(x.sum()), "stamp/t": np.float64(time.time())}


SLOW_RULES = (
    Rule(
        "x above -10",
        "one_sample",
        a="value/x",
        margin=-10.0,
        test="t",
        direction="greater",
        doc="fixture: a sum of three standard normals is far above -10",
    ),
)


def slow_verdict(data, cfg: SlowConfig) -> Verdict:
    return Verdict(judge(SLOW_RULES, data), summary=f"mean x = {data['value/x'].mean():.3f}")


EXPERIMENTS = (
    Experiment(
        name="test-noisy",
        paper=PAPER,
        claim="b is above a.",
        config_cls=NoisyConfig,
        presets={"smoke": NoisyConfig(), "quick": NoisyConfig(steps=50), "full": NoisyConfig()},
        seeds={"smoke": 4, "quick": 6, "full": 8},
        run=noisy_run,
        verdict=noisy_verdict,
        rules=NOISY_RULES,
        default=False,
    ),
    Experiment(
        name="test-slow",
        paper=PAPER,
        claim="Seeds take time.",
        config_cls=SlowConfig,
        presets={"smoke": SlowConfig(), "quick": SlowConfig(), "full": SlowConfig()},
        seeds={"smoke": 8, "quick": 8, "full": 8},
        run=slow_run,
        verdict=slow_verdict,
        rules=SLOW_RULES,
        vmappable=False,
        default=False,
    ),
)
