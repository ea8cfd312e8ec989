r"""``leap-fewshot``: Leap (Flennerhag et al., ICLR 2019) on many-step few-shot digits.

Setting. Few-shot classification on scikit-learn's 8x8 digits with affine "alphabets"
(:func:`metalab.metalearn.tasks.sample_digits_task`): N-way tasks, each with one random affine
warp and a random class-to-label assignment; meta-train and meta-test use disjoint digit
classes and disjoint warp pools. Every task is learned by ``inner_steps`` (100) full-batch
SGD steps on its support set, as in the paper's Omniglot protocol where each task needs a
long learning process. The number of pretraining alphabets (meta-train warps) is varied over
``pool_sizes``; for each, Leap, Reptile, FOMAML and multi-task pretraining ("fine-tuning")
meta-learn an initialisation from the same random start with the same task sequence and the
same outer optimiser (Adam). "No pretraining" starts from that random start.

Measure. Area under the training curve on held-out tasks: the mean support loss over
:math:`\theta_0, \dots, \theta_K` (lower is better), averaged over ``num_test_tasks`` meta-test
tasks (the same tasks for every method of a seed, so methods are paired within seeds).

Verdict (written from the paper's claim before any numbers were seen). At the largest number
of pretraining alphabets:

1-4. Leap has a lower AUC than each of Reptile, FOMAML, fine-tuning and no pretraining:
     one-sided paired t-test over seeds on ``AUC_other - AUC_leap``.
5.   The gap grows with the number of pretraining alphabets: per seed,
     ``gap(n) = min_baseline AUC(n) - AUC_leap(n)``; one-sided paired t-test that
     ``gap(n_max) - gap(n_min) > 0``.

All five p-values are Holm-corrected as one family; a check passes if its adjusted p < 0.05
and its mean effect is in the claimed direction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalab.core import stats
from metalab.experiments.base import Check, Experiment, Paper, Verdict, param
from metalab.metalearn import baselines, leap, maml, reptile
from metalab.metalearn.adapt import LeapOptions, training_curve
from metalab.metalearn.nets import accuracy, batch_loss, cross_entropy, mlp_apply, mlp_init
from metalab.metalearn.tasks import (
    check_digits_task,
    make_digits_family,
    sample_digits_task,
    sample_tasks,
)

TRAINED = ("leap", "reptile", "fomaml", "finetune")
METHODS = TRAINED + ("scratch",)
BASELINES = ("reptile", "fomaml", "finetune", "scratch")


@dataclass(frozen=True)
class LeapFewshotConfig:
    num_ways: int = param(5, "classes per task (N-way)", lo=2, hi=5)
    num_shots: int = param(10, "support images per class", lo=1, hi=80)
    num_query: int = param(10, "query images per class (accuracy on held-out examples)", lo=1)
    hidden: tuple[int, ...] = param((32, 32), "hidden widths of the MLP", lo=1, hi=1024)
    inner_steps: int = param(100, "SGD steps per task (train and evaluation)", lo=1, hi=1000)
    inner_lr: float = param(0.1, "inner SGD step size", lo=1e-5, hi=10.0)
    meta_iters: int = param(200, "meta-training iterations per method", lo=1)
    meta_batch: int = param(4, "tasks per meta-iteration", lo=1)
    meta_lr: float = param(1e-3, "outer Adam learning rate (all methods)", lo=1e-6, hi=1.0)
    pool_sizes: tuple[int, ...] = param(
        (1, 4, 16), "numbers of pretraining alphabets (meta-train warps), increasing", lo=1
    )
    num_test_warps: int = param(20, "held-out alphabets (meta-test warps)", lo=1)
    num_test_tasks: int = param(20, "held-out tasks per seed for evaluation", lo=1)
    leap_loss: bool = param(True, "Leap: include the loss in the task manifold")
    leap_norm: bool = param(
        False, "Leap: normalise increments (path length d1); False = path energy d2"
    )
    leap_stabilise: bool = param(True, "Leap: stabiliser (-|delta f|)")


@functools.lru_cache(maxsize=8)
def _family(num_train_warps: int, num_test_warps: int):
    return make_digits_family(num_train_warps=num_train_warps, num_test_warps=num_test_warps)


def _loss(params, batch):
    x, y = batch
    return batch_loss(cross_entropy, mlp_apply(params, x), y)


def _meta_train(method: str, cfg: LeapFewshotConfig, family, theta0, key, num_warps):
    """Meta-train ``method`` from ``theta0`` for ``cfg.meta_iters`` iterations (lax.scan),
    on tasks whose alphabet is one of the first ``num_warps`` meta-train warps (traced)."""
    opt = optax.adam(cfg.meta_lr)
    sampler = functools.partial(
        sample_digits_task,
        family,
        split="train",
        num_ways=cfg.num_ways,
        num_shots=cfg.num_shots,
        num_query=cfg.num_query,
        num_warps=num_warps,
    )
    kw = dict(optimizer=opt, loss_fn=_loss)
    inner = dict(inner_lr=cfg.inner_lr, num_steps=cfg.inner_steps)
    options = LeapOptions(cfg.leap_loss, cfg.leap_norm, cfg.leap_stabilise)
    if method == "leap":
        state0 = leap.leap_init(theta0, opt)
        upd = lambda s, t: leap.leap_update(s, t, options=options, **kw, **inner)
    elif method == "reptile":
        state0 = reptile.reptile_init(theta0, opt)
        upd = lambda s, t: reptile.reptile_update(s, t, **kw, **inner)
    elif method == "fomaml":
        state0 = maml.maml_init(theta0, opt)
        upd = lambda s, t: maml.maml_update(s, t, first_order=True, **kw, **inner)
    elif method == "finetune":
        state0 = baselines.pretrain_init(theta0, opt)
        upd = lambda s, t: baselines.pretrain_update(s, t, **kw)
    else:
        raise ValueError(f"unknown method {method!r}; allowed: {TRAINED}")

    def body(state, k):
        tasks = sample_tasks(sampler, k, cfg.meta_batch)
        return upd(state, tasks)

    state, losses = jax.lax.scan(body, state0, jax.random.split(key, cfg.meta_iters))
    return state.params, losses


def _evaluate(cfg: LeapFewshotConfig, init, test_tasks):
    """Training curves (support loss) and final query accuracy on the held-out tasks."""

    def one(task):
        theta, curve = training_curve(
            _loss, init, task.support, inner_lr=cfg.inner_lr, num_steps=cfg.inner_steps
        )
        xq, yq = task.query
        return curve, accuracy(mlp_apply(theta, xq), yq)

    curves, accs = jax.vmap(one)(test_tasks)
    return curves.mean(0), accs.mean()


def _validate(cfg: LeapFewshotConfig) -> None:
    if list(cfg.pool_sizes) != sorted(set(cfg.pool_sizes)):
        raise ValueError(f"pool_sizes must be strictly increasing, got {cfg.pool_sizes}")
    fam = _family(max(cfg.pool_sizes), cfg.num_test_warps)
    for split in ("train", "test"):
        check_digits_task(fam, split, cfg.num_ways, cfg.num_shots, cfg.num_query)


def run(cfg: LeapFewshotConfig, key: jax.Array) -> dict[str, jnp.ndarray]:
    """One seed: meta-train every method at every pool size, evaluate on held-out tasks."""
    _validate(cfg)
    family = _family(max(cfg.pool_sizes), cfg.num_test_warps)
    k_init, k_train, k_test = jax.random.split(key, 3)
    sizes = (64, *cfg.hidden, cfg.num_ways)
    theta0 = mlp_init(k_init, sizes)
    test_sampler = functools.partial(
        sample_digits_task,
        family,
        split="test",
        num_ways=cfg.num_ways,
        num_shots=cfg.num_shots,
        num_query=cfg.num_query,
    )
    test_tasks = sample_tasks(test_sampler, k_test, cfg.num_test_tasks)
    out: dict[str, jnp.ndarray] = {}
    pools = jnp.asarray(cfg.pool_sizes)
    inits, meta_losses = [], {}
    for method in TRAINED:  # one compiled scan per method, vmapped over pool sizes
        init, losses = jax.vmap(
            lambda n, method=method: _meta_train(method, cfg, family, theta0, k_train, n)
        )(pools)
        inits.append(init)
        meta_losses[method] = losses[-1]
    inits.append(
        jax.tree.map(
            lambda x: jnp.broadcast_to(x, (len(cfg.pool_sizes),) + x.shape),
            baselines.no_pretraining(theta0),
        )
    )
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *inits)  # (method, pool, ...)
    curves, accs = jax.vmap(jax.vmap(lambda p: _evaluate(cfg, p, test_tasks)))(stacked)
    for i, method in enumerate(METHODS):
        for j, n in enumerate(cfg.pool_sizes):
            out[f"auc_n{n}/{method}"] = curves[i, j].mean()
            out[f"acc_n{n}/{method}"] = accs[i, j]
        out[f"curve/{method}"] = curves[i, -1]
        if method in meta_losses:
            out[f"meta_loss/{method}"] = meta_losses[method]
    return out


def verdict(metrics_list, cfg: LeapFewshotConfig) -> Verdict:
    """Checks 1-5 of the module docstring, Holm-corrected as one family."""
    n_min, n_max = min(cfg.pool_sizes), max(cfg.pool_sizes)
    get = lambda key: np.array([float(m[key]) for m in metrics_list])
    leap_max = get(f"auc_n{n_max}/leap")
    raw = []
    for b in BASELINES:
        other = get(f"auc_n{n_max}/{b}")
        r = stats.paired_t(other, leap_max, alternative="greater")
        raw.append((f"Leap beats {b} (AUC, n={n_max})", other - leap_max, r))

    def gap(n):
        leap_n = get(f"auc_n{n}/leap")
        best = np.min(np.stack([get(f"auc_n{n}/{b}") for b in BASELINES]), axis=0)
        return best - leap_n

    growth = gap(n_max) - gap(n_min)
    r = stats.one_sample_t(growth, 0.0, alternative="greater")
    raw.append((f"gap grows from n={n_min} to n={n_max}", growth, r))
    adj = stats.holm([x[2].p_value for x in raw]) if len(metrics_list) > 1 else [1.0] * len(raw)
    checks = []
    for (name, diff, r), p in zip(raw, adj, strict=True):
        mean = float(np.mean(diff))
        lo, hi = stats.mean_ci(diff)[1:]
        checks.append(
            Check(
                name=name,
                statistic="mean paired difference (baseline AUC - Leap AUC)"
                if "beats" in name
                else "mean gap(n_max) - gap(n_min)",
                value=mean,
                passed=bool(p < 0.05 and mean > 0),
                threshold="Holm-adjusted one-sided p < 0.05 and mean difference > 0",
                p_value=float(p),
                effect_size=float(r.effect_size),
                ci=(float(lo), float(hi)),
                test=f"{r.test}, one-sided, Holm over {len(raw)}",
            )
        )
    means = {m: float(np.mean(get(f"auc_n{n_max}/{m}"))) for m in METHODS}
    summary = (
        f"AUC of the {cfg.inner_steps}-step training curve on held-out tasks (n={n_max} "
        "pretraining alphabets): " + ", ".join(f"{m} {v:.3f}" for m, v in means.items())
    )
    notes = (
        "Digits (8x8) with affine alphabets replace Omniglot; an MLP replaces the paper's "
        "convnet; all methods share the same random start, task sequence and Adam outer "
        f"optimiser (lr {cfg.meta_lr}) for {cfg.meta_iters} meta-iterations of "
        f"{cfg.meta_batch} tasks. MAML (second order) is not run at 100 inner steps. "
        f"Leap variant: loss term {cfg.leap_loss}, normalisation {cfg.leap_norm}, stabiliser "
        f"{cfg.leap_stabilise}. In a 2-seed pilot (300 meta-iterations, 16 alphabets) the "
        "normalised variants (path length d1, with or without the loss term) drifted away "
        "from a good initialisation as meta-training went on (AUC 0.30 at 100 iterations, "
        "1.0-2.0 at 300, worse than no pretraining), while the path-energy variant (d2) "
        "kept improving (0.19 vs Reptile 0.24); the quick preset therefore uses d2. With "
        "unit-length increments every late, near-converged step weighs as much as an early "
        "one, and Adam keeps following their average direction."
    )
    return Verdict(checks=tuple(checks), summary=summary, notes=notes)


EXPERIMENT = Experiment(
    name="leap-fewshot",
    paper=Paper(
        "Transferring Knowledge across Learning Processes",
        "Flennerhag, Moreno, Lawrence, Damianou",
        2019,
        "1812.01054",
    ),
    claim=(
        "On many-step (100-step) few-shot tasks, Leap's initialisation gives a smaller area "
        "under the training curve on held-out tasks than Reptile, FOMAML, fine-tuning and no "
        "pretraining, with a gap that grows with the number of pretraining tasks."
    ),
    config_cls=LeapFewshotConfig,
    presets={
        "smoke": LeapFewshotConfig(
            num_shots=2,
            num_query=2,
            hidden=(8,),
            inner_steps=3,
            meta_iters=2,
            meta_batch=2,
            pool_sizes=(1, 2),
            num_test_warps=2,
            num_test_tasks=2,
        ),
        "quick": LeapFewshotConfig(),
        "full": LeapFewshotConfig(
            hidden=(128, 128),
            meta_iters=5000,
            meta_batch=20,
            pool_sizes=(1, 5, 10, 20, 40),
            num_test_warps=40,
            num_test_tasks=100,
        ),
    },
    run=run,
    verdict=verdict,
    seeds={"smoke": 2, "quick": 6, "full": 10},
    tags=("metalearn", "leap"),
)
