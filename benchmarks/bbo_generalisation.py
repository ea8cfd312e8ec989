"""Held-out-size generalisation of metalab's LES / LGA vs evosax's LES / LGA and CMA-ES on BBOB.

Run: ``python benchmarks/bbo_generalisation.py [--cells full|latin] [--seeds 5] [--out F]``.

The grid uses sizes that MetaBBO training never used: D in {20, 50, 100} (excluded from the
training sampler), N in {32, 64, 128}, T in {100, 500} (not in the training size table); all
24 BBOB functions (10 of them are training functions: see the table's ``train`` column);
``--seeds`` task instances per function (random optimum, optimal value, rotations; initial
mean ~ U[-2, 2]^D, sigma0 = 1). Every method sees the same instances and is untuned (its
defaults, std_init = 1). Regret is the noiseless ``f(x) - f_opt`` of the best point evaluated
(floored at 1e-8).

``--summarise F`` prints the tables of a saved ``--out`` file without running anything.
``--cells full`` runs all 18 (D, N, T) cells; ``--cells latin`` runs 6 cells that use every D,
N and T value (a cheaper cover when the machine is loaded). Prints, per method, the geometric
mean regret over all runs and its ratio to evosax LES / LGA, paired wins/losses with a sign
test, and a per-function table (geometric mean over cells and seeds). Results are written to
``--out`` as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from metalab.bbo import LES, LGA, load_weights
from metalab.bbo.compare import bbob_comparison
from metalab.bbo.problems import BBOB_NAMES, LES_TRAIN_FNS

LATIN = ((20, 32, 100), (50, 64, 100), (100, 128, 100), (20, 128, 500), (50, 32, 500),
         (100, 64, 500))  # fmt: skip


def methods(d: int, n: int, les_w: str, lga_w: str, with_cma: bool = True) -> dict:
    from evosax.algorithms import CMA_ES, LearnedES, LearnedGA

    les = LES(n, d, weights=load_weights(les_w))
    lga = LGA(n, d, weights=load_weights(lga_w))
    ev_les, ev_lga = LearnedES(n, jnp.zeros(d)), LearnedGA(n, jnp.zeros(d))
    out = {
        "metalab_les": [lambda s0: (les, les.default_params.replace(std_init=s0))],
        "evosax_les": [lambda s0: (ev_les, ev_les.default_params.replace(std_init=s0))],
        "metalab_lga": [lambda s0: (lga, lga.default_params.replace(std_init=s0))],
        "evosax_lga": [lambda s0: (ev_lga, ev_lga.default_params.replace(std_init=s0))],
    }
    if with_cma:
        cma = CMA_ES(n, jnp.zeros(d))
        out["cma_es"] = [lambda s0: (cma, cma.default_params.replace(std_init=s0))]
    return out


def run_cell(d, n, t, seeds, fns, les_w, lga_w, with_cma=True) -> dict[str, np.ndarray]:
    """``{method: (S, F)}`` final log10 regret."""
    ms = methods(d, n, les_w, lga_w, with_cma)
    keys = jax.random.split(jax.random.PRNGKey(1000 * d + n), seeds)  # same instances for all
    f = jax.jit(jax.vmap(lambda k: bbob_comparison(ms, fns, d, t, k, 1.0, 2.0)))
    res = f(keys)
    return {m: np.asarray(r["final"][..., 0]) for m, r in res.items()}


def summarise(results: dict, fns: tuple[str, ...]) -> str:
    cells = list(results)
    names = list(results[cells[0]])
    allv = {m: np.stack([results[c][m] for c in cells]) for m in names}  # (C, S, F)
    lines = ["method            geomean regret   vs evosax_les   vs evosax_lga"]
    # A run (cell, seed, function) whose final regret is not finite for some method is left
    # out for every method, so that the means stay paired, and counted here. Two causes seen:
    # NaN (an evaluation overflowed, before the fix in problems._finite_min) and +inf (katsuura
    # overflows float32 at D 100 for every method: its product of D factors).
    bad = np.zeros(allv[names[0]].shape, bool)
    for m in names:
        bad |= ~np.isfinite(allv[m])
    if bad.any():
        per_fn = {fns[i]: int(k) for i, k in enumerate(bad.sum(axis=(0, 1))) if k}
        lines.insert(0, f"runs with a non-finite regret, left out for every method: {per_fn}")
        allv = {m: np.where(bad, np.nan, v) for m, v in allv.items()}
        results = {
            c: {m: np.where(bad[j], np.nan, np.asarray(results[c][m])) for m in names}
            for j, c in enumerate(cells)
        }
    gm = {m: float(np.nanmean(allv[m])) for m in names}
    for m in names:
        lines.append(
            f"{m:16s}  {10 ** gm[m]:12.4g}   {10 ** (gm[m] - gm['evosax_les']):10.3g}x"
            f"   {10 ** (gm[m] - gm['evosax_lga']):10.3g}x"
        )
    for a, b in (
        ("metalab_les", "evosax_les"),
        ("metalab_lga", "evosax_lga"),
        ("metalab_les", "cma_es"),
    ):
        if a not in allv or b not in allv:
            continue
        diff = (allv[a] - allv[b]).ravel()
        diff = diff[np.isfinite(diff)]
        w, lo = int(np.sum(diff < -1e-3)), int(np.sum(diff > 1e-3))
        p = stats.binomtest(w, w + lo, 0.5).pvalue if w + lo else 1.0
        lines.append(f"{a} vs {b}: better in {w}, worse in {lo} of {diff.size} paired runs, "
                     f"two-sided sign test p {p:.2g}")  # fmt: skip
    lines.append("")
    lines.append("per-function geometric-mean regret (over cells and seeds); * = training fn")
    lines.append("function                  " + " ".join(f"{m[:12]:>12s}" for m in names))
    for i, fn in enumerate(fns):
        mark = "*" if fn in LES_TRAIN_FNS else " "
        vals = " ".join(f"{10 ** np.nanmean(allv[m][:, :, i]):12.3g}" for m in names)
        lines.append(f"{fn[:24]:24s}{mark} {vals}")
    lines.append("")
    lines.append("per-cell geometric-mean regret")
    lines.append("cell (D,N,T)     " + " ".join(f"{m[:12]:>12s}" for m in names))
    for c in cells:
        row = " ".join(f"{10 ** np.nanmean(results[c][m]):12.3g}" for m in names)
        lines.append(f"{c:16s} {row}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cells", choices=("full", "latin"), default="full")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--fns", default="all", help="comma-separated BBOB names or 'all'")
    ap.add_argument("--les", default="les", help="metalab LES weights (name or npz path)")
    ap.add_argument("--lga", default="lga", help="metalab LGA weights (name or npz path)")
    ap.add_argument("--no-cma", action="store_true")
    ap.add_argument("--out", default="bbo_generalisation.json")
    ap.add_argument("--summarise", metavar="JSON", help="print the tables of a saved --out file")
    a = ap.parse_args(argv)
    if a.summarise:
        with open(a.summarise) as fh:
            saved = json.load(fh)
        res = {
            c: {m: np.asarray(v) for m, v in r.items()} for c, r in saved["log10_regret"].items()
        }
        print(summarise(res, tuple(saved["fns"])))
        return
    fns = BBOB_NAMES if a.fns == "all" else tuple(a.fns.split(","))
    grid = (
        list(itertools.product((20, 50, 100), (32, 64, 128), (100, 500)))
        if a.cells == "full"
        else list(LATIN)
    )
    results: dict[str, dict[str, np.ndarray]] = {}
    for d, n, t in grid:
        t0 = time.time()
        results[f"D{d},N{n},T{t}"] = run_cell(d, n, t, a.seeds, fns, a.les, a.lga, not a.no_cma)
        print(f"cell D{d} N{n} T{t}: {time.time() - t0:.0f}s", flush=True)
        json_out = {c: {m: v.tolist() for m, v in r.items()} for c, r in results.items()}
        with open(a.out, "w") as fh:
            json.dump({"fns": list(fns), "seeds": a.seeds, "log10_regret": json_out}, fh)
    print(summarise(results, fns))


if __name__ == "__main__":
    main()
