"""Learned Evolution Strategy (LES).

Lange, Schaul, Chen, Zahavy, Dalibard, Lu, Singh, Flennerhag (2023). *Discovering Evolution
Strategies via Meta-Black-Box Optimization*. ICLR 2023, arXiv:2211.11260.

A diagonal-Gaussian search distribution ``N(m, diag(sigma^2))`` whose update is produced by two
small networks with learned weights ``theta`` (the ``net`` field of :class:`LESParams`):

* **recombination weights** from self-attention over per-member fitness features
  ``F_i = [1(f_i < f_best), centred_rank(f)_i, zscore(f)_i]`` (fitness is **minimised**)::

      K = F W_k + b_k,  Q = F W_q + b_q,  V = F W_v + b_v
      w = softmax( softmax(Q K^T / sqrt(N)) V )          # (N,), sums to one

* **learning rates** per dimension from an MLP over evolution paths of the weighted step
  ``dm = sum_i w_i (x_i - m)`` and weighted noise ``dz = sum_i w_i (x_i - m) / sigma`` at
  timescales ``c in {0.1, 0.5, 0.9}`` (``p <- (1 - c) p + c d``) and a tanh time embedding::

      h_j = relu([p_c_j, p_sigma_j, tanh(t / tau - 1)] W_h + b_h)
      alpha_m_j = sigmoid(h_j W_m + b_m),  alpha_s_j = sigmoid(h_j W_s + b_s)

* the update::

      m     <- m + alpha_m * (sum_i w_i x_i - m)
      sigma <- max(0, sigma + alpha_s * (sqrt(sum_i w_i (x_i - m)^2 + 1e-8) - sigma))

The optimiser is invariant to the order of the population and works for any N and D. The
``net`` pytree is traced, so ``jax.vmap`` over a batch of candidate weights evaluates many
LES variants at once (what MetaBBO does).

Compatibility with ``evosax.algorithms.LearnedES`` (0.3.2): :class:`LES` subclasses evosax's
``DistributionBasedAlgorithm`` (see :mod:`metalab.bbo.base`), so ``init``/``ask``/``tell`` and
the metrics are evosax's own; with evosax's weights
converted by :func:`metalab.bbo.weights.les_from_evosax`, samples and updates agree to float
tolerance for the same keys (see ``tests/bbo/test_equivalence.py``). Feature-contract details
that matter: the attention temperature is ``sqrt(N)`` (not ``sqrt(d_k)``); the improvement flag
compares against the best fitness *before* the current generation; ranks break ties by position;
the time embedding uses the generation counter *before* it is incremented.
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
from metalab.bbo.features import (
    dense,
    fitness_features,
    init_dense,
    tanh_time_embedding,
    update_best,
)

PATH_TIMESCALES = (0.1, 0.5, 0.9)


@struct.dataclass
class LESParams(_Params):
    """Traced LES parameters: initial std and the learned network weights ``net``."""

    std_init: jax.Array
    net: dict


@struct.dataclass
class LESState(_State):
    """LES search state (flat vectors of length D); evosax's ``mean``/best/counter fields plus:"""

    std: jax.Array  # (D,)
    p_c: jax.Array  # (D, 3) evolution paths of the weighted step
    p_std: jax.Array  # (D, 3) evolution paths of the weighted noise
    best_fitness_shaped: jax.Array  # () best fitness before this generation (features)


def init_les_net(key: jax.Array, hidden: int = 8) -> dict:
    """Random LES weights (246 numbers for ``hidden=8``)."""
    ks = jax.random.split(key, 6)
    n_in = 2 * len(PATH_TIMESCALES) + 13
    return {
        "recomb": {
            "k": init_dense(ks[0], 3, hidden),
            "q": init_dense(ks[1], 3, hidden),
            "v": init_dense(ks[2], 3, 1),
        },
        "lr": {
            "hidden": init_dense(ks[3], n_in, hidden),
            "mean": init_dense(ks[4], hidden, 1),
            "std": init_dense(ks[5], hidden, 1),
        },
    }


def recombination_weights(net: dict, features: jax.Array) -> jax.Array:
    """Self-attention recombination weights ``w`` (``(N,)``, non-negative, sum to one)."""
    p = net["recomb"]
    k, q, v = dense(p["k"], features), dense(p["q"], features), dense(p["v"], features)
    att = jax.nn.softmax(q @ k.T / jnp.sqrt(jnp.float32(features.shape[0])), axis=-1)
    return jax.nn.softmax((att @ v)[:, 0])


