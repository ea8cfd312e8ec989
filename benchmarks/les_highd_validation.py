"""Validation gate of the high-dimensional LES checkpoint (``les_metalab_highd``).

Run: ``python benchmarks/les_highd_validation.py [--seeds 3] [--dims 200 1000] [--out F]``
(``--candidate PATH`` to gate weights that are not shipped yet; ``--neuro`` adds the
breast-cancer MLP check).

BBOB gate: the 14 held-out functions (not in ``LES_TRAIN_FNS``) at D 200 and 1,000 (never
sampled by the high-D meta-training), N 32, T 200, sigma0 1, mean0 ~ U[-2, 2]^D; every LES
variant sees the same task instances (lockstep). Prints the geometric-mean regret per D and
overall and the paired wins/losses of the candidate against the low-D weights. Decision rule
(fixed before running): ship the candidate iff its overall geometric-mean regret is lower than
the low-D weights' and it wins more paired runs than it loses.

Secondary check (``--neuro``): an MLP 30-16-2 (D 530) on sklearn's breast-cancer data (400
train / 169 test, standardised), N 32, 200 generations, sigma0 0.1, fitness = full-batch
training cross-entropy; LES variants vs OpenES (Adam 0.03), as in les-neuroevolution's digits
task but on a different dataset (digits is the evaluation, never looked at here). 5 seeds.

Replacing the shipped high-D checkpoint (a candidate that is not ``les_metalab_highd.npz``, e.g.
one meta-trained with MLP tasks, ``--sizes highd-neuro``): the shipped checkpoint joins the
variants as ``shipped``, and the decision rule (fixed before the candidate was evaluated) is
``replace``: the candidate passes the BBOB gate above **and** its mean final training
cross-entropy on breast cancer (5 seeds) is lower than the shipped checkpoint's. Its BBOB
geometric mean against the shipped checkpoint is printed too, so a trade-off shows.

Synthetic neuroevolution validation (``--neuro-val``; added with the round-3 candidate, whose
MLP tasks score the final mean's held-out loss, ``--neuro-score heldout``, and declared before
that candidate was evaluated): breast cancer saturates (every method's mean training
cross-entropy < 3e-4, test accuracy 0.97), so it cannot tell generalisation apart. Instead,
20 held-out synthetic classification tasks (:mod:`metalab.bbo.neuro_tasks`, keys disjoint from
meta-training's, 10 per MLP size at 48-16-8 and 24-32-5, neither a training size nor digits'
64-16-10), 1,000 training and 500 test examples each, N 32, T 200, sigma0 0.1 (les-neuroevolution's
settings); fitness is the full-batch training cross-entropy and the score is the **test
accuracy of the final mean**. OpenES (Adam 0.03, constant sigma 0.1) is run beside as a
reference. Decision rule ``replace_val``: the candidate passes the BBOB gate **and** its mean
test accuracy over the 20 tasks is higher than the shipped checkpoint's, one-sided paired
Wilcoxon signed-rank p < 0.05. Digits stays the evaluation and is not run here. The same rule
gates every later candidate (round 4: MLP tasks of 1,000 training examples, ``--neuro-examples``).

Round 5, recombination scale (``--select-scale OUT``; declared before any scale was run): a
diagnosis on the validation tasks found every LES checkpoint recombining with a DES-equivalent
temperature of 8-10 while DES at temperature 4 reached OpenES's accuracy. The candidate is the
shipped checkpoint with its recombination logits multiplied by ``s*``
(:func:`metalab.bbo.weights.scale_recombination`), ``s*`` the scale in ``RECOMB_SCALES`` with
the highest mean test accuracy on a **selection split** of 24 synthetic MLP tasks (``SELECT_ARCHS``,
8 tasks each, keys 95,000+; none is a validation, training or digits size), chosen by the code;
the validation tasks above are not used to choose it. The candidate is then judged by
``replace_val``, unchanged; s* = 1 means no candidate.

Diagnosis (``--diagnose``; after round 5, nothing chosen from it): OpenES's ablations (momentum,
Adam, antithetic sampling, the worse half's ranks), LES with i.i.d. and mirrored samples, DES at
two temperatures and two sigma0, all on the validation tasks.

Round 6, the evaluation regime (declared before the candidate is evaluated): MetaBBO warm-started
from the shipped checkpoint on MLP tasks only, at les-neuroevolution's N 32 / T 200 / sigma0 0.1
(``--sizes neuro-eval --neuro-sigma-range 0.1 0.1``), 1,000 training examples, scored by the
final mean's held-out cross-entropy (``--neuro-score heldout``); judged by ``replace_val``,
unchanged.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from metalab.bbo import LES, load_weights, save_weights, scale_recombination
from metalab.bbo.compare import bbob_comparison
from metalab.bbo.problems import BBOB_NAMES, LES_TRAIN_FNS
from metalab.bbo.weights import WEIGHTS_DIR

HELD_OUT = tuple(f for f in BBOB_NAMES if f not in LES_TRAIN_FNS)


SHIPPED_HIGHD = WEIGHTS_DIR / "les_metalab_highd.npz"


def variants(candidate: str) -> dict[str, str]:
    out = {
        "lowd": str(WEIGHTS_DIR / "les_metalab.npz"),
        "highd": candidate,
        "evosax": "evosax-les",
    }
    if Path(candidate).resolve() != SHIPPED_HIGHD.resolve():
        out["shipped"] = str(SHIPPED_HIGHD)
    return out


def bbob_gate(candidate: str, dims: list[int], seeds: int, n: int = 32, t: int = 200) -> dict:
    out: dict = {}
    for d in dims:
        les = {k: LES(n, d, weights=load_weights(w)) for k, w in variants(candidate).items()}
        methods = {
            k: [lambda s0, a=a: (a, a.default_params.replace(std_init=s0))] for k, a in les.items()
        }
        run = jax.jit(lambda key, m=methods, d=d: bbob_comparison(m, HELD_OUT, d, t, key))
        finals = []
        for s in range(seeds):
            t0 = time.time()
            res = run(jax.random.PRNGKey(1000 + s))
            finals.append({k: np.asarray(v["final"][:, 0]) for k, v in res.items()})
            print(f"D {d} seed {s}: {time.time() - t0:.0f}s", flush=True)
        out[d] = {k: np.stack([f[k] for f in finals]) for k in les}  # (S, F) log10 regret
    return out


def summarise(res: dict) -> dict:
    allv = {k: np.concatenate([res[d][k].ravel() for d in res]) for k in res[next(iter(res))]}
    summary = {
        "per_dim_geomean": {
            str(d): {k: float(10 ** v.mean()) for k, v in res[d].items()} for d in res
        },
        "geomean": {k: float(10 ** v.mean()) for k, v in allv.items()},
        "highd_vs_lowd_wins": int(np.sum(allv["highd"] < allv["lowd"])),
        "highd_vs_lowd_losses": int(np.sum(allv["highd"] > allv["lowd"])),
    }
    if "shipped" in allv:  # a replacement candidate: its paired record against the shipped one
        summary["highd_vs_shipped_wins"] = int(np.sum(allv["highd"] < allv["shipped"]))
        summary["highd_vs_shipped_losses"] = int(np.sum(allv["highd"] > allv["shipped"]))
    g = summary["geomean"]
    summary["ship"] = bool(
        g["highd"] < g["lowd"] and summary["highd_vs_lowd_wins"] > summary["highd_vs_lowd_losses"]
    )
    return summary


def neuro_check(candidate: str, seeds: int, n: int = 32, t: int = 200) -> dict:
    from evosax.algorithms import Open_ES
    from sklearn.datasets import load_breast_cancer

    from metalab.experiments.les_neuroevolution import _evolve, _mlp, _mlp_init

    x, y = load_breast_cancer(return_X_y=True)
    x = ((x - x.mean(0)) / x.std(0)).astype(np.float32)
    idx = np.random.default_rng(0).permutation(len(y))
    xtr, ytr, xte, yte = (jnp.asarray(a) for a in (x[idx[:400]], y[idx[:400]], x[idx[400:]],
                                                    y[idx[400:]]))  # fmt: skip

    def xent(p, key=None):
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(_mlp(p, xtr), ytr))

    res: dict = {}
    for s in range(seeds):
        k_init, k_run = jax.random.split(jax.random.PRNGKey(s))
        tmpl = _mlp_init(k_init, (30, 16, 2))
        algos = {k: LES(n, tmpl, weights=load_weights(w)) for k, w in variants(candidate).items()}
        algos = {
            k: (a, a.default_params.replace(std_init=jnp.float32(0.1))) for k, a in algos.items()
        }
        oes = Open_ES(
            n, tmpl, optimizer=optax.adam(0.03), std_schedule=optax.constant_schedule(0.1)
        )
        algos["openes"] = (oes, oes.default_params)
        for name, (algo, params) in algos.items():
            mean, _ = jax.jit(lambda k, a=algo, p=params, m=tmpl: _evolve(a, p, m, xent, k, t))(
                k_run
            )
            res.setdefault(name, {"test_acc": [], "train_xent": []})
            res[name]["test_acc"].append(float(jnp.mean(jnp.argmax(_mlp(mean, xte), -1) == yte)))
            res[name]["train_xent"].append(float(xent(mean)))
    res["num_dims"] = int(ravel_pytree(tmpl)[0].size)
    return res


VAL_ARCHS = ((48, 16, 8), (24, 32, 5))  # neither in NEURO_SIZES nor digits' 64-16-10
VAL_TASKS = 10  # per architecture


def mlp_task_accuracy(
    make_algos, archs, tasks_per_arch: int, seed: int, n: int = 32, t: int = 200
) -> dict:
    """Test accuracy and training cross-entropy of the final mean on synthetic MLP tasks
    (per method and task, and their means ``mean_test_acc`` / ``mean_train_xent``).

    ``make_algos(d) -> {name: (algo, params)}``; tasks of ``archs[i]`` are drawn from
    ``PRNGKey(seed + i)`` and run with ``PRNGKey(seed + 1000 + i)`` (1,000 training and 500
    test examples each).
    """
    from metalab.bbo.neuro_tasks import cross_entropy, mlp_logits, sample_neuro_task
    from metalab.experiments.les_neuroevolution import _evolve

    res: dict = {}
    for a_i, arch in enumerate(archs):
        keys = jax.random.split(jax.random.PRNGKey(seed + a_i), tasks_per_arch)
        tasks = jax.vmap(
            lambda k, arch=arch: sample_neuro_task(k, *arch, n_examples=1000, n_test=500)
        )(keys)
        for name, (algo, params) in make_algos(int(tasks.mean0.shape[1])).items():
            t0 = time.time()

            def one(task, key, algo=algo, params=params, arch=arch):
                fit = lambda theta, _k: cross_entropy(theta, task, *arch)
                mean, _ = _evolve(algo, params, task.mean0, fit, key, t)
                pred = jnp.argmax(mlp_logits(mean, task.x_test, *arch), -1)
                return jnp.mean(pred == task.y_test), cross_entropy(mean, task, *arch)

            run_keys = jax.random.split(jax.random.PRNGKey(seed + 1000 + a_i), tasks_per_arch)
            acc, xent = jax.jit(jax.vmap(one))(tasks, run_keys)
            r = res.setdefault(name, {"test_acc": [], "train_xent": []})
            r["test_acc"] += np.asarray(acc).tolist()
            r["train_xent"] += np.asarray(xent).tolist()
            print(f"{arch} {name}: acc {float(acc.mean()):.4f} ({time.time() - t0:.0f}s)",
                  flush=True)  # fmt: skip
    res["mean_train_xent"] = {k: float(np.mean(v["train_xent"])) for k, v in res.items()}
    res["mean_test_acc"] = {
        k: float(np.mean(v["test_acc"])) for k, v in res.items() if k != "mean_train_xent"
    }
    return res


def _les_algos(weights: dict[str, str | dict], n: int, sigma0: float):
    def make(d: int) -> dict:
        out = {}
        for k, w in weights.items():
            a = LES(n, d, weights=load_weights(w) if isinstance(w, str) else w)
            out[k] = (a, a.default_params.replace(std_init=jnp.float32(sigma0)))
        return out

    return make


def neuro_validation(candidate: str, n: int = 32, t: int = 200, sigma0: float = 0.1) -> dict:
    """Test accuracy of the final mean on held-out synthetic MLP tasks (see the docstring)."""
    from evosax.algorithms import Open_ES
    from scipy.stats import wilcoxon

    les_algos = _les_algos(variants(candidate), n, sigma0)

    def make(d: int) -> dict:
        oes = Open_ES(
            n, jnp.zeros(d), optimizer=optax.adam(0.03),
            std_schedule=optax.constant_schedule(sigma0),
        )  # fmt: skip
        return {**les_algos(d), "openes": (oes, oes.default_params)}

    res = mlp_task_accuracy(make, VAL_ARCHS, VAL_TASKS, 90_000, n, t)
    if "shipped" in res:
        diff = np.array(res["highd"]["test_acc"]) - np.array(res["shipped"]["test_acc"])
        p = float(wilcoxon(diff, alternative="greater").pvalue) if np.any(diff) else 1.0
        res["highd_vs_shipped"] = {"mean_diff": float(diff.mean()), "wilcoxon_p": p}
    return res


def _mirrored_ask(self, key, state, params):
    z = jax.random.normal(key, (self.population_size // 2, self.num_dims))
    return state.mean + state.std * jnp.concatenate([z, -z]), state


def mirrored(cls: type) -> type:
    """Diagnosis only: a subclass of the diagonal-Gaussian ``cls`` (LES, DES) that asks
    mirrored pairs ``m +/- std * z`` (OpenES's antithetic sampling) instead of the paper's
    i.i.d. samples; N must be even."""
    return type(f"Mirrored{cls.__name__}", (cls,), {"_ask": _mirrored_ask})


def diagnose(n: int = 32, t: int = 200) -> dict:
    """What gives OpenES its edge on the validation tasks (the figures in docs/bbo.md)?

    OpenES (sigma 0.1) with Adam 0.03 as run above, without momentum, with plain SGD, without
    antithetic sampling, and with only the better half's (negative) centred ranks; LES (shipped
    high-D and evosax's weights, sigma0 0.1) with i.i.d. and mirrored samples; DES (lr_mean 1,
    lr_std 0.1) at temperatures 4 and 12.5 and sigma0 0.05 and 0.1. Nothing is chosen from it.
    """
    from evosax.algorithms import Open_ES
    from evosax.core.fitness_shaping import centered_rank_fitness_shaping_fn as crank

    from metalab.bbo import DES

    def good_half(pop, f, state, params):
        return jnp.minimum(crank(pop, f, state, params), 0.0)

    openes = {
        "openes": (optax.adam(0.03), True, crank),
        "openes_adam_b1_0": (optax.adam(0.03, b1=0.0), True, crank),
        "openes_sgd_0.03": (optax.sgd(0.03), True, crank),
        "openes_no_antithetic": (optax.adam(0.03), False, crank),
        "openes_good_half": (optax.adam(0.03), True, good_half),
        "openes_good_half_no_antithetic": (optax.adam(0.03), False, good_half),
    }

    def make(d: int) -> dict:
        out = {}
        for name, (opt, anti, shaping) in openes.items():
            o = Open_ES(
                n, jnp.zeros(d), use_antithetic_sampling=anti, optimizer=opt,
                std_schedule=optax.constant_schedule(0.1), fitness_shaping_fn=shaping,
            )  # fmt: skip
            out[name] = (o, o.default_params)
        for w in ("les-highd", "evosax-les"):
            for kind, cls in (("iid", LES), ("mirrored", mirrored(LES))):
                a = cls(n, d, weights=load_weights(w))
                out[f"{w}_{kind}"] = (a, a.default_params.replace(std_init=jnp.float32(0.1)))
        des = DES(n, d)
        for temp in (4.0, 12.5):
            for sigma0 in (0.05, 0.1):
                p = des.default_params.replace(
                    std_init=jnp.float32(sigma0), temperature=jnp.float32(temp),
                    lr_mean=jnp.float32(1.0), lr_std=jnp.float32(0.1),
                )  # fmt: skip
                out[f"des_T{temp:g}_sigma{sigma0:g}"] = (des, p)
        return out

    return mlp_task_accuracy(make, VAL_ARCHS, VAL_TASKS, 90_000, n, t)


# Selection split of the recombination scale (round 5): no arch is a validation (VAL_ARCHS),
# training (NEURO_SIZES) or digits (64-16-10) size; task keys 95_000+ are used nowhere else.
SELECT_ARCHS = ((32, 24, 6), (56, 12, 4), (20, 40, 7))
SELECT_TASKS = 8  # per architecture
RECOMB_SCALES = (0.25, 0.35, 0.5, 0.7, 1.0, 1.4)


def select_recombination_scale(
    base: str, out: str, n: int = 32, t: int = 200, sigma0: float = 0.1
) -> dict:
    """Pick the recombination scale of ``base`` on the selection split; write the candidate.

    Every scale in ``RECOMB_SCALES`` is run on the selection tasks (N 32, T 200, sigma0 0.1);
    the scale with the highest mean test accuracy is chosen by this code and
    ``scale_recombination(base, s*)`` is written to ``out`` (with a JSON record) unless s* = 1.
    """
    net = load_weights(base)
    weights = {f"scale_{s:g}": scale_recombination(net, s) for s in RECOMB_SCALES}
    make = _les_algos(weights, n, sigma0)
    res = mlp_task_accuracy(make, SELECT_ARCHS, SELECT_TASKS, 95_000, n, t)
    acc = res["mean_test_acc"]
    best = max(RECOMB_SCALES, key=lambda s: acc[f"scale_{s:g}"])
    record = {
        "method": "recombination scale of LES weights chosen on the selection split",
        "base": str(base),
        "recomb_scale": best,
        "selection": {
            "archs": SELECT_ARCHS,
            "tasks_per_arch": SELECT_TASKS,
            "mean_test_acc": acc,
            "n": n,
            "t": t,
            "sigma0": sigma0,
        },
    }
    if best != 1.0:
        save_weights(out, weights[f"scale_{best:g}"], record)
    return record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--candidate", default=str(WEIGHTS_DIR / "les_metalab_highd.npz"))
    ap.add_argument("--dims", type=int, nargs="+", default=[200, 1000])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--neuro", action="store_true")
    ap.add_argument("--neuro-val", action="store_true", help="synthetic MLP validation tasks")
    ap.add_argument("--skip-bbob", action="store_true", help="only the neuro checks")
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--select-scale", metavar="OUT",
        help="choose the recombination scale of --candidate on the selection split, write OUT",
    )  # fmt: skip
    ap.add_argument("--diagnose", action="store_true", help="OpenES / LES / DES ablations")
    a = ap.parse_args()
    if a.diagnose:
        res = diagnose()
        print(json.dumps({k: res[k] for k in ("mean_test_acc", "mean_train_xent")}, indent=1))
        if a.out:
            Path(a.out).write_text(json.dumps(res, indent=1))
        return
    if a.select_scale:
        print(json.dumps(select_recombination_scale(a.candidate, a.select_scale), indent=1))
        return
    summary = {} if a.skip_bbob else summarise(bbob_gate(a.candidate, a.dims, a.seeds))
    if a.neuro_val:
        summary["neuro_val"] = val = neuro_validation(a.candidate)
        if "highd_vs_shipped" in val and "ship" in summary:
            better = val["mean_test_acc"]["highd"] > val["mean_test_acc"]["shipped"]
            summary["replace_val"] = bool(
                summary["ship"] and better and val["highd_vs_shipped"]["wilcoxon_p"] < 0.05
            )
    if a.neuro:
        summary["breast_cancer"] = bc = neuro_check(a.candidate, 5)
        if "shipped" in bc and "ship" in summary:
            xent = {k: float(np.mean(bc[k]["train_xent"])) for k in ("highd", "shipped")}
            summary["replace"] = bool(summary["ship"] and xent["highd"] < xent["shipped"])
    print(json.dumps(summary, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
