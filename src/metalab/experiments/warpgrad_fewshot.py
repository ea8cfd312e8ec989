r"""``warpgrad-fewshot``: WarpGrad (Flennerhag et al., ICLR 2020) on few-shot and long-horizon
tasks.

Two parts, each a paired comparison within seeds (same random task-layer start, same task
sequence, same outer optimiser for the initialisation):

(A) Few-shot. N-way K-shot digits with affine alphabets (disjoint meta-train / meta-test
    classes and warps; :mod:`metalab.metalearn.tasks`), ``fs_inner_steps`` SGD steps. MAML
    meta-learns the initialisation of an MLP; Warp-MAML meta-learns the initialisation of the
    same task layers with MAML's objective *and* linear warp layers (identity-initialised,
    after each hidden task layer) with WarpGrad's one-step objective over a replay buffer.
    Measure: query accuracy after adaptation on held-out tasks (higher is better).
(B) Long horizon. ``lh_inner_steps`` (100) SGD steps on a random sum of sinusoids
    (:func:`~metalab.metalearn.tasks.long_horizon_task`), or, with ``long_horizon="metamaze"``
    (the full preset), REINFORCE steps on gymnax's MetaMaze with held-out goals. Leap
    meta-learns an initialisation; Warp-Leap adds warp layers meta-learned with the one-step
    objective. Measure: area under the training curve on held-out tasks (mean support loss
    over the K+1 iterates; in the maze, minus the mean return), lower is better.

Verdict (written from the paper's claim before any numbers were seen):

1. Warp-MAML beats MAML: one-sided paired t-test over seeds on ``acc_warp - acc_maml``.
2. Warp-Leap beats Leap: one-sided paired t-test on ``AUC_leap - AUC_warp``.

Both p-values Holm-corrected; a check passes if its adjusted p < 0.05 and its mean effect
is in the claimed direction.
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
from metalab.metalearn import leap, maml, maze, warpgrad
from metalab.metalearn.adapt import LeapOptions, training_curve
from metalab.metalearn.nets import (
    accuracy,
    batch_loss,
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
    sample_tasks,
)

LONG_HORIZON = ("regression", "metamaze")


@dataclass(frozen=True)
class WarpGradFewshotConfig:
    num_ways: int = param(5, "(A) classes per few-shot task", lo=2, hi=5)
    num_shots: int = param(5, "(A) support images per class", lo=1, hi=80)
    num_query: int = param(10, "(A) query images per class", lo=1)
    fs_hidden: tuple[int, ...] = param((32, 32), "(A) hidden widths of the MLP", lo=1)
    fs_inner_steps: int = param(5, "(A) inner SGD steps", lo=1, hi=50)
    fs_inner_lr: float = param(0.3, "(A) inner SGD step size", lo=1e-5, hi=10.0)
    fs_meta_iters: int = param(300, "(A) meta-iterations", lo=1)
    fs_meta_batch: int = param(8, "(A) tasks per meta-iteration", lo=1)
    num_test_warps: int = param(20, "(A) held-out alphabets", lo=1)
    num_train_warps: int = param(20, "(A) meta-train alphabets", lo=1)
    long_horizon: str = param(
        "regression",
        "(B) task family: sum-of-sinusoids regression or gymnax MetaMaze",
        choices=LONG_HORIZON,
    )
    lh_hidden: tuple[int, ...] = param((40, 40), "(B) hidden widths of the MLP", lo=1)
    lh_inner_steps: int = param(100, "(B) inner steps per task", lo=1, hi=1000)
    lh_inner_lr: float = param(0.003, "(B) inner SGD step size", lo=1e-6, hi=10.0)
    leap_norm: bool = param(
        False, "(B) regression: Leap path length d1 (True) or energy d2 (False)"
    )
    lh_meta_iters: int = param(200, "(B) meta-iterations", lo=1)
    lh_meta_batch: int = param(4, "(B) tasks per meta-iteration", lo=1)
    lh_points: int = param(50, "(B) regression: support (and query) points per task", lo=1)
    lh_components: int = param(3, "(B) regression: sinusoids per target function", lo=1)
    maze_horizon: int = param(30, "(B) maze: steps per episode", lo=2)
    maze_episodes: int = param(8, "(B) maze: episodes per inner step", lo=2)
    num_test_tasks: int = param(40, "held-out tasks per seed (both parts)", lo=1)
    meta_lr: float = param(1e-3, "outer Adam learning rate of the initialisation", lo=1e-6, hi=1.0)
    fs_warp_lr: float = param(
        1e-4, "(A) outer Adam learning rate of the warp layers", lo=1e-7, hi=1.0
    )
    lh_warp_lr: float = param(
        1e-3, "(B) outer Adam learning rate of the warp layers", lo=1e-7, hi=1.0
    )
    num_snapshots: int = param(4, "task-parameter snapshots kept per inner loop", lo=1)
    warp_batch: int = param(32, "snapshots per warp update", lo=1)
    buffer_batches: int = param(4, "replay buffer capacity, in meta-batches of snapshots", lo=1)


@functools.lru_cache(maxsize=4)
def _family(num_train_warps: int, num_test_warps: int):
    return make_digits_family(num_train_warps=num_train_warps, num_test_warps=num_test_warps)


def _ce(task_p, warp_p, batch):
    x, y = batch
    return batch_loss(cross_entropy, warped_apply(task_p, warp_p, x), y)


def _sq(task_p, warp_p, batch):
    x, y = batch
    return batch_loss(mse, warped_apply(task_p, warp_p, x), y)


def _meta_train(
    method,
    warp_loss,
    sampler,
    theta0,
    warp0,
    example_task,
    key,
    *,
    iters,
    batch,
    inner_lr,
    inner_steps,
    cfg,
    leap_options,
    warp_lr,
):
    """Meta-train one method with a lax.scan; returns (init, warp)."""
    opt = optax.adam(cfg.meta_lr)
    if method in ("maml", "leap"):
        loss_fn = lambda p, b: warp_loss(p, warp0, b)  # identity warps: the plain MLP
        if method == "maml":
            state0 = maml.maml_init(theta0, opt)
            upd = lambda s, k, t: maml.maml_update(
                s, t, optimizer=opt, loss_fn=loss_fn, inner_lr=inner_lr, num_steps=inner_steps
            )
        else:
            state0 = leap.leap_init(theta0, opt)
            upd = lambda s, k, t: leap.leap_update(
                s,
                t,
                optimizer=opt,
                loss_fn=loss_fn,
                inner_lr=inner_lr,
                num_steps=inner_steps,
                options=leap_options,
            )
    else:
        wopt = optax.adam(warp_lr)
        s = min(cfg.num_snapshots, inner_steps)
        state0 = warpgrad.warpgrad_init(
            theta0,
            warp0,
            example_task,
            init_optimizer=opt,
            warp_optimizer=wopt,
            capacity=cfg.buffer_batches * batch * s,
        )
        upd = lambda st, k, t: warpgrad.warpgrad_update(
            st,
            k,
            t,
            warp_loss_fn=warp_loss,
            init_optimizer=opt,
            warp_optimizer=wopt,
            inner_lr=inner_lr,
            num_steps=inner_steps,
            init_method="maml" if method == "warp_maml" else "leap",
            num_snapshots=s,
            warp_batch=cfg.warp_batch,
            leap_options=leap_options,
        )

    def body(state, k):
        k_t, k_u = jax.random.split(k)
        new, _ = upd(state, k_u, sample_tasks(sampler, k_t, batch))
        return new, None

    state, _ = jax.lax.scan(body, state0, jax.random.split(key, iters))
    if method in ("maml", "leap"):
        return state.params, warp0
    return state.init, state.warp


def _fewshot(cfg: WarpGradFewshotConfig, key) -> dict[str, jnp.ndarray]:
    family = _family(cfg.num_train_warps, cfg.num_test_warps)
    k_init, k_train, k_test = jax.random.split(key, 3)
    theta0, warp0 = warped_init(k_init, (64, *cfg.fs_hidden, cfg.num_ways))
    kw = dict(num_ways=cfg.num_ways, num_shots=cfg.num_shots, num_query=cfg.num_query)
    train_s = functools.partial(sample_digits_task, family, split="train", **kw)
    test_tasks = sample_tasks(
        functools.partial(sample_digits_task, family, split="test", **kw),
        k_test,
        cfg.num_test_tasks,
    )
    example = train_s(k_test)
    out = {}
    for method in ("maml", "warp_maml"):
        init, warp = _meta_train(
            method,
            _ce,
            train_s,
            theta0,
            warp0,
            example,
            k_train,
            iters=cfg.fs_meta_iters,
            batch=cfg.fs_meta_batch,
            inner_lr=cfg.fs_inner_lr,
            inner_steps=cfg.fs_inner_steps,
            cfg=cfg,
            leap_options=LeapOptions(),
            warp_lr=cfg.fs_warp_lr,
        )

        def acc(task, init=init, warp=warp):
            lf = lambda p, b: _ce(p, warp, b)
            theta, _ = training_curve(
                lf, init, task.support, inner_lr=cfg.fs_inner_lr, num_steps=cfg.fs_inner_steps
            )
            xq, yq = task.query
            return accuracy(warped_apply(theta, warp, xq), yq)

        out[f"fewshot_acc/{method}"] = jnp.mean(jax.vmap(acc)(test_tasks))
    return out


def _long_horizon(cfg: WarpGradFewshotConfig, key) -> dict[str, jnp.ndarray]:
    k_init, k_train, k_test = jax.random.split(key, 3)
    if cfg.long_horizon == "regression":
        sizes = (1, *cfg.lh_hidden, 1)
        sampler = functools.partial(
            long_horizon_task,
            num_support=cfg.lh_points,
            num_query=cfg.lh_points,
            num_components=cfg.lh_components,
        )
        test_sampler = sampler
        warp_loss = _sq
        options = LeapOptions(normalise=cfg.leap_norm)
    else:
        env, env_params = maze.make_env()
        sizes = (maze.obs_size(env), *cfg.lh_hidden, env.num_actions)
        rl_loss = maze.make_maze_loss(
            env, env_params, horizon=cfg.maze_horizon, num_episodes=cfg.maze_episodes
        )
        warp_loss = lambda p, w, b: rl_loss(lambda q, o: warped_apply(q, w, o), p, b)
        sampler = functools.partial(maze.sample_maze_task, env, split="train")
        test_sampler = functools.partial(maze.sample_maze_task, env, split="test")
        # the loss coordinate is -return from one stochastic rollout batch: too noisy for
        # Leap's loss term, so the maze uses the parameter path only (normalised).
        options = LeapOptions(use_loss=False)
    theta0, warp0 = warped_init(k_init, sizes)
    test_tasks = sample_tasks(test_sampler, k_test, cfg.num_test_tasks)
    example = sampler(k_test)
    out = {}
    for method in ("leap", "warp_leap"):
        init, warp = _meta_train(
            method,
            warp_loss,
            sampler,
            theta0,
            warp0,
            example,
            k_train,
            iters=cfg.lh_meta_iters,
            batch=cfg.lh_meta_batch,
            inner_lr=cfg.lh_inner_lr,
            inner_steps=cfg.lh_inner_steps,
            cfg=cfg,
            leap_options=options,
            warp_lr=cfg.lh_warp_lr,
        )

        def curve(task, init=init, warp=warp):
            lf = lambda p, b: warp_loss(p, warp, b)
            return training_curve(
                lf, init, task.support, inner_lr=cfg.lh_inner_lr, num_steps=cfg.lh_inner_steps
            )[1]

        c = jax.vmap(curve)(test_tasks).mean(0)
        out[f"lh_auc/{method}"] = c.mean()
        out[f"lh_curve/{method}"] = c
    return out


def _validate(cfg: WarpGradFewshotConfig) -> None:
    fam = _family(cfg.num_train_warps, cfg.num_test_warps)
    for split in ("train", "test"):
        check_digits_task(fam, split, cfg.num_ways, cfg.num_shots, cfg.num_query)
    if cfg.long_horizon not in LONG_HORIZON:
        raise ValueError(f"long_horizon must be one of {LONG_HORIZON}, got {cfg.long_horizon!r}")


def run(cfg: WarpGradFewshotConfig, key: jax.Array) -> dict[str, jnp.ndarray]:
    """One seed: part (A) MAML vs Warp-MAML, part (B) Leap vs Warp-Leap."""
    _validate(cfg)
    k_a, k_b = jax.random.split(key)
    return {**_fewshot(cfg, k_a), **_long_horizon(cfg, k_b)}


def verdict(metrics_list, cfg: WarpGradFewshotConfig) -> Verdict:
    """Checks 1-2 of the module docstring, Holm-corrected."""
    get = lambda key: np.array([float(m[key]) for m in metrics_list])
    d_a = get("fewshot_acc/warp_maml") - get("fewshot_acc/maml")
    d_b = get("lh_auc/leap") - get("lh_auc/warp_leap")
    tests = [
        ("Warp-MAML beats MAML (few-shot query accuracy)", "mean accuracy gain", d_a),
        (f"Warp-Leap beats Leap ({cfg.long_horizon}, AUC)", "mean AUC reduction", d_b),
    ]
    res = [stats.one_sample_t(d, 0.0, alternative="greater") for _, _, d in tests]
    adj = stats.holm([r.p_value for r in res])
    checks = []
    for (name, statistic, d), r, p in zip(tests, res, adj, strict=True):
        lo, hi = stats.mean_ci(d)[1:]
        checks.append(
            Check(
                name=name,
                statistic=statistic,
                value=float(np.mean(d)),
                passed=bool(p < 0.05 and np.mean(d) > 0),
                threshold="Holm-adjusted one-sided p < 0.05 and mean gain > 0",
                p_value=float(p),
                effect_size=float(r.effect_size),
                ci=(float(lo), float(hi)),
                test="paired t-test (one-sample t on differences), one-sided, Holm over 2",
            )
        )
    summary = (
        f"few-shot accuracy MAML {get('fewshot_acc/maml').mean():.3f} vs Warp-MAML "
        f"{get('fewshot_acc/warp_maml').mean():.3f}; {cfg.lh_inner_steps}-step AUC Leap "
        f"{get('lh_auc/leap').mean():.4f} vs Warp-Leap {get('lh_auc/warp_leap').mean():.4f}"
    )
    notes = (
        "Digits with affine alphabets replace miniImageNet/Omniglot and an MLP with linear "
        "warp layers replaces the paper's convnet with convolutional warps; the same Adam "
        "outer optimiser and task sequence serve both methods of a pair. Warp learning "
        f"rates: few-shot {cfg.fs_warp_lr}, long-horizon {cfg.lh_warp_lr}. In a 2-seed pilot "
        "(150 meta-iterations) Warp-MAML's accuracy fell as the warp learning rate rose "
        "(1e-2: 0.51, 1e-3: 0.62, 1e-4: 0.71 vs MAML 0.70), so (A) uses 1e-4; (B) uses "
        "1e-3 (pilot at 50 meta-iterations: Warp-Leap AUC slightly below Leap's). A first "
        "quick run with inner lr 0.01 and normalised Leap (d1) diverged on one seed (NaN in "
        "Leap's AUC); (B) uses inner lr 0.003 and Leap's path energy (d2), the variant that "
        "stayed stable in leap-fewshot's pilot."
    )
    return Verdict(checks=tuple(checks), summary=summary, notes=notes)


_SMOKE = WarpGradFewshotConfig(
    num_shots=2,
    num_query=2,
    fs_hidden=(8,),
    fs_inner_steps=2,
    fs_meta_iters=2,
    fs_meta_batch=2,
    num_test_warps=2,
    num_train_warps=2,
    lh_hidden=(8,),
    lh_inner_steps=3,
    lh_meta_iters=2,
    lh_meta_batch=2,
    lh_points=5,
    num_test_tasks=2,
    num_snapshots=2,
    warp_batch=4,
    buffer_batches=1,
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
        "Warp layers meta-learned with WarpGrad's one-step objective improve on the methods "
        "they extend: Warp-MAML beats MAML on few-shot learning and Warp-Leap beats Leap on "
        "long-horizon (many-step) tasks."
    ),
    config_cls=WarpGradFewshotConfig,
    presets={
        "smoke": _SMOKE,
        "quick": WarpGradFewshotConfig(),
        "full": WarpGradFewshotConfig(
            fs_hidden=(128, 128),
            fs_meta_iters=10000,
            fs_meta_batch=16,
            long_horizon="metamaze",
            lh_hidden=(64, 64),
            lh_inner_steps=100,
            lh_inner_lr=0.1,
            lh_meta_iters=2000,
            lh_meta_batch=8,
            maze_horizon=50,
            maze_episodes=16,
            num_test_tasks=100,
        ),
    },
    run=run,
    verdict=verdict,
    seeds={"smoke": 2, "quick": 6, "full": 10},
    tags=("metalearn", "warpgrad"),
)
