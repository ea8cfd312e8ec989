"""lga-bbob: LGA beats Gaussian, MR-1/5, SAMR and GESMR GAs on most BBOB functions.

Lange, Tang, Tian, Zahavy, Flennerhag, Singh (2023), *Discovering Attention-Based Genetic
Algorithms via Meta-Black-Box Optimization*, GECCO 2023. The paper's setting: the 24 BBOB
functions at D 20, N 32, T 50, regret normalised by the Gaussian GA. Here LGA runs with
metalab's shipped meta-trained weights; the four GA baselines come from evosax, each tuned
over a grid of its initial mutation std (best setting per function on validation seeds, other
task instances than the evaluation seeds; LGA untuned). CMA-ES, Sep-CMA-ES and evosax's LGA
are reported beside them (table rows, not checks).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from metalab.bbo.compare import gaussian_ga_grid, std_init_grid
from metalab.bbo.lga import LGA
from metalab.bbo.problems import BBOB_NAMES
from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, param
from metalab.experiments.les_bbob import comparison_metrics, comparison_table, derive_regrets

BASELINES = ("gaussian_ga", "mr15_ga", "samr_ga", "gesmr_ga")
REFERENCES = ("evosax_lga", "cma_es", "sep_cma_es")  # reported rows, not checks

RULES = tuple(
    Rule(
        f"LGA beats tuned {b} on most functions",
        "wins",
        a="regret/lga",
        b=f"regret/{b}",
        direction="less",
        group="baselines",
        doc="paper: LGA outperforms tuned Gaussian, MR-1/5, SAMR and GESMR GAs on most BBOB "
        "functions (per-function mean log10 regret over evaluation seeds; exact ties dropped)",
    )
    for b in BASELINES
)


@dataclass(frozen=True)
class LGABBOBConfig:
    fns: tuple[str, ...] = param(BBOB_NAMES, "BBOB functions evaluated")
    num_dims: int = param(20, "search dimension D", lo=2, hi=1000)
    population_size: int = param(32, "population size N", lo=4, hi=4096)
    generations: int = param(50, "generations T", lo=2, hi=100000)
    sigma0: float = param(1.0, "initial population scale and LGA std_init", lo=1e-3, hi=10.0)
    init_range: float = param(2.0, "initial centre ~ U[-r, r]^D", lo=0.0, hi=5.0)
    weights: str = param("lga", "LGA weights: 'lga' (metalab shipped) or an npz path")
    tune: bool = param(True, "tune baselines over std grids (False: one setting each)")
    validation_seeds: int = param(
        2, "seeds used only to choose each baseline's std per function", lo=1, hi=100
    )


def methods_for(config) -> dict:
    from evosax.algorithms import CMA_ES, GESMR_GA, MR15_GA, SAMR_GA, LearnedGA, Sep_CMA_ES

    from metalab.bbo.weights import load_weights

    n, d = config.population_size, config.num_dims
    stds = (0.1, 0.3, 1.0) if config.tune else (0.3,)
    lga = LGA(n, d, weights=load_weights(config.weights))
    ev = LearnedGA(n, jnp.zeros(d))
    return {
        "lga": [lambda s0: (lga, lga.default_params.replace(std_init=s0))],
        "gaussian_ga": gaussian_ga_grid(n, d, stds),
        "mr15_ga": std_init_grid(MR15_GA, n, d, stds),
        "samr_ga": std_init_grid(SAMR_GA, n, d, stds),
        "gesmr_ga": std_init_grid(GESMR_GA, n, d, stds),
        "evosax_lga": [lambda s0: (ev, ev.default_params.replace(std_init=s0))],
        "cma_es": std_init_grid(CMA_ES, n, d, stds=(config.sigma0,)),
        "sep_cma_es": std_init_grid(Sep_CMA_ES, n, d, stds=(config.sigma0,)),
    }


def run(config: LGABBOBConfig, key: jax.Array) -> dict:
    return comparison_metrics(methods_for(config), config, key)


def verdict(data: dict, config: LGABBOBConfig) -> Verdict:
    regrets = derive_regrets(data, config.validation_seeds)
    checks = judge(RULES, {**data, **regrets})
    return Verdict(
        checks=checks,
        summary=(
            f"metalab-trained LGA on {len(config.fns)} BBOB functions at D {config.num_dims}, "
            f"N {config.population_size}, T {config.generations} vs evosax GAs tuned per "
            "function on validation seeds."
        ),
        notes="\n".join(
            comparison_table(regrets, "lga", config.fns)
            + [
                f"baselines tuned on the first {config.validation_seeds} seeds (their own "
                "task instances), judged on the others; LGA untuned. "
                f"{', '.join(REFERENCES)} are default-setting reference rows, not checks."
            ]
        ),
    )


EXPERIMENT = Experiment(
    name="lga-bbob",
    paper=Paper(
        title="Discovering Attention-Based Genetic Algorithms via Meta-Black-Box Optimization",
        authors="Lange, Tang, Tian, Zahavy, Flennerhag, Singh",
        year=2023,
        arxiv="2304.03995",
    ),
    claim=(
        "LGA outperforms tuned Gaussian, MR-1/5, SAMR and GESMR genetic algorithms on most "
        "BBOB functions (D 20, N 32, T 50), normalised by the Gaussian GA."
    ),
    config_cls=LGABBOBConfig,
    presets={
        "smoke": LGABBOBConfig(
            fns=("rastrigin",),
            num_dims=3,
            population_size=7,
            generations=4,
            tune=False,
            validation_seeds=1,
        ),
        "quick": LGABBOBConfig(),
        "full": LGABBOBConfig(num_dims=20, population_size=32, generations=50),
    },
    seeds={"smoke": 2, "quick": 5, "full": 20},
    run=run,
    verdict=verdict,
    rules=RULES,
    ladder=(  # metalab scale: generations T (with D, N and the functions); T=50 is the paper's
        {"generations": 4, "seeds": 4},
        {"generations": 12, "fns": BBOB_NAMES[::3], "num_dims": 6, "population_size": 16},
        {"preset": "quick", "generations": 25},
        {"preset": "quick", "generations": 50},
        {"preset": "quick", "generations": 100, "seeds": 20},
    ),
    tags=("bbo", "lga"),
)
