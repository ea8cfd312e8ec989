"""Diagnostic of LGA's mutation-rate collapse: which part drives the parents' sigma to zero.

Run: ``python benchmarks/bbo_lga_sigma.py [--weights lga,old.npz,evosax-lga]``.

Two measurements per set of weights:

1. **the mutation net alone**: the factor ``exp(log v / 2)`` it applies to a child's sigma when
   all sampled parents have equal sigma (so the sigma features carry no information), for the
   best / median / worst ranked parent, with the improvement flag on and off. A factor below 1
   with the flag off means the net shrinks sigma whenever progress stalls.
2. **a run** on a rotated, shifted sphere (D 20, N 32, T 200, sigma0 1): the median parent sigma
   at generations 0, 10, 50, 100, 199, the best regret, and the mean log ratio of selected
   children's sigma to their parents' (the selection's own push on sigma).

Weights: ``lga`` (metalab shipped), ``evosax-lga`` (evosax's default, legacy offset), or an npz
path (e.g. the 2025 weights: ``git show fa0e654^:src/metalab/bbo/weights/lga_metalab.npz``).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from metalab.bbo import load_weights
from metalab.bbo.features import (
    dense,
    fitness_features,
    multihead_attention,
    range_normalise,
    zscore,
)
from metalab.bbo.lga import LGAParams, lga_ask, lga_init, lga_tell
from metalab.bbo.problems import make_evaluate, sample_task


def mutation_factor(net: dict, n: int = 32, improved: bool = True) -> np.ndarray:
    f = jnp.linspace(0.0, 1.0, n)
    sig = jnp.full((n, 1), 0.3)
    feats = jnp.concatenate(
        [
            fitness_features(f, jnp.inf if improved else -jnp.inf),
            zscore(sig),
            range_normalise(sig) + net.get("sigma_offset", 0.0),
        ],
        axis=1,
    )
    lv = dense(
        net["mutation"]["log_var"], multihead_attention(net["mutation"]["att"], feats, feats)
    )
    return np.exp(np.asarray(lv[[0, n // 2, n - 1], 0]) / 2)


def sigma_run(net: dict, d: int = 20, n: int = 32, t: int = 200, seed: int = 3) -> dict:
    ev = make_evaluate(("sphere",))
    task = sample_task(jax.random.PRNGKey(seed), d, d, ("noiseless",), (1.0, 1.0), 2.0)
    fit = lambda x, k: ev(0, task, x, k)
    p = LGAParams(jnp.float32(1.0), jnp.float32(0.0), net)
    key = jax.random.PRNGKey(0)
    x0 = task.mean0 + jax.random.normal(key, (n, d))
    state = lga_init(x0, fit(x0, key)[0], p)

    @jax.jit
    def step(s, k):
        k1, k2, k3 = jax.random.split(k, 3)
        par = s.std
        x, s2 = lga_ask(k1, s, p, n)
        f, r = fit(x, k2)
        s3 = lga_tell(k3, x, f, s2, p)
        new = s3.age == 0
        # selected children's sigma relative to the median parent sigma before this generation
        ratio = jnp.sum(jnp.where(new, jnp.log(s3.std / jnp.median(par)), 0.0)) / jnp.maximum(
            jnp.sum(new), 1
        )
        return s3, (jnp.median(par), jnp.min(r), ratio)

    med, best, ratio = [], [], []
    for g in range(t):
        state, (a, b, c) = step(state, jax.random.fold_in(key, g))
        med.append(float(a))
        best.append(float(b))
        ratio.append(float(c))
    return {"sigma": np.array(med), "best": np.minimum.accumulate(best), "log_ratio": ratio}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default="lga,evosax-lga")
    a = ap.parse_args()
    for w in a.weights.split(","):
        net = load_weights(w, num_dims=20)
        on, off = mutation_factor(net, improved=True), mutation_factor(net, improved=False)
        r = sigma_run(net)
        gens = [0, 10, 50, 100, 199]
        print(f"== {w}")
        print(f"  mutation factor at equal sigma (best/median/worst): improved {np.round(on, 3)}, "
              f"not improved {np.round(off, 3)}")  # fmt: skip
        print(
            f"  median parent sigma at gens {gens}: "
            f"{np.array2string(r['sigma'][gens], precision=3)}"
        )
        print(
            f"  best regret at gens {gens[1:]}: {np.array2string(r['best'][gens[1:]], precision=3)}"
        )
        print(f"  mean log(sigma child / median parent) of selected children: "
              f"{np.mean(r['log_ratio']):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
