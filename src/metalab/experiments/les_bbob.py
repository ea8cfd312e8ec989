"""les-bbob: metalab-trained LES generalises to held-out BBOB functions and larger D, N, T.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*,
ICLR 2023. LES is meta-trained (``metalab.bbo.metabbo``) on 10 BBOB functions at D 2-10, N 16,
T 50; here the shipped weights are evaluated on the 14 *held-out* functions at larger D, N and
T against evosax's OpenAI-ES, SNES and a Gaussian GA, each tuned over a small grid (best
setting per function, chosen on the evaluation seeds: generous to the baselines).
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
    tuned_values,
)
from metalab.bbo.les import LES
from metalab.bbo.problems import BBOB_NAMES, LES_TRAIN_FNS
from metalab.core import stats
from metalab.experiments.base import Check, Experiment, Paper, Verdict, file_or, param

HELD_OUT = tuple(f for f in BBOB_NAMES if f not in LES_TRAIN_FNS)
TIE = 1e-3  # |difference| in mean log10 regret below which a function is a tie


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
    return {
        "les": _les_entry(config),
        "openes": grids[0],
        "snes": grids[1],
        "gaussian_ga": grids[2],
        "evosax_les": _evosax_les_entry(config),
    }


def run(config: LESBBOBConfig, key: jax.Array) -> dict:
    res = bbob_comparison(
        methods_for(config),
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


def win_checks(
    metrics_list,
    method: str,
    baselines: tuple[str, ...],
    fns: tuple[str, ...],
    normaliser: str | None = None,
) -> tuple[list[Check], list[str]]:
    """One check per baseline: ``method`` beats the tuned baseline on a majority of functions.

    Per function, the score is the mean over seeds of final log10 regret (baselines at their
    per-function best grid setting). A win is a lower score by more than ``TIE``; ties are
    dropped from the one-sided sign test. Pass rule: wins > F/2 and sign-test p < 0.05.
    """
    grids = {
        k.split("/", 1)[1]: np.stack([m[k] for m in metrics_list])
        for k in metrics_list[0]
        if k.startswith("fn_grid/")
    }
    ours = tuned_values(grids[method]).mean(axis=0)  # (F,)
    checks, lines = [], []
    norm = tuned_values(grids[normaliser]).mean(axis=0) if normaliser else None
    for b in baselines:
        theirs = tuned_values(grids[b]).mean(axis=0)
        diff = ours - theirs
        wins, losses = int(np.sum(diff < -TIE)), int(np.sum(diff > TIE))
        n_fns = len(fns)
        p = stats.sign_test(wins, wins + losses) if wins + losses else 1.0
        rel = ""
        if norm is not None:
            rel = f"; geometric-mean regret ratio vs {normaliser}: " + (
                f"{method} {10 ** np.mean(ours - norm):.3g}, {b} {10 ** np.mean(theirs - norm):.3g}"
            )
        checks.append(
            Check(
                name=f"{method} beats tuned {b} on most functions",
                statistic="functions won (of F)",
                value=float(wins),
                passed=bool(wins > n_fns / 2 and p < 0.05),
                threshold=f"wins > {n_fns}/2 and one-sided sign test p < 0.05 (ties dropped)",
                p_value=float(p),
                effect_size=float(np.median(diff)),
                test="sign test over functions; effect = median difference in mean log10 regret",
            )
        )
        lines.append(
            f"{b}: {method} wins {wins}, loses {losses}, ties {n_fns - wins - losses}{rel}"
        )
    per_fn = ", ".join(f"{f} {v:.2f}" for f, v in zip(fns, ours, strict=True))
    lines.append(f"{method} mean log10 regret per function: {per_fn}")
    return checks, lines


def verdict(metrics_list, config: LESBBOBConfig) -> Verdict:
    checks, lines = win_checks(metrics_list, "les", ("openes", "snes", "gaussian_ga"), config.fns)
    ev, ev_lines = win_checks(metrics_list, "les", ("evosax_les",), config.fns)
    lines.append("reference (not a check): vs evosax's shipped LES weights: " + ev_lines[0])
    return Verdict(
        checks=tuple(checks),
        summary=(
            f"metalab-trained LES on {len(config.fns)} BBOB functions at D {config.num_dims}, "
            f"N {config.population_size}, T {config.generations} vs grid-tuned evosax baselines."
        ),
        notes="\n".join(lines),
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
        ),
        "quick": LESBBOBConfig(),
        "full": LESBBOBConfig(num_dims=100, population_size=256, generations=1000),
    },
    seeds={"smoke": 2, "quick": 5, "full": 20},
    run=run,
    verdict=verdict,
    tags=("bbo", "les"),
)
