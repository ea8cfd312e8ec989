"""Discovered Evolution Strategy (DES): the explicit heuristic reverse-engineered from LES.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*,
ICLR 2023, arXiv:2211.11260, Section 6. Inspecting the meta-trained LES showed recombination
weights that are a sharp sigmoid of the centred rank and near-constant learning rates; DES
writes that down. Fitness is **minimised**: rank 0 is the lowest fitness.

With centred rank ``c_r = r / (N - 1) - 0.5`` of member ``i`` (rank ``r``)::

    w_i   = softmax_r( -20 * sigmoid(temperature * c_r) )          (temperature = 12.5)
    m     <- m + alpha_m * sum_i w_i (x_i - m)                      (alpha_m = 1)
    sigma <- sigma + alpha_s * (sqrt(sum_i w_i (x_i - m)^2) - sigma) (alpha_s = 0.1)

This matches ``evosax.algorithms.DiscoveredES`` (0.3.2) with its default SGD(1.0) optimiser
(:class:`DES` subclasses evosax's ``DistributionBasedAlgorithm``, like evosax's DES);
ranks with ties take the average rank truncated to an integer, as evosax's ``rankdata`` does.
``temperature``, ``lr_mean`` and ``lr_std`` are traced (``DESParams``), so they can be tuned
or meta-learned under ``vmap``. :func:`metalab.bbo.des_fit.fitted_des_params` gives the
constants fitted to metalab's own LES (the paper's reverse-engineering step).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from evosax.algorithms.distribution_based.base import (
    Params as _Params,
)
from evosax.algorithms.distribution_based.base import (
    State as _State,
)
from evosax.algorithms.distribution_based.base import (
    metrics_fn as _metrics_fn,
)
from evosax.core.fitness_shaping import identity_fitness_shaping_fn
from flax import struct

from metalab.bbo.base import DistributionBasedAlgorithm, as_solution, check_population_size
from metalab.bbo.features import update_best


@struct.dataclass
class DESParams(_Params):
    """Traced DES hyperparameters."""

    std_init: jax.Array
    temperature: jax.Array
    lr_mean: jax.Array
    lr_std: jax.Array


@struct.dataclass
class DESState(_State):
    """DES search state: evosax's ``mean``/best/counter fields plus the std."""

    std: jax.Array


def des_rank_weights(population_size: int, temperature: jax.Array) -> jax.Array:
    """Weights per rank (rank 0 = best): ``softmax(-20 sigmoid(temperature * c_r))``."""
    c = jnp.arange(population_size) / (population_size - 1) - 0.5
    return jax.nn.softmax(-20.0 * jax.nn.sigmoid(temperature * c))


def des_init(mean: jax.Array, params: DESParams) -> DESState:
    """Initial state at ``mean`` with ``std = std_init``."""
    d = mean.shape[0]
    return DESState(
        best_solution=jnp.full((d,), jnp.nan, mean.dtype),
        best_fitness=jnp.asarray(jnp.inf, mean.dtype),
        generation_counter=jnp.asarray(0, jnp.int32),
        mean=mean,
        std=jnp.full((d,), params.std_init, mean.dtype),
    )


def des_ask(key: jax.Array, state: DESState, population_size: int) -> jax.Array:
    """``x_i = m + sigma * eps_i``; returns ``(N, D)``."""
    eps = jax.random.normal(key, (population_size, state.mean.shape[0]), state.mean.dtype)
    return state.mean + state.std * eps


def des_update(
    population: jax.Array, fitness: jax.Array, state: DESState, params: DESParams
) -> DESState:
    """DES update of mean and std (minimisation); not the archive or the counter."""
    n = population.shape[0]
    f = jnp.where(jnp.isnan(fitness), jnp.inf, fitness)
    ranks = (jax.scipy.stats.rankdata(f) - 1.0).astype(jnp.int32)
    w = des_rank_weights(n, params.temperature)[ranks]
    w = jnp.where(jnp.all(jnp.isnan(fitness)), 0.0, w)
    diff = population - state.mean
    wc = w[:, None]  # multiply + reduce, not w @ ...: see les_update (XLA-CPU dot fusion)
    mean = state.mean + params.lr_mean * jnp.sum(wc * diff, axis=0)
    std = state.std + params.lr_std * (jnp.sqrt(jnp.sum(wc * jnp.square(diff), axis=0)) - state.std)
    return state.replace(mean=mean, std=std)


def des_tell(
    population: jax.Array, fitness: jax.Array, state: DESState, params: DESParams
) -> DESState:
    """One full DES step (archive, update, counter)."""
    best_x, best_f = update_best(population, fitness, state.best_solution, state.best_fitness)
    new = des_update(population, fitness, state, params)
    return new.replace(
        best_solution=best_x, best_fitness=best_f, generation_counter=state.generation_counter + 1
    )


class DES(DistributionBasedAlgorithm):
    """Discovered ES on evosax's distribution-based base (minimisation).

    ``default_params`` are evosax's constants (12.5, 1, 0.1);
    :func:`metalab.bbo.des_fit.fitted_des_params` gives the ones fitted to metalab's LES.
    """

    def __init__(
        self,
        population_size: int,
        solution: Any,
        fitness_shaping_fn: Callable = identity_fitness_shaping_fn,
        metrics_fn: Callable = _metrics_fn,
    ):
        n = check_population_size(population_size)
        super().__init__(n, as_solution(solution), fitness_shaping_fn, metrics_fn)

    @property
    def _default_params(self) -> DESParams:
        """``std_init 1``, ``temperature 12.5``, ``lr_mean 1``, ``lr_std 0.1``."""
        f = jnp.float32
        return DESParams(f(1.0), f(12.5), f(1.0), f(0.1))

    def _init(self, key: jax.Array, params: DESParams) -> DESState:
        return des_init(jnp.zeros((self.num_dims,)), params)

    def _ask(self, key: jax.Array, state: DESState, params: DESParams):
        return des_ask(key, state, self.population_size), state

    def _tell(self, key, population, fitness, state: DESState, params: DESParams) -> DESState:
        return des_update(population, fitness, state, params)
