"""Discovered Evolution Strategy (DES): the explicit heuristic reverse-engineered from LES.

Lange et al. (2023), *Discovering Evolution Strategies via Meta-Black-Box Optimization*,
ICLR 2023, arXiv:2211.11260, Section 6. Inspecting the meta-trained LES showed recombination
weights that are a sharp sigmoid of the centred rank and near-constant learning rates; DES
writes that down. Fitness is **minimised**: rank 0 is the lowest fitness.

With centred rank ``c_r = r / (N - 1) - 0.5`` of member ``i`` (rank ``r``)::

    w_i   = softmax_r( -20 * sigmoid(temperature * c_r) )          (temperature = 12.5)
    m     <- m + alpha_m * sum_i w_i (x_i - m)                      (alpha_m = 1)
    sigma <- sigma + alpha_s * (sqrt(sum_i w_i (x_i - m)^2) - sigma) (alpha_s = 0.1)

This matches ``evosax.algorithms.DiscoveredES`` (0.3.2) with its default SGD(1.0) optimiser;
ranks with ties take the average rank truncated to an integer, as evosax's ``rankdata`` does.
``temperature``, ``lr_mean`` and ``lr_std`` are traced (``DESParams``), so they can be tuned
or meta-learned under ``vmap``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from metalab.bbo.features import update_best


class DESParams(NamedTuple):
    """Traced DES hyperparameters."""

    std_init: jax.Array
    temperature: jax.Array
    lr_mean: jax.Array
    lr_std: jax.Array


class DESState(NamedTuple):
    """DES search state."""

    mean: jax.Array
    std: jax.Array
    best_solution: jax.Array
    best_fitness: jax.Array
    generation_counter: jax.Array


def des_rank_weights(population_size: int, temperature: jax.Array) -> jax.Array:
    """Weights per rank (rank 0 = best): ``softmax(-20 sigmoid(temperature * c_r))``."""
    c = jnp.arange(population_size) / (population_size - 1) - 0.5
    return jax.nn.softmax(-20.0 * jax.nn.sigmoid(temperature * c))


def des_init(mean: jax.Array, params: DESParams) -> DESState:
    """Initial state at ``mean`` with ``std = std_init``."""
    d = mean.shape[0]
    return DESState(
        mean=mean,
        std=jnp.full((d,), params.std_init, mean.dtype),
        best_solution=jnp.full((d,), jnp.nan, mean.dtype),
        best_fitness=jnp.asarray(jnp.inf, mean.dtype),
        generation_counter=jnp.asarray(0, jnp.int32),
    )


def des_ask(key: jax.Array, state: DESState, population_size: int) -> jax.Array:
    """``x_i = m + sigma * eps_i``; returns ``(N, D)``."""
    eps = jax.random.normal(key, (population_size, state.mean.shape[0]), state.mean.dtype)
    return state.mean + state.std * eps


def des_tell(
    population: jax.Array, fitness: jax.Array, state: DESState, params: DESParams
) -> DESState:
    """DES update (minimisation)."""
    n = population.shape[0]
    f = jnp.where(jnp.isnan(fitness), jnp.inf, fitness)
    ranks = (jax.scipy.stats.rankdata(f) - 1.0).astype(jnp.int32)
    w = des_rank_weights(n, params.temperature)[ranks]
    w = jnp.where(jnp.all(jnp.isnan(fitness)), 0.0, w)
    diff = population - state.mean
    mean = state.mean + params.lr_mean * (w @ diff)
    std = state.std + params.lr_std * (jnp.sqrt(w @ jnp.square(diff)) - state.std)
    best_x, best_f = update_best(population, fitness, state.best_solution, state.best_fitness)
    return DESState(mean, std, best_x, best_f, state.generation_counter + 1)


class DES:
    """evosax-style object API around :func:`des_ask` / :func:`des_tell` (minimisation)."""

    def __init__(self, population_size: int, solution: Any):
        if int(population_size) < 2:
            raise ValueError(f"population_size must be >= 2, got {population_size}")
        if isinstance(solution, int):
            solution = jnp.zeros((solution,))
        flat, self._unravel = ravel_pytree(solution)
        self.population_size = int(population_size)
        self.num_dims = int(flat.size)

    @property
    def default_params(self) -> DESParams:
        """``std_init 1``, ``temperature 12.5``, ``lr_mean 1``, ``lr_std 0.1``."""
        f = jnp.float32
        return DESParams(f(1.0), f(12.5), f(1.0), f(0.1))

    def init(self, key: jax.Array, mean: Any, params: DESParams) -> DESState:
        """Initial state (``key`` unused)."""
        del key
        return des_init(ravel_pytree(mean)[0], params)

    def ask(self, key: jax.Array, state: DESState, params: DESParams) -> tuple[Any, DESState]:
        """Sample a population; returns ``(population, state)``."""
        del params
        return jax.vmap(self._unravel)(des_ask(key, state, self.population_size)), state

    def tell(
        self,
        key: jax.Array,
        population: Any,
        fitness: jax.Array,
        state: DESState,
        params: DESParams,
    ) -> tuple[DESState, dict]:
        """Update from fitness (**lower is better**); returns ``(state, metrics)``."""
        del key
        pop = jax.vmap(lambda x: ravel_pytree(x)[0])(population)
        new = des_tell(pop, fitness, state, params)
        return new, {
            "best_fitness": new.best_fitness,
            "generation_counter": state.generation_counter,
        }
