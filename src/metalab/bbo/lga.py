"""Learned Genetic Algorithm (LGA).

Lange, Tang, Tian, Zahavy, Flennerhag, Singh (2023). *Discovering Attention-Based Genetic
Algorithms via Meta-Black-Box Optimization*. GECCO 2023, arXiv:2304.03995.

A GA over ``E = N`` parents ``(X_E, f_E, sigma_E, age_E)`` with three attention operators whose
weights ``theta`` live in the traced ``net`` field of :class:`LGAParams` (fitness is
**minimised** throughout):

* **sampling** (``ask``): parent features ``F_E = [1(f < f_best), crank(f), zscore(f),
  tanh(age / (t + 1e-8) - 1)]``; ``p = softmax(Dense(MHSA(F_E)))``; ``N`` parent indices are
  drawn with replacement from ``p``;
* **mutation-rate adaptation** (``ask``): for the sampled parents' features
  ``[F, zscore(sigma), norm(sigma) + offset]`` a self-attention gives ``log v`` and
  ``sigma_C = sigma * exp(log v / 2)``; children ``x_C = x_P + sigma_C * eps``;
* **selection** (``tell``): features of children and parents are computed jointly over the
  ``2N`` fitness values; ``A = MHCA(query = F_E, key/value = F_C)``,
  ``S = (A W_q + b_q)(F_C W_k + b_k)^T / sqrt(16)``; a logit ``1`` is appended for "keep the
  parent", and each parent slot samples ``j ~ Categorical(softmax([S_e, 1]))``: child ``j``
  replaces the parent (age reset to 0), or the parent is kept (age + 1).

evosax compatibility (``evosax.algorithms.LearnedGA``, 0.3.2): :class:`LGA` subclasses evosax's
``PopulationBasedAlgorithm`` (same ``init(key, population, fitness, params)``, ``ask``, ``tell``
and metrics); :func:`metalab.bbo.init_state` starts it from a mean like an ES. With evosax's
weights converted by :func:`metalab.bbo.weights.lga_from_evosax` the same keys give the same
samples and selections. Feature-contract details: the *improvement* feature compares with a
separate "shaped" best fitness that ``init`` does **not** set (it starts at +inf, so the flag is
all ones in the first ``ask``); the mutation ``norm(sigma)`` feature carries an offset of ``+2``
for evosax's default (2023) checkpoints (``legacy_sigma_feature=True``) and ``0`` for weights
passed explicitly to evosax and for metalab's own weights. Weights from ``load_weights("evosax-
lga", num_dims=D)`` carry their offset (a ``sigma_offset`` leaf). The replacement uses a gather
where evosax multiplies by a one-hot matrix: identical for finite values, and O(N D) not O(N^2
D).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from evosax.algorithms.population_based.base import (
    Params as _Params,
)
from evosax.algorithms.population_based.base import (
    State as _State,
)
from evosax.algorithms.population_based.base import (
    metrics_fn as _metrics_fn,
)
from evosax.core.fitness_shaping import identity_fitness_shaping_fn
from flax import struct

from metalab.bbo.base import PopulationBasedAlgorithm, as_solution, check_population_size
from metalab.bbo.features import (
    dense,
    fitness_features,
    init_attention,
    init_dense,
    multihead_attention,
    range_normalise,
    update_best,
    zscore,
)

HEADS, FEATURES = 2, 16


@struct.dataclass
class LGAParams(_Params):
    """Traced LGA parameters: initial mutation std, crossover rate (unused, 0) and weights."""

    std_init: jax.Array
    crossover_rate: jax.Array
    net: dict


@struct.dataclass
class LGAState(_State):
    """LGA state: evosax's archive fields (``population``, ``fitness``, best, counter) plus:"""

    std: jax.Array  # (E,) parents' mutation strengths
    age: jax.Array  # (E,) generations survived
    std_C: jax.Array  # (N,) children's mutation strengths (set by ask)
    best_fitness_shaped: jax.Array  # () best fitness of the archive, used by the features


