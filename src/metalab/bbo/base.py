"""One evosax-compatible base for metalab's optimisers.

LES and DES subclass evosax's ``DistributionBasedAlgorithm`` and LGA subclasses evosax's
``PopulationBasedAlgorithm`` (evosax 0.3.2), so ``init`` / ``ask`` / ``tell``, jitting, fitness
shaping, the best-so-far archive and the **metrics every** ``tell`` **returns** are evosax's own:
``generation_counter``, ``best_fitness_in_generation``, ``best_solution_in_generation``,
``best_fitness``, ``best_solution``, ``best_solution_norm`` (+ ``mean`` and ``mean_norm`` for the
distribution-based LES and DES). Swapping ``evosax.algorithms.LearnedES`` for
:class:`metalab.bbo.LES` (or ``LearnedGA`` for :class:`metalab.bbo.LGA`, ``DiscoveredES`` for
:class:`metalab.bbo.DES`) changes nothing else in user code.

The one API difference between the two families (population-based ``init`` takes an evaluated
population) is hidden by :func:`init_state`, which starts any evosax-API optimiser from a mean.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from evosax.algorithms.distribution_based.base import DistributionBasedAlgorithm
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm
from jax.flatten_util import ravel_pytree

__all__ = [
    "DistributionBasedAlgorithm",
    "PopulationBasedAlgorithm",
    "as_solution",
    "check_population_size",
    "init_state",
    "is_population_based",
]


def as_solution(solution: Any) -> Any:
    """A solution template: an int ``D`` becomes ``zeros(D)``, a pytree is kept."""
    if isinstance(solution, int):
        return jnp.zeros((solution,))
    return solution


def check_population_size(population_size: int) -> int:
    """Validate ``N >= 2`` (the learned optimisers rank and z-score the population)."""
    if int(population_size) < 2:
        raise ValueError(f"population_size must be >= 2, got {population_size}")
    return int(population_size)


def is_population_based(algo: Any) -> bool:
    """True for GA-style optimisers (evosax's or metalab's) whose ``init`` takes a population."""
    return isinstance(algo, PopulationBasedAlgorithm)


def init_state(
    algo: Any,
    key: jax.Array,
    mean: Any,
    params: Any,
    fitness_fn: Callable[[Any], jax.Array] | None = None,
    std: float | jax.Array | None = None,
) -> Any:
    """Initial state of any evosax-API optimiser, started from a ``mean`` solution.

    Distribution-based optimisers: ``algo.init(key, mean, params)``. Population-based ones
    (LGA, evosax GAs) need an evaluated population: ``N`` members ``mean + std * eps`` (``std``
    defaults to ``params.std_init``) are evaluated once with ``fitness_fn(population) ->
    (N,)`` (lower is better) and archived.
    """
    if not is_population_based(algo):
        return algo.init(key, mean, params)
    if fitness_fn is None:
        raise ValueError(f"{type(algo).__name__} is population-based: pass fitness_fn")
    k_x, k_init = jax.random.split(key)
    flat = ravel_pytree(mean)[0]
    s = params.std_init if std is None else std
    x = flat + s * jax.random.normal(k_x, (algo.population_size, flat.shape[0]), flat.dtype)
    population = jax.vmap(algo._unravel_solution)(x)
    return algo.init(k_init, population, fitness_fn(population), params)
