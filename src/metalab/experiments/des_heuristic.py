"""des-heuristic: the explicit DES heuristic is competitive with the learned LES on BBOB.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*,
ICLR 2023, Section 6: reverse-engineering the meta-trained LES gives a closed-form ES (DES:
sigmoid-of-rank recombination weights, fixed learning rates) that performs comparably.
Compared here on BBOB functions against metalab's shipped LES weights (and, as a reference,
evosax's LES weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.bbo.compare import bbob_comparison
from metalab.bbo.des import DES
from metalab.bbo.les import LES, LESParams
from metalab.bbo.problems import BBOB_NAMES
from metalab.core import stats
from metalab.experiments.base import Check, Experiment, Verdict, param
from metalab.experiments.les_bbob import _PAPER, win_checks

MARGIN = 0.5  # decades of regret: the equivalence margin for "competitive"


@dataclass(frozen=True)
class DESConfig:
    fns: tuple[str, ...] = param(BBOB_NAMES, "BBOB functions evaluated")
    num_dims: int = param(10, "search dimension D", lo=2, hi=1000)
    population_size: int = param(32, "population size N", lo=4, hi=4096)
    generations: int = param(100, "generations T", lo=2, hi=100000)
    sigma0: float = param(1.0, "initial std of both methods", lo=1e-3, hi=10.0)
    init_range: float = param(2.0, "initial mean ~ U[-r, r]^D", lo=0.0, hi=5.0)
    weights: str = param("les", "LES weights: 'les' (metalab shipped), 'evosax-les' or a path")


def run(config: DESConfig, key: jax.Array) -> dict:
    from evosax.algorithms import LearnedES

    from metalab.bbo.weights import load_weights

    n, d = config.population_size, config.num_dims
    les = LES(n, d, weights=load_weights(config.weights))
    des = DES(n, d)
    ev = LearnedES(n, jnp.zeros(d))
    methods = {
        "des": [lambda s0: (des, des.default_params.replace(std_init=s0))],
        "les": [lambda s0: (les, LESParams(s0, les.weights))],
        "evosax_les": [lambda s0: (ev, ev.default_params.replace(std_init=s0))],
    }
    res = bbob_comparison(
        methods, config.fns, d, config.generations, key, config.sigma0, config.init_range
    )
    out = {}
    for m, r in res.items():
        out[f"fn_grid/{m}"] = r["final"]
        out[f"log_regret/{m}"] = jnp.mean(r["final"])
        out[f"curve/{m}"] = jnp.mean(r["curve"][:, 0], axis=0)
    return out


def verdict(metrics_list, config: DESConfig) -> Verdict:
    des = np.stack([m["fn_grid/des"][:, 0] for m in metrics_list]).mean(axis=0)
    les = np.stack([m["fn_grid/les"][:, 0] for m in metrics_list]).mean(axis=0)
    diff = des - les  # per function, decades (negative = DES better)
    med, lo, hi = stats.bootstrap_ci(diff, stat=np.median)
    w = stats.wilcoxon(des, les) if np.any(np.abs(diff) > 0) else None
    check = Check(
        name="DES competitive with LES",
        statistic="median over functions of mean log10 regret, DES - LES",
        value=float(med),
        passed=bool(hi < MARGIN),
        threshold=f"95% bootstrap CI upper bound < {MARGIN} decades (equivalence margin)",
        p_value=float(w.p_value) if w else float("nan"),
        effect_size=float(np.mean(diff)),
        ci=(float(lo), float(hi)),
        test="bootstrap CI of the median paired difference; p: two-sided Wilcoxon",
    )
    _, lines = win_checks(metrics_list, "des", ("les", "evosax_les"), config.fns)
    return Verdict(
        checks=(check,),
        summary=(
            f"DES vs meta-trained LES on {len(config.fns)} BBOB functions at D {config.num_dims}."
        ),
        notes="\n".join(lines),
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
    tags=("bbo", "les", "des"),
)