def init_lga_net(key: jax.Array) -> dict:
    """Random LGA weights (1,906 numbers)."""
    ks = jax.random.split(key, 7)
    return {
        "sampling": {
            "att": init_attention(ks[0], 4, HEADS, FEATURES),
            "logit": init_dense(ks[1], FEATURES, 1),
        },
        "selection": {
            "cross": init_attention(ks[2], 3, HEADS, FEATURES),
            "q": init_dense(ks[3], FEATURES, FEATURES),
            "k": init_dense(ks[4], 3, FEATURES),
        },
        "mutation": {
            "att": init_attention(ks[5], 5, HEADS, FEATURES),
            "log_var": init_dense(ks[6], FEATURES, 1),
        },
    }


def lga_init(population: jax.Array, fitness: jax.Array, params: LGAParams) -> LGAState:
    """Archive the evaluated initial population (``N`` rows) as the parents."""
    n, d = population.shape
    f = jnp.where(jnp.isnan(fitness), jnp.inf, fitness)
    i = jnp.argmin(f)
    return LGAState(
        best_solution=population[i],
        best_fitness=f[i],
        generation_counter=jnp.asarray(0, jnp.int32),
        population=population,
        fitness=fitness,
        std=jnp.full((n,), params.std_init, population.dtype),
        age=jnp.zeros((n,), population.dtype),
        std_C=jnp.zeros((n,), population.dtype),
        best_fitness_shaped=jnp.asarray(jnp.inf, population.dtype),
    )


def lga_ask(
    key: jax.Array,
    state: LGAState,
    params: LGAParams,
    population_size: int,
    sigma_offset: float = 0.0,
) -> tuple[jax.Array, LGAState]:
    """Sample parents by learned attention, adapt their mutation rates, mutate; ``(N, D)``."""
    net = params.net
    key_idx, key_eps = jax.random.split(key)
    age_feat = jnp.tanh(state.age / (state.generation_counter + 1e-8) - 1.0)
    f_e = jnp.concatenate(
        [fitness_features(state.fitness, state.best_fitness_shaped), age_feat[:, None]], axis=1
    )
    att = multihead_attention(net["sampling"]["att"], f_e, f_e)
    p = jax.nn.softmax(dense(net["sampling"]["logit"], att)[:, 0])
    idx = jax.random.choice(key_idx, state.fitness.shape[0], (population_size,), p=p)
    x_c, f_c, std_c = state.population[idx], state.fitness[idx], state.std[idx]
    sig = std_c[:, None]
    # weights converted from evosax's legacy checkpoints carry their own offset
    sigma_offset = net.get("sigma_offset", sigma_offset)
    feats = jnp.concatenate(
        [
            fitness_features(f_c, state.best_fitness_shaped),
            zscore(sig),
            range_normalise(sig) + sigma_offset,
        ],
        axis=1,
    )
    m = multihead_attention(net["mutation"]["att"], feats, feats)
    std_c = std_c * jnp.exp(0.5 * dense(net["mutation"]["log_var"], m)[:, 0])
    eps = jax.random.normal(key_eps, (population_size, state.population.shape[1]))
    return x_c + std_c[:, None] * eps, state.replace(std_C=std_c)


def lga_update(
    key: jax.Array,
    population: jax.Array,
    fitness: jax.Array,
    state: LGAState,
    params: LGAParams,
) -> LGAState:
    """Learned selection of children into parent slots (keep-parent option); minimisation.

    Updates the archive of parents only (not the best-so-far or the counter)."""
    net = params.net
    n = population.shape[0]
    feats = fitness_features(jnp.concatenate([fitness, state.fitness]), state.best_fitness_shaped)
    f_x, f_e = feats[:n], feats[n:]
    a = multihead_attention(net["selection"]["cross"], f_e, f_x)
    s = dense(net["selection"]["q"], a) @ dense(net["selection"]["k"], f_x).T
    s = s / jnp.sqrt(jnp.float32(FEATURES))
    s = jnp.concatenate([s, jnp.ones((s.shape[0], 1), s.dtype)], axis=1)
    j = jax.random.categorical(key, s, axis=1)  # (E,), j == n means "keep the parent"
    keep = j == n
    jc = jnp.minimum(j, n - 1)
    new_pop = jnp.where(keep[:, None], state.population, population[jc])
    new_fit = jnp.where(keep, state.fitness, fitness[jc])
    new_std = jnp.where(keep, state.std, state.std_C[jc])
    new_age = jnp.where(keep, state.age + 1, 0.0)
    _, best_shaped = update_best(new_pop, new_fit, new_pop[0], state.best_fitness_shaped)
    return state.replace(
        population=new_pop,
        fitness=new_fit,
        std=new_std,
        age=new_age,
        best_fitness_shaped=best_shaped,
    )


