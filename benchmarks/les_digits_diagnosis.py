"""Where les-neuroevolution's digits gap between LES and OpenES comes from (a diagnosis).

Run: ``python benchmarks/les_digits_diagnosis.py [--seeds 15] [--out F]``.

The digits task of les-neuroevolution (MLP 64-16-10, D 1,210, 1,400 training examples, N 32,
T 200, sigma0 0.1, test accuracy of the final mean) with:

* OpenES as the experiment runs it (Adam 0.03, constant sigma 0.1, evosax's default
  **antithetic** sampling: 16 mirrored pairs ``m +/- sigma z``) and the same OpenES with
  i.i.d. samples;
* the shipped LES (i.i.d. samples, as in the paper and evosax) and the same LES asking mirrored
  pairs (``les_highd_validation.mirrored``, a diagnostic subclass);
* DES (lr_mean 1, lr_std 0.1, sigma0 0.1) at temperatures 2, 4 and 12.5, i.i.d. and mirrored:
  the explicit member of LES's family, flatter than the shipped LES (whose profile fits
  temperature ~9) at 2 and 4.

Prints each method's mean test accuracy and final best training cross-entropy over seeds and
paired t-tests of the contrasts. Nothing is chosen from it and nothing here changes a shipped
default: digits is les-neuroevolution's evaluation. Keys are this script's own
(``PRNGKey(seed)``), not the experiment's, so the accuracies differ from the verdict's in the
third decimal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms import Open_ES
from scipy.stats import ttest_rel

from metalab.bbo import DES, LES
from metalab.experiments.les_neuroevolution import _digits, _evolve, _mlp, _mlp_init

SIZES = (64, 16, 10)
CONTRASTS = (
    ("openes", "openes_iid"),
    ("openes", "les"),
    ("openes_iid", "les"),
    ("les_mirrored", "les"),
    ("openes", "des_T2_mirrored"),
)


def _mirrored():
    path = Path(__file__).parent / "les_highd_validation.py"
    spec = importlib.util.spec_from_file_location("les_highd_validation", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.mirrored


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=15)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    xtr, ytr, xte, yte = (jnp.asarray(v) for v in _digits())

    def xent(p, _k):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(_mlp(p, xtr), ytr))

    tmpl = _mlp_init(jax.random.PRNGKey(0), SIZES)
    algos = {}
    for name, anti in (("openes", True), ("openes_iid", False)):
        o = Open_ES(
            32, tmpl, use_antithetic_sampling=anti, optimizer=optax.adam(0.03),
            std_schedule=optax.constant_schedule(0.1),
        )  # fmt: skip
        algos[name] = (o, o.default_params)
    mirrored = _mirrored()
    for name, cls in (("les", LES), ("les_mirrored", mirrored(LES))):
        les = cls(32, tmpl)
        algos[name] = (les, les.default_params.replace(std_init=jnp.float32(0.1)))
    for temp in (2.0, 4.0, 12.5):
        for kind, cls in (("iid", DES), ("mirrored", mirrored(DES))):
            des = cls(32, tmpl)
            algos[f"des_T{temp:g}_{kind}"] = (des, des.default_params.replace(
                std_init=jnp.float32(0.1), temperature=jnp.float32(temp),
                lr_mean=jnp.float32(1.0), lr_std=jnp.float32(0.1),
            ))  # fmt: skip

    res: dict = {}
    for name, (algo, params) in algos.items():

        def one(seed, algo=algo, params=params):
            k_init, k_run = jax.random.split(jax.random.PRNGKey(seed))
            mean, curve = _evolve(algo, params, _mlp_init(k_init, SIZES), xent, k_run, 200)
            return jnp.mean(jnp.argmax(_mlp(mean, xte), -1) == yte), curve[-1]

        acc, best = jax.jit(jax.vmap(one))(jnp.arange(a.seeds))
        res[name] = {"test_acc": np.asarray(acc).tolist(), "best_xent": np.asarray(best).tolist()}
        print(f"{name:18s} test acc {float(acc.mean()):.4f}  final best train xent "
              f"{float(best.mean()):.3f}", flush=True)  # fmt: skip
    res["contrasts"] = {}
    for x, y in CONTRASTS:
        d = np.array(res[x]["test_acc"]) - np.array(res[y]["test_acc"])
        p = float(ttest_rel(res[x]["test_acc"], res[y]["test_acc"]).pvalue)
        res["contrasts"][f"{x} - {y}"] = {"mean_diff": float(d.mean()), "paired_t_p": p}
        print(f"{x} - {y}: {d.mean():+.4f} (paired t, two-sided p {p:.2g})")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
