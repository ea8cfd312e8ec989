"""les-neuroevolution: meta-trained LES transfers to neuroevolution (control and vision).

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*,
ICLR 2023: LES meta-trained on low-dimensional BBOB functions transfers to neuroevolution
tasks with far more parameters and is competitive with OpenAI-ES and SNES. Two small tasks
here: a CartPole-v1 MLP policy (gymnax, fitness = minus the episode return) and an MLP
classifier on sklearn's 8x8 digits (fitness = training cross-entropy; test accuracy
reported). Every method gets one stated setting (no tuning) and the same budget.

"Competitive" is tested as paired non-inferiority with declared margins: digits test accuracy
within 0.01 of each baseline, and on CartPole the area under the learning curve (mean over
generations of the best return in the generation, divided by the episode cap of 500 steps)
within 0.05. The curve area separates methods that both end at the cap (a tie at the ceiling
of the final return could not fail), and the 500-step cap (CartPole-v1's) is rarely reached.

``weights="les"`` loads the shipped checkpoint for the task's D (``load_weights("les",
num_dims=D)``): both MLPs (CartPole D 114 at 16 hidden units, digits D 1,210) are above 100, so
they use the high-dimensional checkpoint ``les_metalab_highd`` (docs/bbo.md). That checkpoint
was meta-trained on BBOB and on synthetic MLP classification tasks (``metalab.bbo.neuro_tasks``,
metalab's extension of the paper's BBOB-only training); neither digits nor CartPole was used.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalab.bbo.les import LES
from metalab.core.checks import Rule, judge
from metalab.experiments.base import Experiment, Verdict, param
from metalab.experiments.les_bbob import _PAPER

DIGITS_MARGIN = 0.01  # test accuracy
CARTPOLE_MARGIN = 0.05  # fraction of the maximal return, on the learning-curve area

RULES = tuple(
    Rule(
        f"{task}: LES not worse than {b}",
        "non_inferiority",
        a=f"{metric}/les",
        b=f"{metric}/{b}",
        margin=margin,
        test="t",
        paired=True,
        direction="greater",
        group=task,
        doc="paper: LES transfers to neuroevolution and is competitive with OpenAI-ES and SNES",
    )
    for task, metric, margin in (
        ("digits", "digits_test_acc", DIGITS_MARGIN),
        ("CartPole", "cartpole_auc", CARTPOLE_MARGIN),
    )
    for b in ("openes", "snes")
)


@dataclass(frozen=True)
class NeuroConfig:
    hidden: int = param(16, "hidden units of both MLPs", lo=2, hi=256)
    cartpole_population: int = param(16, "population size on CartPole", lo=4, hi=4096)
    cartpole_generations: int = param(40, "generations on CartPole", lo=1, hi=10000)
    cartpole_steps: int = param(500, "max episode steps on CartPole", lo=10, hi=500)
    digits_population: int = param(32, "population size on digits", lo=4, hi=4096)
    digits_generations: int = param(200, "generations on digits", lo=1, hi=100000)
    sigma0: float = param(0.1, "initial std of LES and SNES, and OpenES's std", lo=1e-4, hi=10.0)
    openes_lr: float = param(0.03, "OpenES Adam learning rate", lo=1e-5, hi=1.0)
    weights: str = param(
        "les", "LES weights: 'les' (metalab shipped, chosen by D), 'evosax-les' or a path"
    )


def _mlp_init(key, sizes):
    ks = jax.random.split(key, len(sizes) - 1)
    return [
        {"w": jax.random.normal(k, (a, b)) / jnp.sqrt(a), "b": jnp.zeros(b)}
        for k, a, b in zip(ks, sizes[:-1], sizes[1:], strict=True)
    ]


def _mlp(params, x):
    for layer in params[:-1]:
        x = jnp.tanh(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]


def _digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    n_tr = 1400
    return x[idx[:n_tr]], y[idx[:n_tr]], x[idx[n_tr:]], y[idx[n_tr:]]


def _algos(config, n, template):
    from evosax.algorithms import SNES, Open_ES

    from metalab.bbo.weights import load_weights

    # "les": LES's default, the shipped checkpoint for the template's D (high-D above 100)
    weights = None if config.weights == "les" else load_weights(config.weights)
    les = LES(n, template, weights=weights)
    oes = Open_ES(
        n,
        template,
        optimizer=optax.adam(config.openes_lr),
        std_schedule=optax.constant_schedule(config.sigma0),
    )
    snes = SNES(n, template)
    s0 = jnp.float32(config.sigma0)
    return {
        "les": (les, les.default_params.replace(std_init=s0)),
        "openes": (oes, oes.default_params),
        "snes": (snes, snes.default_params.replace(std_init=s0)),
    }


def _evolve(algo, params, mean0, fitness_fn, key, generations):
    """Minimise ``fitness_fn(x_pytree) -> scalar`` over pytrees; returns final mean and curve."""
    k0, k1 = jax.random.split(key)
    state = algo.init(k0, mean0, params)

    def step(s, k):
        ka, ke, kt = jax.random.split(k, 3)
        x, s = algo.ask(ka, s, params)
        f = jax.vmap(fitness_fn, in_axes=(0, None))(x, ke)
        s, _ = algo.tell(kt, x, f, s, params)
        return s, jnp.min(f)

    state, curve = jax.lax.scan(step, state, jax.random.split(k1, generations))
    return algo.get_mean(state), curve


def run(config: NeuroConfig, key: jax.Array) -> dict:
    import gymnax

    out = {}
    k_cp, k_dg, k_init = jax.random.split(key, 3)
    # --- CartPole: minimise minus the return of a deterministic MLP policy
    env, env_params = gymnax.make("CartPole-v1")
    sizes = (4, config.hidden, env.num_actions)

    def episode_return(policy, k):
        obs, st = env.reset(k, env_params)

        def body(c, kk):
            obs, st, ret, alive = c
            a = jnp.argmax(_mlp(policy, obs))
            obs, st, r, term, trunc, _ = env.step(kk, st, a, env_params)
            done = jnp.logical_or(term, trunc).astype(jnp.float32)
            ret = ret + alive * r
            return (obs, st, ret, alive * (1.0 - done)), None

        (_, _, ret, _), _ = jax.lax.scan(
            body, (obs, st, 0.0, 1.0), jax.random.split(k, config.cartpole_steps)
        )
        return ret

    template = _mlp_init(k_init, sizes)
    for name, (algo, params) in _algos(config, config.cartpole_population, template).items():
        mean, curve = _evolve(
            algo,
            params,
            template,
            lambda p, k: -episode_return(p, k),
            k_cp,
            config.cartpole_generations,
        )
        rets = jax.vmap(episode_return, in_axes=(None, 0))(mean, jax.random.split(k_cp, 8))
        out[f"cartpole_return/{name}"] = jnp.mean(rets)
        out[f"cartpole_curve/{name}"] = -curve
        out[f"cartpole_auc/{name}"] = jnp.mean(-curve) / config.cartpole_steps
    # --- digits: minimise training cross-entropy of an MLP
    xtr, ytr, xte, yte = (jnp.asarray(a) for a in _digits())
    dsizes = (64, config.hidden, 10)

    def xent(p, k):
        del k
        logits = _mlp(p, xtr)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, ytr))

    dtemplate = _mlp_init(jax.random.fold_in(k_init, 1), dsizes)
    for name, (algo, params) in _algos(config, config.digits_population, dtemplate).items():
        mean, curve = _evolve(algo, params, dtemplate, xent, k_dg, config.digits_generations)
        acc = jnp.mean(jnp.argmax(_mlp(mean, xte), -1) == yte)
        out[f"digits_test_acc/{name}"] = acc
        out[f"digits_train_xent/{name}"] = curve
    return out


def verdict(data: dict, config: NeuroConfig) -> Verdict:
    checks = judge(RULES, data)
    lines = []
    for key in ("digits_test_acc", "cartpole_auc", "cartpole_return"):
        vals = ", ".join(
            f"{m} {np.mean(data[f'{key}/{m}']):.3f}" for m in ("les", "openes", "snes")
        )
        lines.append(f"{key} (mean over seeds): {vals}")
    return Verdict(
        checks=checks,
        summary="Meta-trained LES on CartPole (gymnax) and digits MLP neuroevolution.",
        notes="\n".join(lines),
    )


EXPERIMENT = Experiment(
    name="les-neuroevolution",
    paper=_PAPER,
    claim=(
        "LES meta-trained on BBOB transfers to neuroevolution (control and image "
        "classification) and is competitive with OpenAI-ES and SNES."
    ),
    config_cls=NeuroConfig,
    presets={
        "smoke": NeuroConfig(
            hidden=4,
            cartpole_population=4,
            cartpole_generations=2,
            cartpole_steps=10,
            digits_population=4,
            digits_generations=2,
        ),
        "quick": NeuroConfig(),
        "full": NeuroConfig(
            hidden=64,
            cartpole_population=256,
            cartpole_generations=500,
            cartpole_steps=500,
            digits_population=256,
            digits_generations=5000,
        ),
    },
    seeds={"smoke": 2, "quick": 5, "full": 20},
    run=run,
    verdict=verdict,
    rules=RULES,
    ladder=(  # metalab scale: generations on digits (and CartPole)
        {"digits_generations": 2, "seeds": 4},
        {"digits_generations": 20, "cartpole_generations": 10, "cartpole_steps": 50, "seeds": 4},
        {"preset": "quick", "digits_generations": 50, "cartpole_generations": 20},
        {"preset": "quick", "digits_generations": 200},
        {"preset": "quick", "digits_generations": 1000, "cartpole_generations": 100, "seeds": 10},
        {"preset": "full", "digits_generations": 5000},
    ),
    tags=("bbo", "les", "neuroevolution"),
)
