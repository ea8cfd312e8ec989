"""des-heuristic: the explicit DES heuristic is competitive with the learned LES on BBOB.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*,
ICLR 2023, Section 6: reverse-engineering the meta-trained LES gives a closed-form ES (DES:
sigmoid-of-rank recombination weights, fixed learning rates) that performs comparably.
Here the DES constants (temperature, learning rates) are *fitted to metalab's own LES*
(:mod:`metalab.bbo.des_fit`: least squares on the LES's rank-weight profile and median learning
rates, on training tasks), and that DES is judged against the same LES on the 24 BBOB functions
(other tasks and seeds). evosax's DES constants (12.5, 1, 0.1) and evosax's LES are reported
beside them (not checks).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metalab.bbo.compare import bbob_comparison
from metalab.bbo.des import DES
from metalab.bbo.les import LES
from metalab.bbo.problems import BBOB_NAMES
from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Verdict, param
from metalab.experiments.les_bbob import _PAPER, comparison_table

MARGIN = 0.5  # decades of regret: the equivalence margin for "competitive"

RULES = (
    Rule(
        "DES fitted to metalab's LES is competitive with that LES",
        "equivalence",
        a="mean_log_regret/des",
        b="mean_log_regret/les",
        margin=MARGIN,
        test="t",
        paired=True,
        doc="paper: the DES reverse-engineered from LES performs comparably to LES "
        "(per seed: mean over functions of log10 regret; margin 0.5 decades)",
    ),
)


@dataclass(frozen=True)
class DESConfig:
    fns: tuple[str, ...] = param(BBOB_NAMES, "BBOB functions evaluated")
    num_dims: int = param(10, "search dimension D", lo=2, hi=1000)
    population_size: int = param(32, "population size N", lo=4, hi=4096)
    generations: int = param(100, "generations T", lo=2, hi=100000)
    sigma0: float = param(1.0, "initial std of both methods", lo=1e-3, hi=10.0)
    init_range: float = param(2.0, "initial mean ~ U[-r, r]^D", lo=0.0, hi=5.0)
    weights: str = param("les", "LES weights: 'les' (metalab shipped), 'evosax-les' or a path")
    des_fit: str = param(
        "shipped", "DES constants: 'shipped' (fitted to metalab's LES) or a des_fit json path"
    )


def run(config: DESConfig, key: jax.Array) -> dict:
    from evosax.algorithms import LearnedES

    from metalab.bbo.des_fit import fitted_des_params
    from metalab.bbo.weights import load_weights

    n, d = config.population_size, config.num_dims
    les = LES(n, d, weights=load_weights(config.weights))
    des = DES(n, d)
    fitted = fitted_des_params(path=None if config.des_fit == "shipped" else config.des_fit)
    ev = LearnedES(n, jnp.zeros(d))
    methods = {
        "des": [lambda s0: (des, fitted.replace(std_init=s0))],
        "les": [lambda s0: (les, les.default_params.replace(std_init=s0))],
        "des_evosax_constants": [lambda s0: (des, des.default_params.replace(std_init=s0))],
        "evosax_les": [lambda s0: (ev, ev.default_params.replace(std_init=s0))],
    }
    res = bbob_comparison(
        methods, config.fns, d, config.generations, key, config.sigma0, config.init_range
    )
    out = {}
    for m, r in res.items():
        out[f"fn_grid/{m}"] = r["final"]
        out[f"mean_log_regret/{m}"] = jnp.mean(r["final"])
        out[f"curve/{m}"] = jnp.mean(r["curve"][:, 0], axis=0)
    return out


def verdict(data: dict, config: DESConfig) -> Verdict:
    import json

    from metalab.bbo.des_fit import FITTED_PATH

    checks = judge(RULES, data)
    regrets = {f"regret/{k[8:]}": v[..., 0] for k, v in data.items() if k.startswith("fn_grid/")}
    fit = json.loads(FITTED_PATH.read_text()) if config.des_fit == "shipped" else {}
    consts = (
        f"fitted DES constants: temperature {fit['temperature']:.3g}, lr_mean "
        f"{fit['lr_mean']:.3g}, lr_std {fit['lr_std']:.3g} (evosax: 12.5, 1, 0.1)"
        if fit
        else f"DES constants from {config.des_fit}"
    )
    return Verdict(
        checks=checks,
        summary=(
            f"DES fitted to metalab's LES vs that LES on {len(config.fns)} BBOB functions at D "
            f"{config.num_dims}, N {config.population_size}, T {config.generations}."
        ),
        notes="\n".join([consts, *comparison_table(regrets, "des", config.fns)]),
    )


EXPERIMENT = Experiment(
    name="des-heuristic",
    paper=_PAPER,
    claim=(
        "The discovered ES (DES), a closed-form heuristic reverse-engineered from LES, is "
        "competitive with the learned LES on BBOB."
    ),
    config_cls=DESConfig,
    presets={
        "smoke": DESConfig(fns=("rastrigin",), num_dims=3, population_size=8, generations=4),
        "quick": DESConfig(),
        "full": DESConfig(num_dims=50, population_size=64, generations=1000),
    },
    seeds={"smoke": 2, "quick": 5, "full": 20},
    run=run,
    verdict=verdict,
    rules=RULES,
    tags=("bbo", "les", "des"),
)
