"""Side-by-side BBOB comparisons of optimisers (used by the bbo reproductions).

:func:`bbob_comparison` runs every optimiser entry on one sampled task per BBOB function, all
entries in lockstep (one objective call per generation, see
:func:`metalab.bbo.problems.lockstep_rollouts`), scanning over functions so the function
index is a scalar and ``lax.switch`` runs one branch. It is pure and vmappable over keys.

Baselines come from evosax; each baseline is a *grid* of settings (the reproductions tune
them per function over seeds, see :func:`tuned_choice`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalab.bbo.problems import lockstep_rollouts, make_evaluate, sample_task

Entry = tuple[Any, Any]
# a method's grid: list of (label, builder(sigma0) -> (algo, params))
Builder = Callable[[jax.Array], Entry]


def bbob_comparison(
    methods: Mapping[str, Sequence[Builder]],
    fn_names: tuple[str, ...],
    num_dims: int,
    generations: int,
    key: jax.Array,
    sigma0: float = 1.0,
    init_range: float = 2.0,
    noise_models: tuple[str, ...] = ("noiseless",),
) -> dict[str, dict[str, jax.Array]]:
    """Final and per-generation log10 regret of every method/grid entry on every function.

    Returns ``{method: {"final": (F, G), "curve": (F, G, T)}}`` with ``log10(max(regret,
    1e-8))`` of the best point evaluated so far (regret = noiseless ``f(x) - f_opt``).
    """
    evaluate = make_evaluate(fn_names, noise_models)
    names = list(methods)
    sizes = [len(methods[m]) for m in names]
    s0 = jnp.float32(sigma0)

    def one_function(_, xs):
        fn_index, k = xs
        k_task, k_run = jax.random.split(k)
        task = sample_task(k_task, num_dims, num_dims, noise_models, (sigma0, sigma0), init_range)
        entries = [b(s0) for m in names for b in methods[m]]
        fit = lambda x, kk: evaluate(fn_index, task, x, kk)
        outs = lockstep_rollouts(entries, fit, k_run, task.mean0, s0, generations)
        curves = jnp.stack([o.best_regret for o in outs])  # (E, T)
        return None, jnp.log10(jnp.maximum(curves, 1e-8))

    keys = jax.random.split(key, len(fn_names))
    _, curves = jax.lax.scan(one_function, None, (jnp.arange(len(fn_names)), keys))  # (F, E, T)
    out, start = {}, 0
    for m, g in zip(names, sizes, strict=True):
        c = curves[:, start : start + g]
        out[m] = {"final": c[:, :, -1], "curve": c}
        start += g
    return out


def tuned_choice(grid_final_over_seeds: np.ndarray) -> np.ndarray:
    """Per-function best grid index by mean over seeds; input ``(S, F, G)``, output ``(F,)``.

    Picking the best setting per function with the evaluation seeds is generous to the
    baselines (selection bias in their favour), so a win against them is conservative.
    """
    return np.argmin(np.asarray(grid_final_over_seeds).mean(axis=0), axis=1)


def tuned_values(grid_final_over_seeds: np.ndarray) -> np.ndarray:
    """``(S, F)`` values at the per-function tuned grid index."""
    a = np.asarray(grid_final_over_seeds)
    idx = tuned_choice(a)
    return a[:, np.arange(a.shape[1]), idx]


# ---------------------------------------------------------------------------- baseline grids


def openes_grid(n: int, d: int, stds=(0.3, 1.0), lrs=(0.03, 0.1, 0.3)) -> list[Builder]:
    """evosax OpenAI-ES (antithetic, centred ranks, Adam) over a (std, lr) grid."""
    from evosax.algorithms import Open_ES

    out = []
    for s in stds:
        for lr in lrs:
            es = Open_ES(
                n, jnp.zeros(d), optimizer=optax.adam(lr), std_schedule=optax.constant_schedule(s)
            )
            out.append(lambda s0, es=es: (es, es.default_params))
    return out


def snes_grid(n: int, d: int, stds=(0.3, 1.0, 3.0)) -> list[Builder]:
    """evosax SNES over initial std."""
    from evosax.algorithms import SNES

    es = SNES(n, jnp.zeros(d))
    return [lambda s0, s=s: (es, es.default_params.replace(std_init=jnp.float32(s))) for s in stds]


def gaussian_ga_grid(n: int, d: int, stds=(0.1, 0.3, 1.0)) -> list[Builder]:
    """evosax SimpleGA (truncation selection + Gaussian mutation) over mutation std."""
    from evosax.algorithms import SimpleGA

    out = []
    for s in stds:
        ga = SimpleGA(n, jnp.zeros(d), std_schedule=optax.constant_schedule(s))
        out.append(lambda s0, ga=ga: (ga, ga.default_params))
    return out


def std_init_grid(cls: Any, n: int, d: int, stds=(0.1, 0.3, 1.0), **kw) -> list[Builder]:
    """Any evosax optimiser whose params have ``std_init``, over a grid of it."""
    algo = cls(n, jnp.zeros(d), **kw)
    return [
        lambda s0, s=s: (algo, algo.default_params.replace(std_init=jnp.float32(s))) for s in stds
    ]
