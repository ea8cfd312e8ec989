"""BBOB task distribution and optimiser rollouts for meta-training and evaluation.

The 24 noiseless BBOB functions (Hansen et al., 2009) and the noise models are evosax's
(``evosax.problems.bbob``); this module samples *tasks* from them (dimension, optimum location,
optimal value, rotations, noise, initial mean and search scale) and evaluates a batch of
solutions. Everything is minimised; the reported *regret* is the noiseless function value plus
the boundary penalty, i.e. ``f(x) - f_opt`` (0 at the optimum).

Dimensions vary inside a batch by masking: solutions have ``max_dims`` coordinates and the
function only reads the first ``num_dims`` (as evosax's meta-BBOB does).

Grouping by function: :func:`evaluate` dispatches on a **Python-level or unbatched** function
index with ``lax.switch``. Under ``vmap`` a *batched* index turns the switch into a select that
evaluates all 24 functions; so callers batch tasks of one function together and iterate over
functions with ``lax.scan`` / ``lax.map`` (the index is then a scalar and only one branch runs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from evosax.problems.bbob.bbob_fns import bbob_fns as _evosax_bbob_fns
from evosax.problems.bbob.bbob_fns import f_pen, lambda_alpha
from evosax.problems.bbob.bbob_noise import NoiseModel, NoiseParams

from metalab.bbo.base import is_population_based


def _katsuura(x: jax.Array, x_opt: jax.Array, R: jax.Array, Q: jax.Array, num_dims: int):
    """evosax 0.3.2's Katsuura (f23) with its product over dimensions taken in log space.

    Why not evosax's own: it forms ``prod_i (1 + i * s_i)`` directly, which overflows float32
    from about D 60 (each factor is up to ~1 + D / 2), so every evaluation at D 100 returns
    +inf. ``prod ** (10 / D^1.2) = exp(10 / D^1.2 * sum_i log(1 + i * s_i))`` is the same value
    without the overflow (equal to evosax's to float rounding where that one is finite; tested).
    """
    max_num_dims = x.shape[0]
    mask = jnp.arange(max_num_dims) < num_dims
    num_terms = 30  # as evosax (Hansen et al. use 32; 30 keeps 2^j inside int32)
    z = Q @ (lambda_alpha(100.0, max_num_dims, num_dims) @ (R @ (x - x_opt)))
    two_pow_j = jnp.power(2, jnp.arange(1, num_terms + 1))
    s = jnp.sum(jnp.abs(two_pow_j * z[:, None] - jnp.round(two_pow_j * z[:, None])) / two_pow_j, 1)
    log_prod = jnp.sum(jnp.log1p(jnp.arange(1, max_num_dims + 1) * s * mask))
    value = (10.0 / num_dims**2) * jnp.expm1(10.0 / num_dims**1.2 * log_prod)
    return value, f_pen(x, num_dims)


bbob_fns = {**_evosax_bbob_fns, "katsuura": _katsuura}
BBOB_NAMES: tuple[str, ...] = tuple(bbob_fns)
NOISE_MODELS = ("noiseless", "gaussian", "uniform", "cauchy", "additive")

# The LES paper meta-trains on a small subset of BBOB and tests on the rest.
LES_TRAIN_FNS = (
    "sphere",
    "rosenbrock",
    "discus",
    "rastrigin",
    "schwefel",
    "bueche_rastrigin",
    "attractive_sector",
    "weierstrass",
    "schaffers_f7",
    "gallagher_101_me",
)


class BBOBTask(NamedTuple):
    """One sampled BBOB task (function identity is kept outside, see module docstring)."""

    num_dims: jax.Array  # () active dimensions
    x_opt: jax.Array  # (max_dims,)
    f_opt: jax.Array  # ()
    R: jax.Array  # (max_dims, max_dims)
    Q: jax.Array  # (max_dims, max_dims)
    noise: NoiseParams
    mean0: jax.Array  # (max_dims,) initial mean / population centre
    sigma0: jax.Array  # () initial search scale


def check_fn_names(names: tuple[str, ...]) -> None:
    """Raise a clear error for unknown BBOB function names."""
    bad = [n for n in names if n not in bbob_fns]
    if bad:
        raise ValueError(f"unknown BBOB functions {bad}; allowed: {', '.join(BBOB_NAMES)}")


def _rotation(key: jax.Array, max_dims: int, num_dims: jax.Array) -> jax.Array:
    """Haar-random rotation on the first ``num_dims`` coordinates, identity on the rest."""
    idx = jnp.arange(max_dims)
    mask = (idx[:, None] < num_dims) & (idx[None, :] < num_dims)
    a = jnp.where(mask, jax.random.normal(key, (max_dims, max_dims)), 0.0)
    a = a + jnp.where(mask, 0.0, jnp.eye(max_dims))
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))[None, :]
    return q.at[0].multiply(jnp.linalg.det(q))


def sample_task(
    key: jax.Array,
    max_dims: int,
    min_dims: int | None = None,
    noise_models: tuple[str, ...] = ("noiseless",),
    sigma_range: tuple[float, float] = (1.0, 1.0),
    init_range: float = 0.0,
    random_f_opt: bool = True,
    random_rotation: bool = True,
    exclude_dims: tuple[int, ...] = (),
) -> BBOBTask:
    """Sample a task: D ~ U{min_dims..max_dims}, x_opt ~ U[-4, 4]^D, f_opt ~ clip(100 Cauchy).

    ``mean0 ~ U[-init_range, init_range]^D`` and ``sigma0 ~ U[sigma_range]``; the noise model
    is drawn uniformly from ``noise_models`` with evosax's default severity ranges. A sampled
    D in ``exclude_dims`` becomes D - 1 (keeps held-out evaluation sizes out of training).
    """
    min_dims = max_dims if min_dims is None else min_dims
    if not 1 <= min_dims <= max_dims:
        raise ValueError(f"need 1 <= min_dims <= max_dims, got {min_dims}, {max_dims}")
    bad = [m for m in noise_models if m not in NOISE_MODELS]
    if bad:
        raise ValueError(f"unknown noise models {bad}; allowed: {', '.join(NOISE_MODELS)}")
    kd, kx, kf, kr, kq, kn, km, ks = jax.random.split(key, 8)
    d = jax.random.randint(kd, (), min_dims, max_dims + 1)
    if exclude_dims:
        d = jnp.where(jnp.isin(d, jnp.asarray(exclude_dims)), jnp.maximum(d - 1, 1), d)
    x_opt = jax.random.uniform(kx, (max_dims,), minval=-4.0, maxval=4.0)
    f_opt = jnp.clip(100.0 * jax.random.cauchy(kf), -1000.0, 1000.0) if random_f_opt else 0.0
    if random_rotation:
        R, Q = _rotation(kr, max_dims, d), _rotation(kq, max_dims, d)
    else:
        R = Q = jnp.eye(max_dims)
    noise = NoiseModel(list(noise_models), use_stabilization=True).sample_params(kn)
    return BBOBTask(
        num_dims=d,
        x_opt=x_opt,
        f_opt=jnp.asarray(f_opt, jnp.float32),
        R=R,
        Q=Q,
        noise=noise,
        mean0=jax.random.uniform(km, (max_dims,), minval=-init_range, maxval=init_range),
        sigma0=jax.random.uniform(ks, (), minval=sigma_range[0], maxval=sigma_range[1]),
    )


def make_evaluate(
    fn_names: tuple[str, ...], noise_models: tuple[str, ...] = ("noiseless",)
) -> Callable[[Any, BBOBTask, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """Build ``evaluate(fn_index, task, x, key) -> (fitness, regret)`` for a batch ``x (N, D)``.

    ``fitness = noisy f + penalty + f_opt`` (what the optimiser sees, minimised);
    ``regret = f + penalty`` (noiseless, 0 at the optimum). ``fn_index`` indexes ``fn_names``.
    """
    check_fn_names(fn_names)
    fns = [jax.vmap(bbob_fns[n], in_axes=(0, None, None, None, None)) for n in fn_names]
    noise_model = NoiseModel(list(noise_models), use_stabilization=True)

    def evaluate(fn_index, task: BBOBTask, x: jax.Array, key: jax.Array):
        if len(fns) == 1:
            val, pen = fns[0](x, task.x_opt, task.R, task.Q, task.num_dims)
        else:
            val, pen = jax.lax.switch(fn_index, fns, x, task.x_opt, task.R, task.Q, task.num_dims)
        noisy = noise_model.apply(key, val, task.noise)
        return noisy + pen + task.f_opt, val + pen

    return evaluate


def _finite_min(r: jax.Array) -> jax.Array:
    """Lowest regret, ignoring NaN evaluations (an overflowing function value is no progress,
    and must not poison the best-so-far record)."""
    return jnp.min(jnp.where(jnp.isnan(r), jnp.inf, r))


class Rollout(NamedTuple):
    """Per-generation traces of one optimiser run (minimisation)."""

    gen_best_fitness: jax.Array  # (T,) lowest fitness in each generation
    best_regret: jax.Array  # (T,) lowest noiseless regret evaluated so far
    # (D,) where the run ended: the mean of a distribution-based optimiser, the best member
    # so far of a population-based one (set by :func:`rollout` only)
    final_solution: jax.Array | None = None


def rollout(
    algo: Any,
    params: Any,
    fitness_fn: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    key: jax.Array,
    mean0: jax.Array,
    sigma0: jax.Array,
    generations: int,
) -> Rollout:
    """Run an evosax-API optimiser (evosax's or metalab's) for ``generations`` steps.

    Args:
      algo: object with ``init``/``ask``/``tell`` (distribution- or population-based).
      params: its params (``std_init`` should already be ``sigma0``).
      fitness_fn: ``(x (N, D), key) -> (fitness, regret)``, both ``(N,)``; lower is better.
      key: PRNG key; split per generation into ask / eval / tell keys.
      mean0, sigma0: initial centre; population-based methods start from
        ``mean0 + sigma0 * eps`` (evaluated once before the loop).
    Returns:
      :class:`Rollout` with ``(T,)`` traces and the final solution.
    """
    k_init, k_loop = jax.random.split(key)
    n = algo.population_size
    if is_population_based(algo):
        k_x, k_f, k_s = jax.random.split(k_init, 3)
        x0 = mean0 + sigma0 * jax.random.normal(k_x, (n, mean0.shape[0]))
        f0, r0 = fitness_fn(x0, k_f)
        state = algo.init(k_s, x0, f0, params)
        best0 = jnp.min(r0)
    else:
        state = algo.init(k_init, mean0, params)
        best0 = jnp.asarray(jnp.inf, jnp.float32)

    def step(carry, k):
        state, best = carry
        k_ask, k_eval, k_tell = jax.random.split(k, 3)
        x, state = algo.ask(k_ask, state, params)
        f, r = fitness_fn(x, k_eval)
        f = jnp.nan_to_num(f, nan=1e30, posinf=1e30, neginf=-1e30)
        state, _ = algo.tell(k_tell, x, f, state, params)
        best = jnp.minimum(best, _finite_min(r))
        return (state, best), (jnp.min(f), best)

    (state, _), (gen_best, best) = jax.lax.scan(
        step, (state, best0), jax.random.split(k_loop, generations)
    )
    final = state.best_solution if is_population_based(algo) else state.mean
    return Rollout(gen_best, best, final)


def lockstep_rollouts(
    entries: list[tuple[Any, Any]],
    fitness_fn: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]],
    key: jax.Array,
    mean0: jax.Array,
    sigma0: jax.Array,
    generations: int,
) -> list[Rollout]:
    """Run several optimisers side by side with **one** fitness call per generation.

    All populations of a generation are concatenated and evaluated together, so the (large)
    objective, e.g. a ``lax.switch`` over BBOB functions, appears once in the compiled program
    instead of once per optimiser. Every optimiser gets its own ask/tell keys; the evaluation
    key is shared (noise still differs per member). Same contract as :func:`rollout`.
    """
    n_opt = len(entries)
    sizes = [algo.population_size for algo, _ in entries]
    cuts = list(np.cumsum(sizes)[:-1])
    k_init, k_loop = jax.random.split(key)
    k_inits = jax.random.split(k_init, n_opt + 1)
    # initial populations for population-based methods (evaluated in one call)
    x0s = [
        mean0 + sigma0 * jax.random.normal(jax.random.fold_in(k_inits[i], 0), (n, mean0.shape[0]))
        for i, n in enumerate(sizes)
    ]
    f0, r0 = fitness_fn(jnp.concatenate(x0s), k_inits[-1])
    f0s, r0s = jnp.split(f0, cuts), jnp.split(r0, cuts)
    states, best0 = [], []
    for i, (algo, params) in enumerate(entries):
        if is_population_based(algo):
            states.append(algo.init(k_inits[i], x0s[i], f0s[i], params))
            best0.append(jnp.min(r0s[i]))
        else:
            states.append(algo.init(k_inits[i], mean0, params))
            best0.append(jnp.asarray(jnp.inf, jnp.float32))

    def step(carry, k):
        states, best = carry
        ks = jax.random.split(k, 2 * n_opt + 1)
        xs, new_states = [], []
        for i, (algo, params) in enumerate(entries):
            x, s = algo.ask(ks[2 * i], states[i], params)
            xs.append(x)
            new_states.append(s)
        f, r = fitness_fn(jnp.concatenate(xs), ks[-1])
        f = jnp.nan_to_num(f, nan=1e30, posinf=1e30, neginf=-1e30)
        fs, rs = jnp.split(f, cuts), jnp.split(r, cuts)
        out_states, out_best, gen_best = [], [], []
        for i, (algo, params) in enumerate(entries):
            s, _ = algo.tell(ks[2 * i + 1], xs[i], fs[i], new_states[i], params)
            out_states.append(s)
            out_best.append(jnp.minimum(best[i], _finite_min(rs[i])))
            gen_best.append(jnp.min(fs[i]))
        return (out_states, out_best), (jnp.stack(gen_best), jnp.stack(out_best))

    _, (gen_best, best) = jax.lax.scan(step, (states, best0), jax.random.split(k_loop, generations))
    return [Rollout(gen_best[:, i], best[:, i]) for i in range(n_opt)]