def learning_rates(
    net: dict, p_c: jax.Array, p_std: jax.Array, t: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Per-dimension learning rates ``(alpha_m, alpha_sigma)`` in (0, 1), each ``(D,)``."""
    p = net["lr"]
    emb = jnp.broadcast_to(tanh_time_embedding(t), (p_c.shape[0], 13))
    h = jax.nn.relu(dense(p["hidden"], jnp.concatenate([p_c, p_std, emb], axis=1)))
    return jax.nn.sigmoid(dense(p["mean"], h))[:, 0], jax.nn.sigmoid(dense(p["std"], h))[:, 0]


def les_init(mean: jax.Array, params: LESParams) -> LESState:
    """Initial state at ``mean`` with ``std = std_init``."""
    d = mean.shape[0]
    z = jnp.zeros((d, len(PATH_TIMESCALES)), mean.dtype)
    return LESState(
        best_solution=jnp.full((d,), jnp.nan, mean.dtype),
        best_fitness=jnp.asarray(jnp.inf, mean.dtype),
        generation_counter=jnp.asarray(0, jnp.int32),
        mean=mean,
        std=jnp.broadcast_to(jnp.asarray(params.std_init, mean.dtype), (d,)),
        p_c=z,
        p_std=z,
        best_fitness_shaped=jnp.asarray(jnp.inf, mean.dtype),
    )


def les_ask(key: jax.Array, state: LESState, population_size: int) -> jax.Array:
    """Sample ``x_i = m + sigma * eps_i``, ``eps ~ N(0, I)``; returns ``(N, D)``."""
    eps = jax.random.normal(key, (population_size, state.mean.shape[0]), state.mean.dtype)
    return state.mean + state.std * eps


def les_update(
    population: jax.Array, fitness: jax.Array, state: LESState, params: LESParams
) -> LESState:
    """The learned update of mean, std and paths (not the archive or the counter)."""
    net = params.net
    w = recombination_weights(net, fitness_features(fitness, state.best_fitness_shaped))
    # Weighted sums as multiply + reduce, not ``w @ ...``: XLA's CPU backend fuses the
    # subtraction/square into a matrix-vector product and then runs it as a naive loop (profiled
    # at D 1000, N 1024: 16 ms each, 3x slower than evosax's whole generation).
    wc = w[:, None]
    diff = population - state.mean  # (N, D)
    step = jnp.sum(wc * diff, axis=0)  # = sum_i w_i x_i - m, since sum_i w_i = 1 up to rounding
    c = jnp.asarray(PATH_TIMESCALES, population.dtype)
    p_c = (1.0 - c) * state.p_c + c * step[:, None]
    p_std = (1.0 - c) * state.p_std + c * (step / state.std)[:, None]
    lr_m, lr_s = learning_rates(net, p_c, p_std, state.generation_counter)
    mean = state.mean + lr_m * (jnp.sum(wc * population, axis=0) - state.mean)
    target_std = jnp.sqrt(jnp.sum(wc * jnp.square(diff), axis=0) + 1e-8)
    std = jnp.maximum(state.std + lr_s * (target_std - state.std), 0.0)
    f = jnp.where(jnp.isnan(fitness), jnp.inf, fitness)
    shaped = jnp.minimum(state.best_fitness_shaped, jnp.min(f))
    return state.replace(mean=mean, std=std, p_c=p_c, p_std=p_std, best_fitness_shaped=shaped)


def les_tell(
    population: jax.Array, fitness: jax.Array, state: LESState, params: LESParams
) -> LESState:
    """One full LES step (archive, update, counter) from an evaluated population."""
    best_x, best_f = update_best(population, fitness, state.best_solution, state.best_fitness)
    new = les_update(population, fitness, state, params)
    return new.replace(
        best_solution=best_x, best_fitness=best_f, generation_counter=state.generation_counter + 1
    )


class LES(DistributionBasedAlgorithm):
    """Learned Evolution Strategy on evosax's distribution-based base (minimisation).

    Args:
      population_size: N, members per generation (>= 2).
      solution: a template solution pytree (or an int D); samples are unravelled to it.
      weights: the ``net`` pytree; ``None`` loads metalab's shipped meta-trained weights for
        this D, ``load_weights("les", num_dims=D)``: the high-dimensional checkpoint when
        D > 100, else the low-dimensional one (``load_weights("evosax-les")`` gives evosax's).
      fitness_shaping_fn, metrics_fn: as in evosax (identity shaping; evosax's metrics).
    """

    def __init__(
        self,
        population_size: int,
        solution: Any,
        weights: dict | None = None,
        fitness_shaping_fn: Callable = identity_fitness_shaping_fn,
        metrics_fn: Callable = _metrics_fn,
    ):
        n = check_population_size(population_size)
        super().__init__(n, as_solution(solution), fitness_shaping_fn, metrics_fn)
        if weights is None:
            from metalab.bbo.weights import load_weights

            weights = load_weights("les", num_dims=self.num_dims)
        self.weights = weights

    @property
    def _default_params(self) -> LESParams:
        """``std_init = 1`` and the constructor's weights."""
        return LESParams(std_init=jnp.float32(1.0), net=self.weights)

    def _init(self, key: jax.Array, params: LESParams) -> LESState:
        return les_init(jnp.zeros((self.num_dims,)), params)

    def _ask(self, key: jax.Array, state: LESState, params: LESParams):
        return les_ask(key, state, self.population_size), state

    def _tell(self, key, population, fitness, state: LESState, params: LESParams) -> LESState:
        return les_update(population, fitness, state, params)
