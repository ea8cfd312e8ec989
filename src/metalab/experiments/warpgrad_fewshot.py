r"""``warpgrad-fewshot``: WarpGrad (Flennerhag et al., ICLR 2020) on few-shot and long-horizon
tasks.

Two parts, each a paired comparison within seeds (same random task-layer start, same task
sequence, same selection budget):

(A) Few-shot. N-way K-shot digits with affine alphabets (disjoint meta-train / meta-test
    classes and warps; :mod:`metalab.metalearn.tasks`), ``fs_inner_steps`` SGD steps, on a
    convnet (3x3 conv blocks). MAML meta-learns the initialisation; Warp-MAML
    (``metalearn.warpgrad(init_objective="maml")``) meta-learns the same task layers'
    initialisation with MAML's objective *and* convolutional warp layers (a residual
    3x3-conv + ReLU + 1x1-conv block after each task block, identity at initialisation) with
    WarpGrad's trajectory objective, online. Measure: query accuracy after adaptation on
    held-out tasks (higher is better).
(B) Long horizon. ``lh_inner_steps`` (100) SGD steps on a random sum of sinusoids
    (:func:`~metalab.metalearn.tasks.long_horizon_task`), or, with ``long_horizon="metamaze"``
    (the full preset), REINFORCE steps on gymnax's MetaMaze with held-out goals. Leap
    meta-learns an initialisation of an MLP; Warp-Leap adds non-linear residual warp layers.
    Measure: area under the training curve on held-out tasks (mean support loss over the K+1
    iterates; in the maze, minus the mean return), lower is better.

Selection (inside ``run``, re-run with every seed): every method, baseline and warped alike,
picks its inner step size from ``*_inner_lr_grid`` and its outer Adam learning rate (for the
warped methods: of the initialisation and the warps) from ``*_outer_lr_grid``, 2 x 2 = 4
candidates each, meta-trained for ``*_select_iters`` iterations and scored on validation
tasks disjoint from the evaluation: (A) meta-train classes under a third pool of warps;
(B) regression tasks drawn with an independent key (maze: meta-train goals).

Verdict (rules declared from the paper's claim; Holm over the two): Warp-MAML's query
accuracy exceeds MAML's, and Warp-Leap's AUC is below Leap's (paired t over seeds).
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalab import metalearn
from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Paper, Verdict, param
from metalab.metalearn import maze
from metalab.metalearn.nets import (
    accuracy,
    batch_loss,
    convnet_apply,
    convnet_init,
    cross_entropy,
    mse,
    warped_apply,
    warped_init,
)
from metalab.metalearn.tasks import (
    check_digits_task,
    long_horizon_task,
    make_digits_family,
    sample_digits_task,
)

LONG_HORIZON = ("regression", "metamaze")

RULES = (
    Rule(
        "Warp-MAML beats MAML",
        "superiority",
        a="fewshot_acc/warp_maml",
        b="fewshot_acc/maml",
        direction="greater",
        group="claim",
        doc="paper: Warp-MAML's few-shot accuracy exceeds MAML's",
    ),
    Rule(
        "Warp-Leap beats Leap",
        "superiority",
        a="lh_auc/warp_leap",
        b="lh_auc/leap",
        direction="less",
        group="claim",
        doc="paper: Warp-Leap learns long-horizon tasks faster than Leap (lower AUC)",
    ),
)


@dataclass(frozen=True)
class WarpGradFewshotConfig:
    fs_channels: tuple[int, ...] = param((16, 16), "(A) channels of the conv blocks", lo=1)
    num_ways: int = param(5, "(A) classes per few-shot task", lo=2, hi=5)
    num_shots: int = param(5, "(A) support images per class", lo=1, hi=80)
    num_query: int = param(10, "(A) query images per class", lo=1)
    fs_inner_steps: int = param(5, "(A) inner SGD steps", lo=1, hi=50)
    fs_meta_iters: int = param(300, "(A) meta-iterations", lo=1)
    fs_meta_batch: int = param(8, "(A) tasks per meta-iteration", lo=1)
    num_test_warps: int = param(20, "(A) held-out alphabets", lo=1)
    num_train_warps: int = param(20, "(A) meta-train alphabets", lo=1)
    num_val_warps: int = param(4, "(A) validation alphabets (meta-train classes)", lo=1)
    fs_inner_lr_grid: tuple[float, ...] = param(
        (0.1, 0.3), "(A) selection: inner step sizes", lo=1e-5, hi=10.0
    )
    fs_outer_lr_grid: tuple[float, ...] = param(
        (3e-4, 1e-3), "(A) selection: outer Adam learning rates", lo=1e-7, hi=1.0
    )
    fs_select_iters: int = param(150, "(A) selection: meta-iterations per candidate", lo=1)
    long_horizon: str = param(
        "regression",
        "(B) task family: sum-of-sinusoids regression or gymnax MetaMaze",
        choices=LONG_HORIZON,
    )
    lh_hidden: tuple[int, ...] = param((40, 40), "(B) hidden widths of the MLP", lo=1)
    lh_inner_steps: int = param(100, "(B) inner steps per task", lo=1, hi=1000)
    lh_inner_lr_grid: tuple[float, ...] = param(
        (0.001, 0.003), "(B) selection: inner step sizes", lo=1e-6, hi=10.0
    )
    lh_outer_lr_grid: tuple[float, ...] = param(
        (3e-4, 1e-3), "(B) selection: outer Adam learning rates", lo=1e-7, hi=1.0
    )
    lh_select_iters: int = param(100, "(B) selection: meta-iterations per candidate", lo=1)
    lh_meta_iters: int = param(200, "(B) meta-iterations", lo=1)
    lh_meta_batch: int = param(4, "(B) tasks per meta-iteration", lo=1)
    lh_points: int = param(50, "(B) regression: support (and query) points per task", lo=1)
    lh_components: int = param(3, "(B) regression: sinusoids per target function", lo=1)
    maze_horizon: int = param(30, "(B) maze: steps per episode", lo=2)
    maze_episodes: int = param(8, "(B) maze: episodes per inner step", lo=2)
    num_test_tasks: int = param(40, "held-out tasks per seed (both parts)", lo=1)
    num_val_tasks: int = param(16, "selection: validation tasks per seed (both parts)", lo=1)


@functools.lru_cache(maxsize=4)
def _family(num_train_warps: int, num_test_warps: int, num_val_warps: int):
    return make_digits_family(
        num_train_warps=num_train_warps,
        num_test_warps=num_test_warps,
        num_val_warps=num_val_warps,
    )


def _ce(task_p, warp_p, batch):
    x, y = batch
    return batch_loss(cross_entropy, convnet_apply(task_p, warp_p, x), y)


def _sq(task_p, warp_p, batch):
    x, y = batch
    return batch_loss(mse, warped_apply(task_p, warp_p, x), y)


class _Part:
    """One comparison: a baseline and its warped version on one task family."""

    def __init__(self, warp_loss, base, warped, init_objective, steps, batch):
        self.warp_loss, self.base, self.warped = warp_loss, base, warped
        self.init_objective, self.steps, self.batch = init_objective, steps, batch

    def learner(self, method, inner_lr, outer_lr):
        """``method`` is the baseline's name or ``"warp_" + name``; plain methods run on the
        same network with no warp layers."""
        kw = dict(inner_lr=inner_lr, num_steps=self.steps, outer=optax.adam(outer_lr))
        if method.startswith("warp_"):
            return metalearn.warpgrad(self.warp_loss, init_objective=self.init_objective, **kw)
        return metalearn.METHODS[method](lambda p, b: self.warp_loss(p, (), b), **kw)

    def params(self, method):
        return metalearn.WarpParams(*self.warped) if method.startswith("warp_") else self.base

    def train(self, method, inner_lr, outer_lr, key, sample, iters):
        state, _ = metalearn.meta_train(
            self.learner(method, inner_lr, outer_lr),
            self.params(method),
            key,
            sample,
            num_iters=iters,
            batch_size=self.batch,
        )
        p = state.params
        return (p.init, p.warp) if method.startswith("warp_") else (p, ())

    def select(self, method, grid, key, sample, iters, val_tasks, score):
        """Validation score (lower is better) of every (inner lr, outer lr) candidate; return
        the best pair and its score."""
        inner, outer = (jnp.asarray(g) for g in zip(*grid, strict=True))

        def one(a, b):
            init, warp = self.train(method, a, b, key, sample, iters)
            return score(init, warp, a, val_tasks)

        s = jax.vmap(one)(inner, outer)
        s = jnp.where(jnp.isfinite(s), s, jnp.inf)  # a diverged candidate is never chosen
        i = jnp.argmin(s)
        return inner[i], outer[i], s[i]


def _run_part(part, methods, grids, keys, sample, val_tasks, test_tasks, score, report, iters):
    k_sel, k_train = keys
    out = {}
    for method in methods:
        a, b, s = part.select(method, grids, k_sel, sample, iters[0], val_tasks, score)
        init, warp = part.train(method, a, b, k_train, sample, iters[1])
        out.update(report(method, init, warp, a, test_tasks))
        out[f"select_inner_lr/{method}"] = a
        out[f"select_outer_lr/{method}"] = b
        out[f"select_score/{method}"] = s
    return out


def _grid(inner, outer):
    return tuple(itertools.product(inner, outer))


def _fewshot(cfg: WarpGradFewshotConfig, key) -> dict[str, jnp.ndarray]:
    family = _family(cfg.num_train_warps, cfg.num_test_warps, cfg.num_val_warps)
    k_init, k_train, k_test, k_sel, k_val = jax.random.split(key, 5)
    net = dict(channels=cfg.fs_channels, num_classes=cfg.num_ways)
    task0, warp0 = convnet_init(k_init, **net)
    part = _Part(_ce, task0, (task0, warp0), "maml", cfg.fs_inner_steps, cfg.fs_meta_batch)
    kw = dict(num_ways=cfg.num_ways, num_shots=cfg.num_shots, num_query=cfg.num_query)
    split = lambda s: functools.partial(sample_digits_task, family, split=s, **kw)
    draw = lambda s, k, n: jax.vmap(split(s))(jax.random.split(k, n))

    def acc(init, warp, inner_lr, tasks):
        def one(task):
            theta, _ = metalearn.training_curve(
                lambda p, b: _ce(p, warp, b),
                init,
                task.support,
                inner_lr=inner_lr,
                num_steps=cfg.fs_inner_steps,
            )
            return accuracy(convnet_apply(theta, warp, task.query[0]), task.query[1])

        return jnp.mean(jax.vmap(one)(tasks))

    return _run_part(
        part,
        ("maml", "warp_maml"),
        _grid(cfg.fs_inner_lr_grid, cfg.fs_outer_lr_grid),
        (k_sel, k_train),
        split("train"),
        draw("val", k_val, cfg.num_val_tasks),
        draw("test", k_test, cfg.num_test_tasks),
        lambda i, w, a, t: -acc(i, w, a, t),
        lambda m, i, w, a, t: {f"fewshot_acc/{m}": acc(i, w, a, t)},
        (cfg.fs_select_iters, cfg.fs_meta_iters),
    )


def _long_horizon(cfg: WarpGradFewshotConfig, key) -> dict[str, jnp.ndarray]:
    k_init, k_train, k_test, k_sel, k_val = jax.random.split(key, 5)
    if cfg.long_horizon == "regression":
        sizes = (1, *cfg.lh_hidden, 1)
        sampler = functools.partial(
            long_horizon_task,
            num_support=cfg.lh_points,
            num_query=cfg.lh_points,
            num_components=cfg.lh_components,
        )
        val_sampler = test_sampler = sampler  # disjoint by independent keys
        warp_loss = _sq
    else:
        env, env_params = maze.make_env()
        sizes = (maze.obs_size(env), *cfg.lh_hidden, env.num_actions)
        rl_loss = maze.make_maze_loss(
            env, env_params, horizon=cfg.maze_horizon, num_episodes=cfg.maze_episodes
        )
        warp_loss = lambda p, w, b: rl_loss(lambda q, o: warped_apply(q, w, o), p, b)
        sampler = functools.partial(maze.sample_maze_task, env, split="train")
        val_sampler = functools.partial(maze.sample_maze_task, env, split="val")
        test_sampler = functools.partial(maze.sample_maze_task, env, split="test")
    task0, warp0 = warped_init(k_init, sizes)
    part = _Part(warp_loss, task0, (task0, warp0), "leap", cfg.lh_inner_steps, cfg.lh_meta_batch)

    def curve(init, warp, inner_lr, tasks):
        def one(task):
            return metalearn.training_curve(
                lambda p, b: warp_loss(p, warp, b),
                init,
                task.support,
                inner_lr=inner_lr,
                num_steps=cfg.lh_inner_steps,
            )[1]

        return jax.vmap(one)(tasks).mean(0)

    def report(m, init, warp, a, tasks):
        c = curve(init, warp, a, tasks)
        return {f"lh_auc/{m}": c.mean(), f"lh_curve/{m}": c}

    return _run_part(
        part,
        ("leap", "warp_leap"),
        _grid(cfg.lh_inner_lr_grid, cfg.lh_outer_lr_grid),
        (k_sel, k_train),
        sampler,
        jax.vmap(val_sampler)(jax.random.split(k_val, cfg.num_val_tasks)),
        jax.vmap(test_sampler)(jax.random.split(k_test, cfg.num_test_tasks)),
        lambda i, w, a, t: curve(i, w, a, t).mean(),
        report,
        (cfg.lh_select_iters, cfg.lh_meta_iters),
    )


def _validate(cfg: WarpGradFewshotConfig) -> None:
    fam = _family(cfg.num_train_warps, cfg.num_test_warps, cfg.num_val_warps)
    for split in ("train", "val", "test"):
        check_digits_task(fam, split, cfg.num_ways, cfg.num_shots, cfg.num_query)
    if cfg.long_horizon not in LONG_HORIZON:
        raise ValueError(f"long_horizon must be one of {LONG_HORIZON}, got {cfg.long_horizon!r}")
    if 8 % 2 ** len(cfg.fs_channels):
        raise ValueError(f"fs_channels: at most 3 conv blocks on 8x8 images, got {cfg.fs_channels}")


def run(cfg: WarpGradFewshotConfig, key: jax.Array) -> dict[str, jnp.ndarray]:
    """One seed: part (A) MAML vs Warp-MAML, part (B) Leap vs Warp-Leap, each with its
    validation selection."""
    _validate(cfg)
    k_a, k_b = jax.random.split(key)
    return {**_fewshot(cfg, k_a), **_long_horizon(cfg, k_b)}


def verdict(data: dict[str, np.ndarray], cfg: WarpGradFewshotConfig) -> Verdict:
    """The declared RULES on the seed-stacked metrics (Holm over the two)."""
    checks = judge(RULES, data)
    m = {k: float(np.mean(v)) for k, v in data.items() if np.ndim(v) == 1}
    summary = (
        f"few-shot accuracy MAML {m['fewshot_acc/maml']:.3f} vs Warp-MAML "
        f"{m['fewshot_acc/warp_maml']:.3f}; {cfg.lh_inner_steps}-step AUC Leap "
        f"{m['lh_auc/leap']:.4f} vs Warp-Leap {m['lh_auc/warp_leap']:.4f}"
    )
    chosen = "; ".join(
        f"{k.split('/')[1]} inner {np.median(data[k]):g} / outer "
        f"{np.median(data[k.replace('inner', 'outer')]):g}"
        for k in sorted(data)
        if k.startswith("select_inner_lr/")
    )
    notes = (
        "Digits with affine alphabets replace miniImageNet/Omniglot; (A) a 2-block convnet "
        "with convolutional residual warps, (B) an MLP with non-linear residual warps; warps "
        "are meta-learned with the online trajectory objective (the paper's Algorithm 1: "
        "one-step query loss from every iterate of every task's inner loop, iterates held "
        "constant), the initialisation with MAML's (A) or Leap's (B, path energy) objective. "
        "Selection inside each seed on validation tasks disjoint from the evaluation, the "
        "same 2 x 2 grid (inner lr x outer lr) for every method and baseline; median choices: "
        f"{chosen}."
    )
    return Verdict(checks=checks, summary=summary, notes=notes)


_SMOKE = WarpGradFewshotConfig(
    num_shots=2,
    num_query=2,
    fs_channels=(4,),
    fs_inner_steps=2,
    fs_meta_iters=2,
    fs_meta_batch=2,
    num_test_warps=2,
    num_train_warps=2,
    num_val_warps=2,
    fs_select_iters=2,
    lh_hidden=(8,),
    lh_inner_steps=3,
    lh_meta_iters=2,
    lh_select_iters=2,
    lh_meta_batch=2,
    lh_points=5,
    num_test_tasks=2,
    num_val_tasks=2,
    fs_inner_lr_grid=(0.3,),
    lh_inner_lr_grid=(0.003,),
)

# The quick preset is the class defaults shortened to fit minutes on 2 CPU cores. Estimated from
# timed 10-iteration runs of one seed's part A (not a full run): at the defaults (1,800
# meta-iterations of 8 tasks per seed in part A) ~0.3 s per meta-iteration after the convolution
# fix in metalearn.nets, ~9 CPU-minutes per seed; before the fix 1.8 s, ~7 CPU-hours for 8 seeds.
# Shorter meta-training is given larger outer learning rates a priori (the grids are chosen on
# validation tasks as before, for every method alike).
_QUICK = WarpGradFewshotConfig(
    fs_meta_batch=4,
    fs_select_iters=50,
    fs_meta_iters=150,
    fs_outer_lr_grid=(1e-3, 3e-3),
    lh_select_iters=40,
    lh_meta_iters=120,
    lh_outer_lr_grid=(1e-3, 3e-3),
)

EXPERIMENT = Experiment(
    name="warpgrad-fewshot",
    paper=Paper(
        "Meta-Learning with Warped Gradient Descent",
        "Flennerhag, Rusu, Pascanu, Visin, Yin, Hadsell",
        2020,
        "1909.00025",
    ),
    claim=(
        "Warp layers meta-learned with WarpGrad's trajectory objective improve on the methods "
        "they extend: Warp-MAML beats MAML on few-shot learning and Warp-Leap beats Leap on "
        "long-horizon (many-step) tasks."
    ),
    config_cls=WarpGradFewshotConfig,
    presets={
        "smoke": _SMOKE,
        "quick": _QUICK,
        "full": WarpGradFewshotConfig(
            fs_channels=(32, 32),
            fs_meta_iters=10000,
            fs_select_iters=2000,
            fs_meta_batch=16,
            long_horizon="metamaze",
            lh_hidden=(64, 64),
            lh_inner_steps=100,
            lh_inner_lr_grid=(0.03, 0.1),
            lh_meta_iters=2000,
            lh_select_iters=500,
            lh_meta_batch=8,
            maze_horizon=50,
            maze_episodes=16,
            num_test_tasks=100,
            num_val_tasks=40,
        ),
    },
    run=run,
    verdict=verdict,
    rules=RULES,
    seeds={"smoke": 2, "quick": 8, "full": 10},
    tags=("metalearn", "warpgrad"),
)