def lga_tell(
    key: jax.Array,
    population: jax.Array,
    fitness: jax.Array,
    state: LGAState,
    params: LGAParams,
) -> LGAState:
    """One full LGA tell (archive of the best, learned selection, counter)."""
    best_x, best_f = update_best(population, fitness, state.best_solution, state.best_fitness)
    new = lga_update(key, population, fitness, state, params)
    return new.replace(
        best_solution=best_x, best_fitness=best_f, generation_counter=state.generation_counter + 1
    )


class LGA(PopulationBasedAlgorithm):
    """Learned Genetic Algorithm on evosax's population-based base (minimisation).

    ``init(key, population, fitness, params)`` takes an evaluated population, as evosax's
    ``LearnedGA``; :func:`metalab.bbo.init_state` starts it from a mean instead.

    Args:
      population_size: N children per generation (also the number of parents).
      solution: a template solution pytree (or an int D).
      weights: the ``net`` pytree; ``None`` loads metalab's shipped meta-trained weights
        (``load_weights("evosax-lga", num_dims=D)`` gives the checkpoint evosax would use,
        with its legacy sigma-feature offset).
      legacy_sigma_feature: add ``+2`` to the range-normalised sigma feature, the contract of
        evosax's default 2023 checkpoints, for weights that do not carry ``sigma_offset``.
      fitness_shaping_fn, metrics_fn: as in evosax.
    """

    def __init__(
        self,
        population_size: int,
        solution: Any,
        weights: dict | None = None,
        legacy_sigma_feature: bool = False,
        fitness_shaping_fn: Callable = identity_fitness_shaping_fn,
        metrics_fn: Callable = _metrics_fn,
    ):
        n = check_population_size(population_size)
        super().__init__(n, as_solution(solution), fitness_shaping_fn, metrics_fn)
        if weights is None:
            from metalab.bbo.weights import load_weights

            weights = load_weights("lga")
        self.weights = weights
        self.sigma_offset = 2.0 if legacy_sigma_feature else 0.0

    @property
    def _default_params(self) -> LGAParams:
        """``std_init = 1``, ``crossover_rate = 0`` and the constructor's weights."""
        return LGAParams(jnp.float32(1.0), jnp.float32(0.0), self.weights)

    def _init(self, key: jax.Array, params: LGAParams) -> LGAState:
        n, d = self.population_size, self.num_dims
        return LGAState(
            best_solution=jnp.full((d,), jnp.nan),
            best_fitness=jnp.asarray(jnp.inf, jnp.float32),
            generation_counter=jnp.asarray(0, jnp.int32),
            population=jnp.full((n, d), jnp.nan),
            fitness=jnp.full((n,), jnp.inf),
            std=jnp.full((n,), params.std_init, jnp.float32),
            age=jnp.zeros((n,)),
            std_C=jnp.zeros((n,)),
            best_fitness_shaped=jnp.asarray(jnp.inf, jnp.float32),
        )

    def _ask(self, key: jax.Array, state: LGAState, params: LGAParams):
        return lga_ask(key, state, params, self.population_size, self.sigma_offset)

    def _tell(self, key, population, fitness, state: LGAState, params: LGAParams) -> LGAState:
        return lga_update(key, population, fitness, state, params)
