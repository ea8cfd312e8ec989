"""les-bbob: metalab-trained LES generalises to held-out BBOB functions and larger D, N, T.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*,
ICLR 2023. LES is meta-trained (``metalab.bbo.metabbo``) on 10 BBOB functions over a wide
size distribution that never uses D 20; here the shipped weights are evaluated on the 14
*held-out* functions at D 20, N 32, T 100 against evosax's OpenAI-ES, SNES and a Gaussian GA,
each tuned per function over a small grid on **validation seeds** (the first
``validation_seeds`` seeds, other task instances) and judged on the remaining seeds. LES is
not tuned. CMA-ES, Sep-CMA-ES and evosax's LES (default settings) are reported beside them
(rows of the table, not checks).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.bbo.compare import (
    bbob_comparison,
    gaussian_ga_grid,
    openes_grid,
    snes_grid,
    std_init_grid,
)
from metalab.bbo.les import LES
from metalab.bbo.problems import BBOB_NAMES, LES_TRAIN_FNS
from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, file_or, param

HELD_OUT = tuple(f for f in BBOB_NAMES if f not in LES_TRAIN_FNS)
BASELINES = ("openes", "snes", "gaussian_ga")
REFERENCES = ("evosax_les", "cma_es", "sep_cma_es")  # reported rows, not checks

RULES = tuple(
    Rule(
        f"LES beats tuned {b} on most held-out functions",
        "wins",
        a="regret/les",
        b=f"regret/{b}",
        direction="less",
        group="baselines",
        doc="paper: LES generalises to unseen BBOB functions and larger D, N, T, "
        "outperforming the baselines (per-function mean log10 regret over evaluation seeds; "
        "exact ties dropped)",
    )
    for b in BASELINES
)


@dataclass(frozen=True)
class LESBBOBConfig:
    fns: tuple[str, ...] = param(HELD_OUT, "BBOB functions evaluated (default: held-out ones)")
    num_dims: int = param(20, "search dimension D (training used D <= 10)", lo=2, hi=1000)
    population_size: int = param(32, "population size N (training used 16)", lo=4, hi=4096)
    generations: int = param(100, "generations T (training used 50)", lo=2, hi=100000)
    sigma0: float = param(1.0, "initial search scale (LES std_init)", lo=1e-3, hi=10.0)
    init_range: float = param(2.0, "initial mean ~ U[-r, r]^D", lo=0.0, hi=5.0)
    weights: str = param(
        "les",
        "LES weights: 'les' (metalab shipped), 'evosax-les' or an npz path",
        validator=file_or("les", "evosax-les", suffix=".npz"),
    )
    tune: bool = param(True, "tune baselines over their grids (False: one default setting each)")
    validation_seeds: int = param(
        2, "seeds used only to choose each baseline's grid setting per function", lo=1, hi=100
    )


def _les_entry(config) -> list:
    from metalab.bbo.les import LESParams
    from metalab.bbo.weights import load_weights

    es = LES(config.population_size, config.num_dims, weights=load_weights(config.weights))
    return [lambda s0: (es, LESParams(s0, es.weights))]


def _evosax_les_entry(config) -> list:
    from evosax.algorithms import LearnedES

    es = LearnedES(config.population_size, jnp.zeros(config.num_dims))
    return [lambda s0: (es, es.default_params.replace(std_init=s0))]


def methods_for(config) -> dict:
    n, d = config.population_size, config.num_dims
    if config.tune:
        grids = (openes_grid(n, d), snes_grid(n, d), gaussian_ga_grid(n, d))
    else:
        grids = (
            openes_grid(n, d, stds=(1.0,), lrs=(0.1,)),
            snes_grid(n, d, stds=(1.0,)),
            gaussian_ga_grid(n, d, stds=(0.3,)),
        )
    from evosax.algorithms import CMA_ES, Sep_CMA_ES

    return {
        "les": _les_entry(config),
        "openes": grids[0],
        "snes": grids[1],
        "gaussian_ga": grids[2],
        "evosax_les": _evosax_les_entry(config),
        "cma_es": std_init_grid(CMA_ES, n, d, stds=(config.sigma0,)),
        "sep_cma_es": std_init_grid(Sep_CMA_ES, n, d, stds=(config.sigma0,)),
    }


def comparison_metrics(methods: dict, config, key: jax.Array) -> dict:
    """One seed of a BBOB comparison (shared with ``lga-bbob``): per method the ``(F, G)`` final
    log10 regret of every grid setting, the mean over functions of each function's best
    setting, and the mean best-so-far curve."""
    res = bbob_comparison(
        methods,
        config.fns,
        config.num_dims,
        config.generations,
        key,
        sigma0=config.sigma0,
        init_range=config.init_range,
    )
    out = {}
    for m, r in res.items():
        out[f"fn_grid/{m}"] = r["final"]  # (F, G) final log10 regret
        out[f"log_regret/{m}"] = jnp.mean(jnp.min(r["final"], axis=1))
        out[f"curve/{m}"] = jnp.mean(jnp.min(r["curve"], axis=1), axis=0)
    return out


def run(config: LESBBOBConfig, key: jax.Array) -> dict:
    return comparison_metrics(methods_for(config), config, key)


def tuned_on_validation(grid: np.ndarray, n_val: int) -> np.ndarray:
    """``(S, F, G)`` final log10 regret -> ``(S - n_val, F)`` at each function's grid setting
    chosen by the mean over the first ``n_val`` (validation) seeds."""
    g = np.asarray(grid)
    if g.shape[0] <= n_val:
        raise ValueError(f"need more than validation_seeds={n_val} seeds, got {g.shape[0]}")
    idx = np.argmin(g[:n_val].mean(axis=0), axis=1)
    return g[n_val:, np.arange(g.shape[1]), idx]


def derive_regrets(data: dict, n_val: int) -> dict[str, np.ndarray]:
    """``regret/<method>`` ``[evaluation seeds, functions]`` for every ``fn_grid/<method>``."""
    return {
        f"regret/{k.split('/', 1)[1]}": tuned_on_validation(v, n_val)
        for k, v in data.items()
        if k.startswith("fn_grid/")
    }


def comparison_table(regrets: dict, method: str, fns: tuple[str, ...]) -> list[str]:
    """Rows: geometric-mean regret, ratio to ``method``, wins/losses/ties of ``method``."""
    ours = regrets[f"regret/{method}"].mean(axis=0)
    lines = [f"method: geomean regret (evaluation seeds), ratio to {method}, {method} W/L/T"]
    for k, v in regrets.items():
        m = k.split("/", 1)[1]
        theirs = v.mean(axis=0)
        w, lo = int(np.sum(ours < theirs)), int(np.sum(ours > theirs))
        lines.append(
            f"  {m}: {10 ** theirs.mean():.3g}, x{10 ** (theirs.mean() - ours.mean()):.3g}, "
            f"{w}/{lo}/{len(fns) - w - lo}"
        )
    per_fn = ", ".join(f"{f} {v:.2f}" for f, v in zip(fns, ours, strict=True))
    lines.append(f"{method} mean log10 regret per function: {per_fn}")
    return lines


def verdict(data: dict, config: LESBBOBConfig) -> Verdict:
    regrets = derive_regrets(data, config.validation_seeds)
    checks = judge(RULES, {**data, **regrets})
    return Verdict(
        checks=checks,
        summary=(
            f"metalab-trained LES on {len(config.fns)} held-out BBOB functions at D "
            f"{config.num_dims}, N {config.population_size}, T {config.generations} vs "
            "evosax baselines tuned per function on validation seeds."
        ),
        notes="\n".join(
            comparison_table(regrets, "les", config.fns)
            + [
                f"baselines tuned on the first {config.validation_seeds} seeds (their own "
                "task instances), judged on the others; LES untuned. "
                f"{', '.join(REFERENCES)} are default-setting reference rows, not checks."
            ]
        ),
    )


_PAPER = Paper(
    title="Discovering Evolution Strategies via Meta-Black-Box Optimization",
    authors="Lange, Schaul, Chen, Zahavy, Dalibard, Lu, Singh, Flennerhag",
    year=2023,
    arxiv="2211.11260",
)

EXPERIMENT = Experiment(
    name="les-bbob",
    paper=_PAPER,
    claim=(
        "A meta-learned LES generalises to unseen BBOB functions and to larger dimensions, "
        "populations and horizons than it was meta-trained on, outperforming tuned baselines."
    ),
    config_cls=LESBBOBConfig,
    presets={
        "smoke": LESBBOBConfig(
            fns=("ellipsoidal",),
            num_dims=4,
            population_size=8,
            generations=5,
            tune=False,
            validation_seeds=1,
        ),
        "quick": LESBBOBConfig(),
        "full": LESBBOBConfig(num_dims=100, population_size=256, generations=1000),
    },
    seeds={"smoke": 2, "quick": 5, "full": 20},
    run=run,
    verdict=verdict,
    rules=RULES,
    ladder=(  # metalab scale: generations T (with D, N and the held-out functions)
        {"generations": 5, "seeds": 4},
        {"generations": 20, "fns": HELD_OUT[:8], "num_dims": 8, "population_size": 16, "seeds": 4},
        {"preset": "quick", "generations": 50},
        {"preset": "quick", "generations": 100},
        {"preset": "quick", "generations": 300, "seeds": 10},
        {"preset": "full", "generations": 1000},
    ),
    tags=("bbo", "les"),
)
