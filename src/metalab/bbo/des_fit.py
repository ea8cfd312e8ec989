"""Reverse-engineering DES from a trained LES (Lange et al., 2023, Section 6).

The paper inspects its meta-trained LES, finds recombination weights that are a sharp sigmoid
of the fitness rank and learning rates that stay nearly constant, and writes down DES with the
constants read off the LES. This module does that fit for *metalab's* LES:

1. **trace** the LES on training tasks (BBOB training functions, several D and N): at every
   generation record its recombination weights sorted by fitness rank and its per-dimension
   learning rates ``alpha_m``, ``alpha_sigma``;
2. **temperature**: per population size N, the least-squares fit of DES's rank weights
   ``softmax_r(-20 sigmoid(T c_r))`` to the LES's mean weight profile (a 1-D search over
   ``log T``); the reported temperature is the median over the N used;
3. **learning rates**: ``lr_mean`` and ``lr_std`` are the medians of the LES's ``alpha_m`` and
   ``alpha_sigma`` over generations, dimensions and tasks.

The result is shipped as ``weights/des_fitted.json`` (with the LES weights' record and the
profiles) and loaded by :func:`fitted_des_params`. Run ``python -m metalab.bbo.des_fit``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from metalab.bbo.des import DESParams, des_rank_weights
from metalab.bbo.features import fitness_features
from metalab.bbo.les import (
    PATH_TIMESCALES,
    LESParams,
    learning_rates,
    les_ask,
    les_init,
    les_tell,
    recombination_weights,
)
from metalab.bbo.problems import LES_TRAIN_FNS, make_evaluate, sample_task
from metalab.bbo.weights import WEIGHTS_DIR, load_weights

FITTED_PATH = WEIGHTS_DIR / "des_fitted.json"
TEMPERATURES = np.exp(np.linspace(np.log(0.1), np.log(200.0), 400))


def les_trace(
    net: dict,
    fn_names: tuple[str, ...],
    num_dims: int,
    population_size: int,
    generations: int,
    key: jax.Array,
    tasks_per_fn: int = 2,
) -> dict[str, jax.Array]:
    """LES rank-weight profiles ``(F, J, T, N)`` and learning rates ``(F, J, T, D)``."""
    evaluate = make_evaluate(fn_names, ("noiseless",))
    n = population_size

    def one_task(fn_index, k):
        k_task, k_run = jax.random.split(k)
        task = sample_task(k_task, num_dims, num_dims, ("noiseless",), (0.5, 2.0), 2.0)
        params = LESParams(task.sigma0, net)
        state = les_init(task.mean0, params)

        def step(state, kk):
            k_ask, k_eval = jax.random.split(kk)
            x = les_ask(k_ask, state, n)
            f, _ = evaluate(fn_index, task, x, k_eval)
            w = recombination_weights(net, fitness_features(f, state.best_fitness_shaped))
            step_ = w @ (x - state.mean)
            c = jnp.asarray(PATH_TIMESCALES)
            p_c = (1.0 - c) * state.p_c + c * step_[:, None]
            p_std = (1.0 - c) * state.p_std + c * (step_ / state.std)[:, None]
            lr_m, lr_s = learning_rates(net, p_c, p_std, state.generation_counter)
            profile = w[jnp.argsort(f)]  # weight of the best, second best, ...
            return les_tell(x, f, state, params), (profile, lr_m, lr_s)

        _, out = jax.lax.scan(step, state, jax.random.split(k_run, generations))
        return out

    def one_fn(_, xs):
        fi, ks = xs
        return None, jax.vmap(lambda k: one_task(fi, k))(ks)

    keys = jax.random.split(key, len(fn_names) * tasks_per_fn).reshape(
        len(fn_names), tasks_per_fn, -1
    )
    _, (profile, lr_m, lr_s) = jax.lax.scan(one_fn, None, (jnp.arange(len(fn_names)), keys))
    return {"profile": profile, "lr_mean": lr_m, "lr_std": lr_s}


def fit_temperature(profile: np.ndarray) -> tuple[float, float]:
    """Least-squares temperature for a mean rank profile ``(N,)``; returns ``(T, rmse)``."""
    n = profile.shape[0]
    cand = np.stack([np.asarray(des_rank_weights(n, jnp.float32(t))) for t in TEMPERATURES])
    err = np.sqrt(np.mean((cand - profile[None]) ** 2, axis=1))
    i = int(np.argmin(err))
    return float(TEMPERATURES[i]), float(err[i])


def fit_des(
    net: dict,
    sizes: tuple[tuple[int, int], ...] = ((5, 16), (15, 48), (30, 24)),
    generations: int = 50,
    fn_names: tuple[str, ...] = LES_TRAIN_FNS,
    seed: int = 0,
) -> dict:
    """Fit DES's temperature and learning rates to LES weights ``net`` on training tasks.

    ``sizes`` lists ``(D, N)``; tasks use the LES training functions only (the evaluation of
    DES in des-heuristic uses other tasks and seeds).
    """
    temps, rmses, profiles, lr_m, lr_s = [], [], {}, [], []
    for i, (d, n) in enumerate(sizes):
        tr = les_trace(net, fn_names, d, n, generations, jax.random.PRNGKey(seed * 100 + i))
        prof = np.asarray(tr["profile"]).reshape(-1, n).mean(axis=0)
        t, e = fit_temperature(prof)
        temps.append(t)
        rmses.append(e)
        profiles[f"D{d}_N{n}"] = prof.round(5).tolist()
        lr_m.append(np.asarray(tr["lr_mean"]).ravel())
        lr_s.append(np.asarray(tr["lr_std"]).ravel())
    lr_m, lr_s = np.concatenate(lr_m), np.concatenate(lr_s)
    return {
        "temperature": float(np.median(temps)),
        "lr_mean": float(np.median(lr_m)),
        "lr_std": float(np.median(lr_s)),
        "per_size_temperature": dict(zip(profiles, temps, strict=True)),
        "per_size_rmse": dict(zip(profiles, rmses, strict=True)),
        "lr_mean_iqr": np.percentile(lr_m, [25, 75]).round(4).tolist(),
        "lr_std_iqr": np.percentile(lr_s, [25, 75]).round(4).tolist(),
        "rank_profiles": profiles,
        "sizes": [list(s) for s in sizes],
        "generations": generations,
        "fns": list(fn_names),
    }


def fitted_des_params(std_init: float = 1.0, path: str | Path | None = None) -> DESParams:
    """DES params with the constants fitted to metalab's shipped LES (``des_fitted.json``)."""
    rec = json.loads(Path(path or FITTED_PATH).read_text())
    f = jnp.float32
    return DESParams(f(std_init), f(rec["temperature"]), f(rec["lr_mean"]), f(rec["lr_std"]))


def main(argv: list[str] | None = None) -> None:
    """``python -m metalab.bbo.des_fit [--weights les] [--out weights/des_fitted.json]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default="les")
    ap.add_argument("--out", default=str(FITTED_PATH))
    a = ap.parse_args(argv)
    rec = fit_des(load_weights(a.weights))
    rec["les_weights"] = a.weights
    Path(a.out).write_text(json.dumps(rec, indent=2) + "\n")
    print(json.dumps({k: rec[k] for k in ("temperature", "lr_mean", "lr_std")}))


if __name__ == "__main__":
    main()
