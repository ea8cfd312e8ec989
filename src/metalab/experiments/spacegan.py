"""Reproduction ``spacegan``: MIE selection, neighbourhood conditioning, GAN-augmented ensembles,
each judged on held-out spatial folds.

Claims (Klemmer, Koshiyama, Flennerhag 2019): SpaceGAN reproduces the local spatial
autocorrelation of the data: the generator selected by MIE matches the real local Moran's I
better than other checkpoints; conditioning on the neighbours' feature vectors does better than
conditioning on "mere spatial coordinates"; and ensembles trained on SpaceGAN samples beat
other augmentation (bootstrap bagging) under spatial cross-validation.

Per seed and dataset (a regenerated toy grid; Baltimore house prices shipped in libpysal): the
points are split into four spatial folds (quadrants). For each fold, two conditional GANs are
trained on the other three quadrants in one vmapped call: SpaceGAN (conditioned on the
neighbourhood: the k nearest training points' features and targets and their spatial lags,
never the point's own features, coordinates or target) and the coordinates-conditioned cGAN.
Checkpoints are selected by MIE on the *training* points. Every comparison is then judged on
the *held-out* quadrant, which neither training nor selection saw: MIE on the held-out points
(generator conditioned on their nearest training points; Moran's I on the held-out graph), and
the RMSE of regressors trained on the training quadrants. Metrics are geometric means over the
four folds and over the datasets (one number per seed).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, param
from metalab.models.moran import knn_weights
from metalab.models.spacegan import (
    SpaceGANSettings,
    SpatialTask,
    bootstrap_weights,
    coordinate_condition,
    fit_ensemble,
    make_spacegan,
    masked_mie,
    neighbour_condition,
    predict_ensemble,
    sample,
)
from metalab.models.spatial_data import load_baltimore, quadrant_folds, standardise, toy_grid

VARIANTS = ("mie_selected", "last", "rmse_selected", "coordinates")


@dataclass(frozen=True)
class SpaceGANConfig:
    datasets: tuple[str, ...] = param(
        ("toy", "baltimore"), "datasets to run", choices=("toy", "baltimore")
    )
    grid_side: int = param(20, "side of the regenerated toy grid (n = side^2)", lo=4)
    k_neighbours: int = param(8, "k of the kNN weights (Moran's I) and of the condition", lo=1)
    hidden: int = param(64, "units per hidden layer of G and D", lo=1)
    noise_dim: int = param(8, "generator noise size", lo=1)
    steps: int = param(2000, "GAN training steps", lo=1)
    ckpt_every: int = param(100, "steps between checkpoints (MIE/RMSE evaluation)", lo=1)
    lr: float = param(1e-3, "Adam step size of G and D", lo=1e-6, hi=1.0)
    n_draws: int = param(10, "generated fields per MIE evaluation", lo=1)
    ensemble_size: int = param(10, "members per ensemble", lo=1)
    learner_hidden: int = param(32, "units of the ensemble's MLP regressors", lo=1)
    learner_steps: int = param(300, "Adam steps per ensemble member", lo=1)
    learner_lr: float = param(3e-3, "ensemble members' Adam step size", lo=1e-6, hi=1.0)


PRESETS = {
    "smoke": SpaceGANConfig(
        datasets=("toy",),
        grid_side=6,
        k_neighbours=3,
        hidden=8,
        steps=20,
        ckpt_every=10,
        n_draws=2,
        ensemble_size=2,
        learner_hidden=4,
        learner_steps=5,
    ),
    "quick": SpaceGANConfig(),
    "full": SpaceGANConfig(
        grid_side=32,
        steps=20_000,
        ckpt_every=200,
        n_draws=100,
        ensemble_size=50,
        learner_steps=2000,
    ),
}

RULES = (
    Rule(
        "MIE-selected beats the last checkpoint on held-out MIE",
        "superiority",
        a="heldout_mie/mie_selected",
        b="heldout_mie/last",
        direction="less",
        transform="log",
        group="selection",
        doc="MIE checkpoint selection gives generators faithful to local autocorrelation",
    ),
    Rule(
        "MIE-selected beats the RMSE-selected checkpoint on held-out MIE",
        "superiority",
        a="heldout_mie/mie_selected",
        b="heldout_mie/rmse_selected",
        direction="less",
        transform="log",
        group="selection",
        doc="MIE checkpoint selection gives generators faithful to local autocorrelation",
    ),
    Rule(
        "neighbourhood conditioning beats coordinate conditioning on held-out MIE",
        "superiority",
        a="heldout_mie/mie_selected",
        b="heldout_mie/coordinates",
        direction="less",
        transform="log",
        doc="conditioning on neighbours' feature vectors, beyond mere spatial coordinates",
    ),
    Rule(
        "SpaceGAN-augmented ensemble beats bagging on held-out RMSE",
        "superiority",
        a="cv_rmse/spacegan_ensemble",
        b="cv_rmse/bagging",
        direction="less",
        transform="log",
        doc="ensembles on SpaceGAN samples outperform other ensemble/augmentation methods",
    ),
)


@functools.lru_cache(maxsize=1)
def _baltimore():
    return load_baltimore()


def _dataset(name: str, cfg: SpaceGANConfig, key: jax.Array):
    if name == "toy":
        return toy_grid(key, cfg.grid_side)
    if name == "baltimore":
        return jax.tree_util.tree_map(jnp.asarray, _baltimore())
    raise ValueError(f"dataset {name!r}; allowed: 'toy', 'baltimore'")


def _settings(cfg: SpaceGANConfig) -> SpaceGANSettings:
    return SpaceGANSettings(
        cfg.hidden, cfg.noise_dim, cfg.steps, cfg.ckpt_every, cfg.lr, cfg.lr, cfg.n_draws
    )


def _one_dataset(name: str, cfg: SpaceGANConfig, key: jax.Array) -> dict[str, jax.Array]:
    st = _settings(cfg)
    k_data, k_gan, k_eval, k_ens = jax.random.split(key, 4)
    data = _dataset(name, cfg, k_data)
    n = data.y.shape[0]
    w = knn_weights(data.coords, cfg.k_neighbours)
    folds = quadrant_folds(data.coords)  # (4, n) held-out masks
    train_masks = 1.0 - folds
    cond_nb, ys = jax.vmap(
        lambda m: neighbour_condition(data.x, data.coords, data.y, m, cfg.k_neighbours)
    )(train_masks)
    width = cond_nb.shape[-1]
    cond_xy = jax.vmap(lambda m: coordinate_condition(data.coords, m, width))(train_masks)
    # 8 GANs in one vmap: folds 0-3 with the neighbourhood, folds 0-3 with coordinates
    cond = jnp.concatenate([cond_nb, cond_xy])
    y8 = jnp.concatenate([ys, ys])
    m8 = jnp.concatenate([train_masks, train_masks])
    model = make_spacegan(st)
    tasks = SpatialTask(cond, y8, jnp.broadcast_to(w, (8, n, n)), m8)
    sel, info = jax.vmap(model.train)(jax.random.split(k_gan, 8), tasks)

    def heldout(params_g, task, test_mask, k):
        return masked_mie(params_g, k, task, test_mask, cfg.n_draws, st)

    out: dict[str, jax.Array] = {}
    first4 = lambda tree: jax.tree_util.tree_map(lambda a: a[:4], tree)
    last4 = lambda tree: jax.tree_util.tree_map(lambda a: a[4:], tree)
    nb_tasks, xy_tasks = first4(tasks), last4(tasks)
    ke = jax.random.split(k_eval, 4)
    ho = lambda params, tks, k: jax.vmap(heldout)(params, tks, folds, jax.random.split(k, 4))
    per_fold = {
        "mie_selected": ho(first4(sel), nb_tasks, ke[0]),
        "last": ho(first4(info["last_params"]), nb_tasks, ke[1]),
        "rmse_selected": ho(first4(info["rmse_params"]), nb_tasks, ke[2]),
        "coordinates": ho(last4(sel), xy_tasks, ke[3]),
    }
    for v, vals in per_fold.items():  # geometric mean over the four held-out folds
        out[f"heldout_mie_{name}/{v}"] = jnp.exp(jnp.log(vals).mean())
    out[f"train_mie_curve_{name}/neighbourhood"] = info["mie"][:4].mean(0)
    out[f"train_mie_curve_{name}/coordinates"] = info["mie"][4:].mean(0)
    out[f"train_mie_curve_{name}@x"] = (jnp.arange(info["mie"].shape[1]) + 1.0) * cfg.ckpt_every
    # spatial block CV: GAN-augmented ensemble vs bagging vs a single learner
    feats = jnp.concatenate([standardise(data.x), standardise(data.coords)], -1)
    m_ens = cfg.ensemble_size

    def fold(f_idx: jax.Array, k: jax.Array) -> jax.Array:
        """RMSE on held-out quadrant f of (SpaceGAN ensemble, bagging, single learner)."""
        tr_mask, te_mask = train_masks[f_idx], folds[f_idx]
        params_g = jax.tree_util.tree_map(lambda a: a[f_idx], sel)
        c_f, y_f = cond_nb[f_idx], ys[f_idx]
        k1, k2, k3 = jax.random.split(k, 3)
        gen_t = sample(params_g, k1, c_f, m_ens, st)  # (M, n), standardised units
        targets = jnp.concatenate([gen_t, jnp.broadcast_to(y_f, (m_ens + 1, n))])
        weights = jnp.concatenate(
            [
                jnp.broadcast_to(tr_mask, (m_ens, n)),
                bootstrap_weights(k2, tr_mask, m_ens),
                tr_mask[None],
            ]
        )
        p = fit_ensemble(
            k3, feats, targets, weights, cfg.learner_hidden, cfg.learner_steps, cfg.learner_lr
        )
        groups = (slice(0, m_ens), slice(m_ens, 2 * m_ens), slice(2 * m_ens, 2 * m_ens + 1))
        errs = []
        for g in groups:
            pred = predict_ensemble(
                jax.tree_util.tree_map(lambda a, g=g: a[g], p), feats, cfg.learner_hidden
            )
            errs.append(jnp.sqrt((te_mask * (pred - y_f) ** 2).sum() / te_mask.sum()))
        return jnp.stack(errs)

    errs = jnp.exp(jnp.log(jax.vmap(fold)(jnp.arange(4), jax.random.split(k_ens, 4))).mean(0))
    out[f"cv_rmse_{name}/spacegan_ensemble"] = errs[0]
    out[f"cv_rmse_{name}/bagging"] = errs[1]
    out[f"cv_rmse_{name}/single"] = errs[2]
    return out


def run(cfg: SpaceGANConfig, key: jax.Array) -> dict[str, jax.Array]:
    """One seed: every dataset in ``cfg.datasets``, plus the geometric means over datasets."""
    out: dict[str, jax.Array] = {}
    for name, k in zip(cfg.datasets, jax.random.split(key, len(cfg.datasets)), strict=True):
        out.update(_one_dataset(name, cfg, k))
    gm = lambda keys: jnp.exp(jnp.mean(jnp.log(jnp.stack([out[k] for k in keys]))))
    for v in VARIANTS:
        out[f"heldout_mie/{v}"] = gm([f"heldout_mie_{d}/{v}" for d in cfg.datasets])
    for v in ("spacegan_ensemble", "bagging", "single"):
        out[f"cv_rmse/{v}"] = gm([f"cv_rmse_{d}/{v}" for d in cfg.datasets])
    return out


def verdict(data: dict[str, np.ndarray], cfg: SpaceGANConfig) -> Verdict:
    """Four declared rules, each on a held-out criterion (paired t on log values over seeds)."""
    checks = judge(RULES, data)
    parts = []
    for d in cfg.datasets:
        g = lambda grp, m, d=d: float(np.median(data[f"{grp}_{d}/{m}"]))
        parts.append(
            f"{d}: held-out MIE selected {g('heldout_mie', 'mie_selected'):.3f}, last "
            f"{g('heldout_mie', 'last'):.3f}, RMSE-selected {g('heldout_mie', 'rmse_selected'):.3f}"
            f", coordinate-conditioned {g('heldout_mie', 'coordinates'):.3f}; held-out RMSE "
            f"SpaceGAN ensemble {g('cv_rmse', 'spacegan_ensemble'):.3f}, bagging "
            f"{g('cv_rmse', 'bagging'):.3f}, single {g('cv_rmse', 'single'):.3f} (standardised)"
        )
    mdes = ", ".join(f"{c.name.split(' on ')[0]}: {c.mde:.3f}" for c in checks)
    passed = sum(c.passed for c in checks)
    return Verdict(
        checks=checks,
        summary=f"{passed}/4 SpaceGAN claims hold on held-out folds at this scale",
        notes=(
            "Medians over seeds. "
            + "; ".join(parts)
            + f". Minimum detectable log-ratios (80% power): {mdes}. The paper reports no "
            "effect size for selection or conditioning in these units; its ensemble gains are "
            "several percent of RMSE (log-ratio ~0.03-0.1)."
        ),
    )


EXPERIMENT = Experiment(
    name="spacegan",
    paper=Paper(
        "Augmenting correlation structures in spatial data using deep generative models",
        "Klemmer, Koshiyama, Flennerhag",
        2019,
        "1905.09796",
    ),
    claim=(
        "SpaceGAN with MIE checkpoint selection reproduces local spatial autocorrelation "
        "(better than last or RMSE-selected checkpoints, and thanks to conditioning on the "
        "neighbourhood rather than coordinates), and its samples make better ensembles than "
        "bootstrap bagging under spatial CV."
    ),
    config_cls=SpaceGANConfig,
    presets=PRESETS,
    run=run,
    verdict=verdict,
    rules=RULES,
    seeds={"smoke": 2, "quick": 6, "full": 10},
    tags=("models", "spatial"),
)
