"""MetaBBO: meta-training learned optimisers (LES, LGA) by evolution over BBOB tasks.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*
(ICLR 2023, arXiv:2211.11260) and *Discovering Attention-Based Genetic Algorithms via
Meta-Black-Box Optimization* (GECCO 2023, arXiv:2304.03995).

One meta-generation:

1. the outer optimiser proposes ``M`` candidate weight vectors ``theta_1..theta_M``
   (OpenAI-ES from evosax with centred-rank shaping and Adam; or, in the self-referential
   mode, metalab's LES whose own weights are the current meta-mean);
2. ``J`` tasks per training function are sampled (D in [min_dims, max_dims], random optimum
   and optimal value, random rotations, noise model, initial mean and sigma0 range); every
   candidate sees the **same** tasks and the **same** inner keys (shared randomness, so the
   comparison between candidates is paired);
3. each candidate's optimiser runs ``T`` generations with population ``N`` on each task and
   scores the *final generation's best fitness* ``f_mj`` (lower is better);
4. per task, scores are z-scored across candidates, ``z_mj = (f_mj - mean_m f) / std_m f``, and
   the meta-fitness of candidate ``m`` is ``median_j z_mj`` (minimised);
5. the outer optimiser is told the meta-fitness; afterwards the meta-mean decays,
   ``mu <- (1 - lambda) mu`` (meta-mean decay, a weight-decay regulariser).

Tasks are grouped by function: a ``lax.scan`` over functions with a scalar function index keeps
``lax.switch`` a real branch (``vmap`` over a batched switch would evaluate every function).

The meta-mean is also evaluated every generation as an extra, non-updating candidate, which
gives a learning curve (its z-score against the population, and its median log10 regret).

Checkpoints: ``<out>/checkpoint.npz`` (outer state leaves, history, generation) and
``<out>/config.json``; re-running with the same config resumes. The final weights are written
with :func:`metalab.bbo.weights.save_weights` (``.npz`` + ``.json`` record with config and wall
time). Run ``python -m metalab.bbo.metabbo --help``.
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
from metalab.bbo.problems import (
    LES_TRAIN_FNS,
    check_fn_names,
    make_evaluate,
    rollout,
    sample_task,
)
from metalab.bbo.weights import save_weights


@dataclass(frozen=True)
class MetaBBOConfig:
    """Meta-training configuration (every field is recorded beside the weights)."""

    optimiser: str = "les"  # "les" or "lga": what is meta-trained
    outer: str = "openes"  # "openes" (evosax OpenAI-ES) or "self" (LES as its own outer loop)
    train_fns: tuple[str, ...] = LES_TRAIN_FNS
    tasks_per_fn: int = 2
    min_dims: int = 2
    max_dims: int = 10
    population_size: int = 16
    generations: int = 50
    sigma_range: tuple[float, float] = (0.5, 2.0)
    init_range: float = 2.0
    noise_models: tuple[str, ...] = ("noiseless", "gaussian", "additive")
    meta_population: int = 32
    meta_generations: int = 300
    meta_lr: float = 0.03
    meta_sigma: float = 0.1
    meta_mean_decay: float = 0.005
    seed: int = 0
    checkpoint_every: int = 10

    def __post_init__(self) -> None:
        if self.optimiser not in ("les", "lga"):
            raise ValueError(f"optimiser must be 'les' or 'lga', got {self.optimiser!r}")
        if self.outer not in ("openes", "self"):
            raise ValueError(f"outer must be 'openes' or 'self', got {self.outer!r}")
        if self.outer == "self" and self.optimiser != "les":
            raise ValueError("outer='self' (self-referential) requires optimiser='les'")
        if self.meta_population < 2 or self.meta_population % 2:
            raise ValueError(f"meta_population must be even and >= 2, got {self.meta_population}")
        if not 1 <= self.min_dims <= self.max_dims:
            raise ValueError(
                f"need 1 <= min_dims <= max_dims, got {self.min_dims}, {self.max_dims}"
            )
        check_fn_names(self.train_fns)


def init_net(config: MetaBBOConfig) -> dict:
    """Random initial weights of the optimiser being meta-trained."""
    key = jax.random.PRNGKey(config.seed)
    return init_les_net(key) if config.optimiser == "les" else init_lga_net(key)


def make_inner_optimiser(config: MetaBBOConfig, net: dict) -> tuple[Any, Any]:
    """The inner optimiser object and its params builder ``(net, sigma0) -> params``."""
    n, d = config.population_size, config.max_dims
    if config.optimiser == "les":
        return LES(n, d, weights=net), lambda w, s: LESParams(s, w)
    return LGA(n, d, weights=net), lambda w, s: LGAParams(s, jnp.float32(0.0), w)


def make_evaluate_candidates(config: MetaBBOConfig, unravel) -> Any:
    """``evaluate(thetas (M, P), key) -> (final-gen best fitness (F, J, M), regret (F, J, M))``."""
    algo, make_params = make_inner_optimiser(config, {})  # weights come via params
    evaluate = make_evaluate(config.train_fns, config.noise_models)
    n_fns, n_tasks = len(config.train_fns), config.tasks_per_fn

    def run_one(theta, fn_index, task, key):
        params = make_params(unravel(theta), task.sigma0)
        fit = lambda x, k: evaluate(fn_index, task, x[:, : config.max_dims], k)
        out = rollout(algo, params, fit, key, task.mean0, task.sigma0, config.generations)
        return out.gen_best_fitness[-1], out.best_regret[-1]

    def evaluate_candidates(thetas: jax.Array, key: jax.Array):
        k_task, k_run = jax.random.split(key)
        task_keys = jax.random.split(k_task, n_fns * n_tasks).reshape(n_fns, n_tasks, -1)
        run_keys = jax.random.split(k_run, n_fns * n_tasks).reshape(n_fns, n_tasks, -1)
        sample = lambda k: sample_task(
            k,
            config.max_dims,
            config.min_dims,
            config.noise_models,
            config.sigma_range,
            config.init_range,
        )
        tasks = jax.vmap(jax.vmap(sample))(task_keys)

        def one_function(_, xs):
            fn_index, tasks_f, keys_f = xs
            per_task = lambda task, k: jax.vmap(lambda th: run_one(th, fn_index, task, k))(thetas)
            return None, jax.vmap(per_task)(tasks_f, keys_f)  # (J, M) each

        _, (fit, regret) = jax.lax.scan(one_function, None, (jnp.arange(n_fns), tasks, run_keys))
        return fit, regret

    return algo, evaluate_candidates


def meta_fitness(final_fitness: jax.Array) -> jax.Array:
    """Median over tasks of the per-task z-score across candidates; ``(..., M) -> (M,)``.

    Lower is better. Non-finite scores are replaced by a large value before z-scoring.
    """
    f = jnp.nan_to_num(final_fitness.reshape(-1, final_fitness.shape[-1]), nan=1e30, posinf=1e30)
    f = jnp.clip(f, -1e30, 1e30)
    z = (f - f.mean(axis=1, keepdims=True)) / (f.std(axis=1, keepdims=True) + 1e-8)
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


_STEP_CACHE: dict[MetaBBOConfig, tuple[Any, Any, Any]] = {}


def cached_meta_step(config: MetaBBOConfig) -> tuple[Any, Any, Any, Any]:
    """``(theta0, unravel, outer, outer_params, step)`` reusing a compiled step when only the
    run length or checkpoint period differ (e.g. resuming a longer run)."""
    theta0, unravel = ravel_pytree(init_net(config))
    key = dataclasses.replace(config, meta_generations=0, checkpoint_every=1)
    if key not in _STEP_CACHE:
        _STEP_CACHE[key] = make_meta_step(config, theta0, unravel)
    return (theta0, unravel, *_STEP_CACHE[key])


def make_meta_step(config: MetaBBOConfig, theta0: jax.Array, unravel) -> tuple[Any, Any, Any]:
    """Build ``(outer, outer_params, step)``; ``step(state, key) -> (state, stats)`` is jitted."""
    outer, outer_params = make_outer(config, theta0)
    _, evaluate_candidates = make_evaluate_candidates(config, unravel)

    def params_for(state):
        if config.outer == "self":
            return LESParams(jnp.float32(config.meta_sigma), unravel(state.mean))
        return outer_params

    @jax.jit
    def step(state, key):
        k_ask, k_eval, k_tell = jax.random.split(key, 3)
        p = params_for(state)
        thetas, state = outer.ask(k_ask, state, p)
        cands = jnp.concatenate([thetas, state.mean[None]], axis=0)  # last = meta-mean probe
        fit, regret = evaluate_candidates(cands, k_eval)
        scores = meta_fitness(fit)
        state, _ = outer.tell(k_tell, thetas, scores[:-1], state, p)
        state = _with_mean(state, (1.0 - config.meta_mean_decay) * state.mean)
        log_regret = jnp.log10(jnp.maximum(regret, 1e-8))
        stats = {
            "mean_z": scores[-1],
            "best_z": jnp.min(scores[:-1]),
            "mean_log_regret": jnp.median(log_regret[..., -1]),
            "pop_log_regret": jnp.median(log_regret[..., :-1]),
        }
        return state, stats

    return outer, outer_params, step


def _config_dict(config: MetaBBOConfig) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(config)))


def train(
    config: MetaBBOConfig,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    weights_name: str | None = None,
) -> tuple[dict, dict]:
    """Meta-train and return ``(net, record)``; writes checkpoints and the final weights.

    Args:
      config: the meta-training configuration.
      out_dir: directory for ``checkpoint.npz``, ``config.json`` and the weights.
      resume: continue from ``out_dir/checkpoint.npz`` if its config matches.
      progress: show a rich progress bar.
      weights_name: file stem of the final weights (default ``<optimiser>_metalab``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    theta0, unravel, outer, outer_params, step = cached_meta_step(config)
    state = outer.init(jax.random.PRNGKey(config.seed + 1), theta0, outer_params)
    leaves, treedef = jax.tree.flatten(state)
    history: dict[str, list[float]] = {}
    start_gen, prior_wall = 0, 0.0
    ckpt, cfg_path = out / "checkpoint.npz", out / "config.json"
    if resume and ckpt.exists() and cfg_path.exists():
        saved, now = json.loads(cfg_path.read_text()), _config_dict(config)
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
    key = jax.random.PRNGKey(config.seed + 2)
    gens = range(start_gen, config.meta_generations)
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
    try:
        for g in gens:
            state, stats = step(state, jax.random.fold_in(key, g))
            for k, v in stats.items():
                history.setdefault(k, []).append(float(v))
            if bar is not None:
                bar.update(
                    task, advance=1, info=f"mean log10 regret {float(stats['mean_log_regret']):.2f}"
                )
            if (g + 1) % config.checkpoint_every == 0 or g + 1 == config.meta_generations:
                save(g + 1, prior_wall + time.time() - t0)
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
        "generations_completed": config.meta_generations,
        "history": history,
    }
    save_weights(out / (weights_name or f"{config.optimiser}_metalab"), net, record)
    return net, record


