"""MetaBBO: meta-training learned optimisers (LES, LGA) by evolution over a BBOB task distribution.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*
(ICLR 2023, arXiv:2211.11260) and *Discovering Attention-Based Genetic Algorithms via
Meta-Black-Box Optimization* (GECCO 2023, arXiv:2304.03995).

One meta-generation:

1. the outer optimiser proposes ``M`` candidate weight vectors ``theta_1..theta_M``
   (OpenAI-ES from evosax with centred-rank shaping and Adam; or, in the self-referential
   mode, metalab's LES whose own weights are the current meta-mean);
2. a **size** ``(D range, N, T, K)`` is drawn from ``config.sizes`` (every size once per
   epoch, in a seeded random order), and ``K`` tasks are sampled: a training BBOB function,
   D in the size's range (held-out evaluation dimensions ``exclude_dims`` are never used),
   random optimum and optimal value, random rotations, a noise model, initial mean and
   sigma0. Every candidate sees the **same** tasks and the **same** inner keys (paired).
   Optionally (``neuro_sizes``, ``--sizes highd-neuro``) the schedule also holds MLP sizes,
   whose tasks are small classifiers on synthetic data (:mod:`metalab.bbo.neuro_tasks`;
   metalab's extension: the LES paper meta-trains on BBOB only);
3. each candidate's optimiser runs ``T`` generations with population ``N`` on each task and
   scores the *final generation's best fitness* ``f_mk`` (lower is better; an MLP task with
   ``neuro_score="heldout"`` scores its final mean's held-out cross-entropy instead);
4. fitness normalisation: per task, scores are z-scored across the ``M`` candidates,
   ``z_mk = (f_mk - mean_m f) / std_m f``, so tasks of any size, scale or optimal value weigh
   the same; the meta-fitness of candidate ``m`` is ``median_k z_mk`` (minimised);
5. the outer optimiser is told the meta-fitness; afterwards the meta-mean decays,
   ``mu <- (1 - lambda) mu`` toward zero, or toward the initial weights when they were
   warm-started (``init="evosax"``).

The per-size cost is kept in check by the size table: large D/N/T combinations get fewer tasks
``K`` and are paired with short horizons or small populations (see :data:`WIDE_SIZES`).

Probes (evaluated every generation on the same tasks, not told to the outer optimiser): the
meta-mean and the initial weights. The curve records the meta-mean's z-score against the
population, its median log10 regret, and the fraction of tasks on which it beats the initial
weights (``win_vs_init``).

Candidates are evaluated by an *executor*: ``local`` (one jitted call) or ``ray`` (candidates
split across Ray actors; every actor sees the same tasks and keys, so results are identical to
``local``). Checkpoints: ``<out>/checkpoint.npz`` and ``<out>/config.json``; re-running with
the same config resumes. ``--time-budget`` stops cleanly and writes the weights so far.
Run ``python -m metalab.bbo.metabbo --help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from metalab.bbo.les import LES, LESParams, init_les_net
from metalab.bbo.lga import LGA, LGAParams, init_lga_net
from metalab.bbo.neuro_tasks import (
    check_neuro_size,
    cross_entropy,
    heldout_cross_entropy,
    n_mlp_params,
    sample_neuro_task,
)
from metalab.bbo.problems import (
    LES_TRAIN_FNS,
    check_fn_names,
    make_evaluate,
    rollout,
    sample_task,
)
from metalab.bbo.weights import evosax_weights, fold_sigma_offset, load_weights, save_weights

# (min_dims, max_dims, population N, generations T, tasks K). Covers D 2-96, N 8-256,
# T 25-400 while avoiding the held-out evaluation sizes (D 20/50/100 via exclude_dims,
# N 32/64/128, T 100/500); K shrinks as N * T * D grows.
WIDE_SIZES: tuple[tuple[int, int, int, int, int], ...] = (
    (2, 8, 8, 25, 16),
    (2, 10, 16, 50, 16),
    (3, 16, 24, 150, 8),
    (2, 12, 256, 25, 6),
    (8, 30, 48, 75, 8),
    (10, 40, 16, 250, 6),
    (20, 60, 96, 40, 4),
    (30, 96, 192, 25, 3),
    (40, 96, 24, 150, 3),
    (10, 30, 12, 400, 4),
)
HELD_OUT_DIMS = (20, 50, 100)

# High-dimensional table (the ``les_metalab_highd`` checkpoint): D 101-1,500 only, so every D
# above :data:`metalab.bbo.weights.HIGHD_THRESHOLD` (100) is inside or above its range; N and T
# avoid 32/64/128 and 100/500, and D avoids the validation dimensions 200 and 1,000
# (:data:`HIGHD_EXCLUDE_DIMS`). One size per D band keeps the padded rotations small; K is 1-3.
HIGHD_SIZES: tuple[tuple[int, int, int, int, int], ...] = (
    (101, 160, 24, 200, 3),
    (161, 300, 48, 150, 2),
    (301, 600, 16, 250, 2),
    (601, 1000, 40, 120, 1),
    (1001, 1500, 24, 200, 1),
)
HIGHD_EXCLUDE_DIMS = (*HELD_OUT_DIMS, 200, 1000)
# Gallagher 101-me builds 101 dense (D, D) matrices and does 303 D x D products per point: at
# D 1,500 that is ~0.7 GFLOP per evaluation, so the high-D run trains on the other nine.
HIGHD_TRAIN_FNS = tuple(f for f in LES_TRAIN_FNS if f != "gallagher_101_me")
# MLP classification tasks (metalab.bbo.neuro_tasks): (d_in, hidden, classes, N, T, K), D 323-1,830.
# None is les-neuroevolution's digits MLP (64-16-10) or its N 32 / T 200; the data are synthetic.
NEURO_SIZES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (16, 16, 3, 24, 150, 3),
    (40, 12, 5, 48, 150, 2),
    (30, 24, 4, 16, 250, 3),
    (96, 12, 8, 24, 250, 2),
    (50, 32, 6, 40, 120, 2),
)
# The neuroevolution evaluation regime on synthetic MLP tasks only (``--sizes neuro-eval``):
# les-neuroevolution's N 32 / T 200 and D 866-1,155 (digits: 1,210), no BBOB sizes. None is
# digits' 64-16-10 or an architecture of les_highd_validation's validation (48-16-8, 24-32-5)
# or selection (32-24-6, 56-12-4, 20-40-7) splits; the data are synthetic.
NEURO_EVAL_SIZES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (36, 20, 6, 32, 200, 2),
    (28, 28, 8, 32, 200, 2),
    (60, 14, 10, 32, 200, 2),
    (44, 24, 3, 32, 200, 2),
)
# name -> (BBOB sizes, MLP sizes)
SIZE_TABLES = {
    "wide": (WIDE_SIZES, ()),
    "highd": (HIGHD_SIZES, ()),
    "highd-neuro": (HIGHD_SIZES, NEURO_SIZES),
    "neuro-eval": ((), NEURO_EVAL_SIZES),
}
# the CLI's defaults per size table: (training functions, excluded dimensions)
_TABLE_DEFAULTS = {
    "wide": (LES_TRAIN_FNS, HELD_OUT_DIMS),
    "highd": (HIGHD_TRAIN_FNS, HIGHD_EXCLUDE_DIMS),
    "highd-neuro": (HIGHD_TRAIN_FNS, HIGHD_EXCLUDE_DIMS),
    "neuro-eval": (HIGHD_TRAIN_FNS, HIGHD_EXCLUDE_DIMS),  # unused: no BBOB sizes
}
INITS = ("random", "evosax", "metalab")
NEURO_SCORES = ("best", "heldout")


@dataclass(frozen=True)
class MetaBBOConfig:
    """Meta-training configuration (every field is recorded beside the weights)."""

    optimiser: str = "les"  # "les" or "lga": what is meta-trained
    outer: str = "openes"  # "openes" (evosax OpenAI-ES) or "self" (LES as its own outer loop)
    # "random", "evosax" (evosax's shipped weights), "metalab" (metalab's shipped low-D
    # weights) or a path to an .npz written by save_weights (warm starts)
    init: str = "random"
    train_fns: tuple[str, ...] = LES_TRAIN_FNS
    sizes: tuple[tuple[int, int, int, int, int], ...] = WIDE_SIZES
    exclude_dims: tuple[int, ...] = HELD_OUT_DIMS
    sigma_range: tuple[float, float] = (0.5, 2.0)
    # MLP training tasks (d_in, hidden, classes, N, T, K), scheduled after ``sizes``; their
    # sigma0 is log-uniform in neuro_sigma_range (metalab.bbo.neuro_tasks)
    neuro_sizes: tuple[tuple[int, int, int, int, int, int], ...] = ()
    neuro_sigma_range: tuple[float, float] = (0.03, 0.3)
    # what an MLP task scores: "best" (the final generation's best training cross-entropy,
    # as on BBOB) or "heldout" (the final mean's cross-entropy on neuro_test_examples
    # held-out examples of the same task: generalisation, what neuroevolution is judged by)
    neuro_score: str = "best"
    neuro_test_examples: int = 256
    # training examples per MLP task (the loss's data set; more examples keep the loss away
    # from zero for longer, as on a real data set of ~1,000 examples)
    neuro_examples: int = 256
    init_range: float = 2.0
    noise_models: tuple[str, ...] = ("noiseless", "gaussian", "additive")
    meta_population: int = 16
    meta_generations: int = 300
    meta_lr: float = 0.03
    meta_sigma: float = 0.1
    meta_mean_decay: float = 0.005
    seed: int = 0
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        if self.optimiser not in ("les", "lga"):
            raise ValueError(f"optimiser must be 'les' or 'lga', got {self.optimiser!r}")
        if self.outer not in ("openes", "self"):
            raise ValueError(f"outer must be 'openes' or 'self', got {self.outer!r}")
        if self.init not in INITS and not str(self.init).endswith(".npz"):
            raise ValueError(
                f"init must be one of {INITS} or a path ending in .npz, got {self.init!r}"
            )
        if str(self.init).endswith(".npz") and not Path(self.init).exists():
            raise ValueError(f"init: weights file {self.init!r} does not exist")
        if self.outer == "self" and self.optimiser != "les":
            raise ValueError("outer='self' (self-referential) requires optimiser='les'")
        if self.meta_population < 2 or self.meta_population % 2:
            raise ValueError(f"meta_population must be even and >= 2, got {self.meta_population}")
        if not self.sizes and not self.neuro_sizes:
            raise ValueError(
                "sizes or neuro_sizes must list at least one size: (min_dims, max_dims, N, T, K)"
                " or (d_in, hidden, classes, N, T, K)"
            )
        for s in self.sizes:
            if len(s) != 5 or not 1 <= s[0] <= s[1] or min(s[2:]) < 1 or s[2] < 2:
                raise ValueError(f"bad size {s}: need (min_dims<=max_dims, N>=2, T>=1, K>=1)")
        for s in self.neuro_sizes:
            check_neuro_size(s)
        if not 0 < self.neuro_sigma_range[0] <= self.neuro_sigma_range[1]:
            raise ValueError(
                f"neuro_sigma_range must satisfy 0 < lo <= hi, got {self.neuro_sigma_range}"
            )
        if self.neuro_score not in NEURO_SCORES:
            raise ValueError(f"neuro_score must be one of {NEURO_SCORES}, got {self.neuro_score!r}")
        if self.neuro_examples < 2:
            raise ValueError(f"neuro_examples must be >= 2, got {self.neuro_examples}")
        if self.neuro_score == "heldout" and self.neuro_test_examples < 1:
            raise ValueError(
                "neuro_test_examples must be >= 1 with neuro_score='heldout', "
                f"got {self.neuro_test_examples}"
            )
        check_fn_names(self.train_fns)

    @property
    def all_sizes(self) -> tuple[tuple[int, ...], ...]:
        """The BBOB sizes followed by the MLP sizes (what :func:`size_order` indexes)."""
        return (*self.sizes, *self.neuro_sizes)


def init_net(config: MetaBBOConfig) -> dict:
    """Initial weights of the optimiser being meta-trained (random, evosax's, metalab's, a file)."""
    if config.init == "evosax":
        return fold_sigma_offset(evosax_weights(config.optimiser, num_dims=10))
    if config.init != "random":  # metalab's shipped low-D weights, or a file
        name = config.optimiser if config.init == "metalab" else config.init
        return fold_sigma_offset(load_weights(name))
    key = jax.random.PRNGKey(config.seed)
    return init_les_net(key) if config.optimiser == "les" else init_lga_net(key)


def make_inner_optimiser(optimiser: str, population_size: int, num_dims: int) -> tuple[Any, Any]:
    """The inner optimiser object and its params builder ``(net, sigma0) -> params``."""
    if optimiser == "les":
        return LES(population_size, num_dims, weights={}), lambda w, s: LESParams(s, w)
    lga = LGA(population_size, num_dims, weights={})
    return lga, lambda w, s: LGAParams(s, jnp.float32(0.0), w)


def size_order(config: MetaBBOConfig, generation: int) -> int:
    """Index into ``config.all_sizes`` for a meta-generation: each size once per epoch."""
    n = len(config.all_sizes)
    perm = np.random.default_rng([config.seed, generation // n]).permutation(n)
    return int(perm[generation % n])


def make_size_evaluator(config: MetaBBOConfig, size: tuple[int, ...], unravel) -> Any:
    """Jitted ``evaluate(thetas (M, P), key) -> (final best fitness (K, M), regret (K, M))``."""
    min_d, max_d, n, t, k = size
    algo, make_params = make_inner_optimiser(config.optimiser, n, max_d)
    evaluate = make_evaluate(config.train_fns, config.noise_models)
    n_fns = len(config.train_fns)

    def run_one(theta, fn_index, task, key):
        params = make_params(unravel(theta), task.sigma0)
        fit = lambda x, kk: evaluate(fn_index, task, x, kk)
        out = rollout(algo, params, fit, key, task.mean0, task.sigma0, t)
        return out.gen_best_fitness[-1], out.best_regret[-1]

    def sample(key):
        return sample_task(
            key,
            max_d,
            min_d,
            config.noise_models,
            config.sigma_range,
            config.init_range,
            exclude_dims=config.exclude_dims,
        )

    @jax.jit
    def evaluate_candidates(thetas: jax.Array, key: jax.Array):
        k_fn, k_task, k_run = jax.random.split(key, 3)
        fn_idx = jax.random.randint(k_fn, (k,), 0, n_fns)
        tasks = jax.vmap(sample)(jax.random.split(k_task, k))
        return _each_task(run_one, thetas, (fn_idx, tasks, jax.random.split(k_run, k)))

    return evaluate_candidates


def _each_task(run_one, thetas: jax.Array, xs: tuple) -> tuple[jax.Array, jax.Array]:
    """``run_one(theta, *task)`` for every task (scanned: one at a time, so a BBOB function
    index stays an unbatched ``lax.switch``) and every candidate (vmapped): ``(K, M)`` each."""

    def one_task(_, task):
        return None, jax.vmap(lambda th: run_one(th, *task))(thetas)

    return jax.lax.scan(one_task, None, xs)[1]


def make_neuro_evaluator(config: MetaBBOConfig, size: tuple[int, ...], unravel) -> Any:
    """As :func:`make_size_evaluator` for an MLP size ``(d_in, hidden, classes, N, T, K)``.

    ``neuro_score="best"``: the score is the final generation's best training cross-entropy
    and the "regret" returned beside it is the lowest cross-entropy evaluated (no optimum is
    known). ``neuro_score="heldout"``: both are the cross-entropy of the run's final solution
    (LES's mean) on the task's held-out split.
    """
    d_in, hidden, classes, n, t, k = size
    arch = (d_in, hidden, classes)
    algo, make_params = make_inner_optimiser(config.optimiser, n, n_mlp_params(*arch))
    heldout = config.neuro_score == "heldout"

    def run_one(theta, task, key):
        params = make_params(unravel(theta), task.sigma0)

        def fit(x, _):
            f = jax.vmap(lambda w: cross_entropy(w, task, *arch))(x)
            return f, f

        out = rollout(algo, params, fit, key, task.mean0, task.sigma0, t)
        if heldout:
            f = heldout_cross_entropy(out.final_solution, task, *arch)
            return f, f
        return out.gen_best_fitness[-1], out.best_regret[-1]

    n_test = config.neuro_test_examples if heldout else 0
    sample = lambda kk: sample_neuro_task(
        kk,
        *arch,
        n_examples=config.neuro_examples,
        sigma_range=config.neuro_sigma_range,
        n_test=n_test,
    )

    @jax.jit
    def evaluate_candidates(thetas: jax.Array, key: jax.Array):
        k_task, k_run = jax.random.split(key)
        tasks = jax.vmap(sample)(jax.random.split(k_task, k))
        return _each_task(run_one, thetas, (tasks, jax.random.split(k_run, k)))

    return evaluate_candidates


_EVALUATORS: dict[tuple, Any] = {}


def _task_key(config: MetaBBOConfig) -> tuple:
    """The config fields an evaluator depends on (not the outer loop or the run length)."""
    return (
        config.optimiser,
        config.init,
        config.train_fns,
        config.exclude_dims,
        config.sigma_range,
        config.init_range,
        config.noise_models,
        config.neuro_sigma_range,
        config.neuro_score,
        config.neuro_test_examples,
        config.neuro_examples,
    )


class LocalExecutor:
    """Evaluates all candidates in this process (one compiled function per size, cached)."""

    def __init__(self, config: MetaBBOConfig) -> None:
        self.config = config
        _, self.unravel = ravel_pytree(init_net(config))

    def __call__(self, size_index: int, thetas: np.ndarray, key: np.ndarray):
        size = self.config.all_sizes[size_index]
        k = (*_task_key(self.config), size)
        if k not in _EVALUATORS:
            make = make_size_evaluator if len(size) == 5 else make_neuro_evaluator
            _EVALUATORS[k] = make(self.config, size, self.unravel)
        fit, regret = _EVALUATORS[k](jnp.asarray(thetas), jnp.asarray(key))
        return np.asarray(fit), np.asarray(regret)

    def close(self) -> None:
        pass


class _RayWorker:
    """A Ray actor holding its own compiled evaluators (built from the config dict)."""

    def __init__(self, config_dict: dict) -> None:
        self.local = LocalExecutor(config_from_dict(config_dict))

    def evaluate(self, size_index: int, thetas: np.ndarray, key: np.ndarray):
        return self.local(size_index, thetas, key)


class RayExecutor:
    """Splits the candidates across ``workers`` Ray actors (one CPU each).

    Every actor gets the same key, hence the same tasks and inner keys, so the result equals
    :class:`LocalExecutor`'s up to float rounding. ``address=None`` starts a local Ray instance
    with ``workers`` CPUs; pass ``"auto"`` or ``ray://host:port`` to use a cluster.
    """

    def __init__(self, config: MetaBBOConfig, workers: int = 2, address: str | None = None):
        import ray

        if not ray.is_initialized():
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if address is None:
                kw["num_cpus"] = workers
            ray.init(address=address, **kw)
        self._ray = ray
        actor = ray.remote(num_cpus=1)(_RayWorker)
        self.actors = [actor.remote(_config_dict(config)) for _ in range(workers)]

    def __call__(self, size_index: int, thetas: np.ndarray, key: np.ndarray):
        chunks = np.array_split(np.asarray(thetas), len(self.actors))
        refs = [
            a.evaluate.remote(size_index, c, np.asarray(key))
            for a, c in zip(self.actors, chunks, strict=True)
            if len(c)
        ]
        outs = self._ray.get(refs)
        return (
            np.concatenate([o[0] for o in outs], axis=-1),
            np.concatenate([o[1] for o in outs], axis=-1),
        )

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)


def meta_fitness(final_fitness: jax.Array, n_scored: int | None = None) -> jax.Array:
    """Median over tasks of per-task z-scores; ``(..., M') -> (M',)``, lower is better.

    The mean and std of each task are taken over the first ``n_scored`` candidates (the
    population; later columns are probes scored against it). Non-finite scores are replaced
    by a large value first.
    """
    f = jnp.nan_to_num(final_fitness.reshape(-1, final_fitness.shape[-1]), nan=1e30, posinf=1e30)
    f = jnp.clip(f, -1e30, 1e30)
    pop = f if n_scored is None else f[:, :n_scored]
    z = (f - pop.mean(axis=1, keepdims=True)) / (pop.std(axis=1, keepdims=True) + 1e-8)
    return jnp.median(z, axis=0)


def make_outer(config: MetaBBOConfig, theta0: jax.Array) -> tuple[Any, Any]:
    """The outer optimiser (evosax OpenAI-ES, or metalab LES for the self-referential mode)."""
    from evosax.algorithms import Open_ES

    if config.outer == "openes":
        es = Open_ES(
            config.meta_population,
            theta0,
            optimizer=optax.adam(config.meta_lr),
            std_schedule=optax.constant_schedule(config.meta_sigma),
        )
        return es, es.default_params
    # Self-referential: the outer LES's own weights are the current meta-mean (set per step).
    es = LES(config.meta_population, theta0, weights={})
    return es, LESParams(jnp.float32(config.meta_sigma), {})


def _with_mean(state: Any, mean: jax.Array) -> Any:
    """Replace the mean of an evosax (``replace``) or metalab (``_replace``) state."""
    if hasattr(state, "_replace"):
        return state._replace(mean=mean)
    return state.replace(mean=mean)


def make_outer_steps(config: MetaBBOConfig, theta0: jax.Array, unravel) -> tuple[Any, ...]:
    """``(outer, outer_params, ask, tell)``: jitted outer ask and tell (with the mean decay)."""
    outer, outer_params = make_outer(config, theta0)
    anchor = jnp.zeros_like(theta0) if config.init == "random" else theta0

    def params_for(state):
        if config.outer == "self":
            return LESParams(jnp.float32(config.meta_sigma), unravel(state.mean))
        return outer_params

    @jax.jit
    def ask(state, key):
        thetas, state = outer.ask(key, state, params_for(state))
        return thetas, state

    @jax.jit
    def tell(state, thetas, scores, key):
        state, _ = outer.tell(key, thetas, scores, state, params_for(state))
        mean = anchor + (1.0 - config.meta_mean_decay) * (state.mean - anchor)
        return _with_mean(state, mean)

    return outer, outer_params, ask, tell


def _config_dict(config: MetaBBOConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_from_dict(d: dict) -> MetaBBOConfig:
    """Inverse of the JSON record (lists back to tuples)."""
    tup = lambda v: tuple(tup(x) for x in v) if isinstance(v, list) else v
    return MetaBBOConfig(**{k: tup(v) for k, v in d.items()})


def meta_generation(
    config: MetaBBOConfig,
    state: Any,
    generation: int,
    ask: Any,
    tell: Any,
    executor: Any,
    theta0: jax.Array,
) -> tuple[Any, dict[str, float]]:
    """One meta-generation (ask, evaluate on one sampled size, tell); returns stats."""
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 2), generation)
    k_ask, k_eval, k_tell = jax.random.split(key, 3)
    thetas, state = ask(state, k_ask)
    m = thetas.shape[0]
    cands = jnp.concatenate([thetas, state.mean[None], theta0[None]], axis=0)
    size_index = size_order(config, generation)
    fit, regret = executor(size_index, np.asarray(cands), np.asarray(k_eval))
    scores = meta_fitness(jnp.asarray(fit), n_scored=m)
    state = tell(state, thetas, scores[:m], k_tell)
    log_regret = np.log10(np.maximum(regret, 1e-8))
    stats = {
        "size_index": float(size_index),
        "mean_z": float(scores[m]),
        "init_z": float(scores[m + 1]),
        "best_z": float(jnp.min(scores[:m])),
        "mean_log_regret": float(np.median(log_regret[:, m])),
        "init_log_regret": float(np.median(log_regret[:, m + 1])),
        "win_vs_init": float(np.mean(fit[:, m] < fit[:, m + 1])),
    }
    return state, stats


def train(
    config: MetaBBOConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    weights_name: str | None = None,
    executor: Any = None,
    time_budget: float | None = None,
) -> tuple[dict, dict]:
    """Meta-train and return ``(net, record)``; writes checkpoints and the final weights.

    Args:
      config: the meta-training configuration.
      out_dir: directory for ``checkpoint.npz``, ``config.json`` and the weights.
      resume: continue from ``out_dir/checkpoint.npz`` if its config matches.
      progress: show a rich progress bar.
      weights_name: file stem of the final weights (default ``<optimiser>_metalab``).
      executor: ``LocalExecutor`` (default) or ``RayExecutor``.
      time_budget: stop after this many seconds of this call (weights are still written,
        the record says how many meta-generations were completed).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    theta0, unravel = ravel_pytree(init_net(config))
    outer, outer_params, ask, tell = make_outer_steps(config, theta0, unravel)
    executor = executor if executor is not None else LocalExecutor(config)
    state = outer.init(jax.random.PRNGKey(config.seed + 1), theta0, outer_params)
    leaves, treedef = jax.tree.flatten(state)
    history: dict[str, list[float]] = {}
    start_gen, prior_wall = 0, 0.0
    ckpt, cfg_path = out / "checkpoint.npz", out / "config.json"
    if resume and ckpt.exists() and cfg_path.exists():
        saved, now = json.loads(cfg_path.read_text()), _config_dict(config)
        # fields added after the checkpoint was written count as their defaults
        saved = {**_config_dict(MetaBBOConfig()), **saved}
        run_length = ("meta_generations", "checkpoint_every")
        if {k: v for k, v in saved.items() if k not in run_length} != {
            k: v for k, v in now.items() if k not in run_length
        }:
            raise ValueError(
                f"{ckpt} was written with a different config (only meta_generations and "
                "checkpoint_every may change when resuming); use another out_dir"
            )
        with np.load(ckpt) as data:
            leaves = [
                jnp.asarray(data[f"leaf_{i}"], dtype=jnp.asarray(leaf).dtype)
                for i, leaf in enumerate(leaves)
            ]
            start_gen = int(data["generation"])
            prior_wall = float(data["wall_time"])
            history = {k[5:]: list(data[k]) for k in data.files if k.startswith("hist_")}
        state = jax.tree.unflatten(treedef, leaves)
    cfg_path.write_text(json.dumps(_config_dict(config), indent=2) + "\n")

    def save(gen: int, wall: float) -> None:
        arrays = {f"leaf_{i}": np.asarray(x) for i, x in enumerate(jax.tree.leaves(state))}
        arrays.update({f"hist_{k}": np.asarray(v) for k, v in history.items()})
        tmp = out / "checkpoint.tmp.npz"
        np.savez(tmp, generation=gen, wall_time=wall, **arrays)
        tmp.replace(ckpt)

    t0 = time.time()
    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        bar = Progress(
            "[bold]metabbo",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            "{task.fields[info]}",
        )
        bar.start()
        task = bar.add_task("meta", total=config.meta_generations, completed=start_gen, info="")
    done = start_gen
    try:
        for g in range(start_gen, config.meta_generations):
            state, stats = meta_generation(config, state, g, ask, tell, executor, theta0)
            stats["wall_s"] = prior_wall + time.time() - t0
            for k, v in stats.items():
                history.setdefault(k, []).append(float(v))
            done = g + 1
            if bar is not None:
                bar.update(
                    task,
                    advance=1,
                    info=f"size {int(stats['size_index'])} z {stats['mean_z']:.2f} "
                    f"win/init {stats['win_vs_init']:.2f}",
                )
            out_of_time = time_budget is not None and time.time() - t0 > time_budget
            if (
                done % config.checkpoint_every == 0
                or done == config.meta_generations
                or (out_of_time)
            ):
                save(done, prior_wall + time.time() - t0)
            if out_of_time:
                break
    finally:
        if bar is not None:
            bar.stop()
    wall = prior_wall + time.time() - t0
    net = unravel(state.mean)
    record = {
        "method": f"MetaBBO ({config.outer}) meta-trained {config.optimiser.upper()}",
        "config": _config_dict(config),
        "wall_time_s": round(wall, 1),
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
        "n_params": int(theta0.size),
        "generations_completed": done,
        "history": history,
    }
    save_weights(out / (weights_name or f"{config.optimiser}_metalab"), net, record)
    return net, record


def export(out_dir: str | Path, dest: str | Path, note: str = "") -> dict:
    """Write the meta-mean of ``out_dir``'s latest checkpoint as weights to ``dest``."""
    out = Path(out_dir)
    config = config_from_dict(json.loads((out / "config.json").read_text()))
    theta0, unravel = ravel_pytree(init_net(config))
    outer, outer_params = make_outer(config, theta0)
    state = outer.init(jax.random.PRNGKey(config.seed + 1), theta0, outer_params)
    leaves, treedef = jax.tree.flatten(state)
    with np.load(out / "checkpoint.npz") as data:
        leaves = [jnp.asarray(data[f"leaf_{i}"]) for i in range(len(leaves))]
        gen, wall = int(data["generation"]), float(data["wall_time"])
        history = {k[5:]: [float(x) for x in data[k]] for k in data.files if k.startswith("hist_")}
    state = jax.tree.unflatten(treedef, leaves)
    record = {
        "method": f"MetaBBO ({config.outer}) meta-trained {config.optimiser.upper()}",
        "config": _config_dict(config),
        "generations_completed": gen,
        "wall_time_s": round(wall, 1),
        "jax_version": jax.__version__,
        "device": str(jax.devices()[0]),
        "n_params": int(theta0.size),
        "history": history,
        "note": note,
    }
    save_weights(dest, unravel(state.mean), record)
    return record


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m metalab.bbo.metabbo --optimiser les --out DIR``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    d = MetaBBOConfig()
    ap.add_argument("--optimiser", choices=("les", "lga"), default="les")
    ap.add_argument("--outer", choices=("openes", "self"), default="openes")
    ap.add_argument(
        "--init", default="random", help=f"one of {', '.join(INITS)} or a path to an .npz"
    )
    ap.add_argument(
        "--sizes",
        choices=tuple(SIZE_TABLES),
        default="wide",
        help="size table (highd-neuro adds MLP training tasks, metalab.bbo.neuro_tasks)",
    )
    ap.add_argument(
        "--exclude-dims",
        type=lambda v: tuple(int(x) for x in v.split(",") if x),
        default=None,
        help="comma-separated D never sampled (default: 20,50,100; highd adds 200,1000)",
    )
    ap.add_argument("--sigma-range", type=float, nargs=2, default=d.sigma_range)
    ap.add_argument(
        "--neuro-sigma-range",
        type=float,
        nargs=2,
        default=d.neuro_sigma_range,
        help="MLP tasks' sigma0 is log-uniform in [LO, HI] (LO = HI fixes it)",
    )
    ap.add_argument(
        "--neuro-score",
        choices=NEURO_SCORES,
        default=d.neuro_score,
        help="what an MLP task scores: best training loss, or the final mean's held-out loss",
    )
    ap.add_argument(
        "--neuro-examples",
        type=int,
        default=d.neuro_examples,
        help="training examples per MLP task",
    )
    ap.add_argument(
        "--neuro-test-examples",
        type=int,
        default=d.neuro_test_examples,
        help="held-out examples per MLP task (with --neuro-score heldout)",
    )
    ap.add_argument(
        "--train-fns",
        type=lambda v: tuple(x for x in v.split(",") if x),
        default=None,
        help="comma-separated BBOB training functions (default: LES_TRAIN_FNS; highd: "
        "without gallagher_101_me)",
    )
    ap.add_argument("--out", default="metabbo-runs/les")
    ap.add_argument("--meta-generations", type=int, default=d.meta_generations)
    ap.add_argument("--meta-population", type=int, default=d.meta_population)
    ap.add_argument("--meta-lr", type=float, default=d.meta_lr)
    ap.add_argument("--meta-sigma", type=float, default=d.meta_sigma)
    ap.add_argument("--meta-mean-decay", type=float, default=d.meta_mean_decay)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--executor", choices=("local", "ray"), default="local")
    ap.add_argument("--workers", type=int, default=2, help="Ray actors (one CPU each)")
    ap.add_argument("--ray-address", default=None, help="Ray cluster address (default: local)")
    ap.add_argument("--time-budget", type=float, default=None, help="seconds, then stop")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--weights-name", default=None, help="file stem of the final weights")
    a = ap.parse_args(argv)
    default_fns, default_excluded = _TABLE_DEFAULTS[a.sizes]
    cfg = MetaBBOConfig(
        optimiser=a.optimiser,
        outer=a.outer,
        init=a.init,
        sizes=SIZE_TABLES[a.sizes][0],
        neuro_sizes=SIZE_TABLES[a.sizes][1],
        train_fns=default_fns if a.train_fns is None else a.train_fns,
        exclude_dims=default_excluded if a.exclude_dims is None else a.exclude_dims,
        sigma_range=tuple(a.sigma_range),
        neuro_sigma_range=tuple(a.neuro_sigma_range),
        neuro_score=a.neuro_score,
        neuro_examples=a.neuro_examples,
        neuro_test_examples=a.neuro_test_examples,
        meta_generations=a.meta_generations,
        meta_population=a.meta_population,
        meta_lr=a.meta_lr,
        meta_sigma=a.meta_sigma,
        meta_mean_decay=a.meta_mean_decay,
        seed=a.seed,
    )
    ex = RayExecutor(cfg, a.workers, a.ray_address) if a.executor == "ray" else None
    _, record = train(
        cfg,
        a.out,
        resume=not a.no_resume,
        progress=not a.no_progress,
        executor=ex,
        time_budget=a.time_budget,
        weights_name=a.weights_name,
    )
    print(json.dumps({k: record[k] for k in ("method", "wall_time_s", "generations_completed")}))


if __name__ == "__main__":
    main()