def export(out_dir: str | Path, dest: str | Path, note: str = "") -> dict:
    """Write the meta-mean of ``out_dir``'s latest checkpoint as weights to ``dest``.

    Used when a run is stopped before ``meta_generations`` (the record says how many
    generations were completed and the wall time so far).
    """
    out = Path(out_dir)
    cfg_dict = json.loads((out / "config.json").read_text())
    cfg_dict = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg_dict.items()}
    config = MetaBBOConfig(**cfg_dict)
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
    defaults = MetaBBOConfig()
    ap.add_argument("--optimiser", choices=("les", "lga"), default="les")
    ap.add_argument("--outer", choices=("openes", "self"), default="openes")
    ap.add_argument("--out", default="metabbo-runs/les")
    ap.add_argument("--meta-generations", type=int, default=defaults.meta_generations)
    ap.add_argument("--meta-population", type=int, default=defaults.meta_population)
    ap.add_argument("--tasks-per-fn", type=int, default=defaults.tasks_per_fn)
    ap.add_argument("--meta-lr", type=float, default=defaults.meta_lr)
    ap.add_argument("--meta-sigma", type=float, default=defaults.meta_sigma)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-resume", action="store_true")
    a = ap.parse_args(argv)
    cfg = MetaBBOConfig(
        optimiser=a.optimiser,
        outer=a.outer,
        meta_generations=a.meta_generations,
        meta_population=a.meta_population,
        tasks_per_fn=a.tasks_per_fn,
        meta_lr=a.meta_lr,
        meta_sigma=a.meta_sigma,
        seed=a.seed,
    )
    _, record = train(cfg, a.out, resume=not a.no_resume)
    print(json.dumps({k: record[k] for k in ("method", "wall_time_s")}, indent=2))


if __name__ == "__main__":
    main()
