"""TDU: temporal-difference uncertainty as an intrinsic reward for explorer ensemble members.

Reference: Flennerhag, Wang, Sprechmann, Visin, Galashov, Kapturowski, Borsa, Heess, Barreto,
Pascanu (2020), "Temporal Difference Uncertainties as a Signal for Exploration",
arXiv:2010.02255.

An ensemble ``{Q_k}`` of Q-functions with randomised priors (bootstrapped DQN, see
:mod:`metalab.rl.boot_dqn`) is split into *exploiters* ``E`` (trained on the extrinsic reward)
and *explorers* ``X``. On a transition ``tau = (s, a, r, s')`` each exploiter has a TD error

    delta_k(tau) = r + gamma * max_a' Qbar_k(s', a') - Q_k(s, a),     k in E,

and the TD uncertainty is their spread across the ensemble (an estimate of the std of the TD
error under the posterior over parameters; sample std, ``ddof = 1``):

    sigma(tau) = sqrt( 1 / (|E| - 1) * sum_{k in E} (delta_k(tau) - mean_{j in E} delta_j)^2 ).

Explorers learn Q-functions of the augmented reward, with ``sigma`` treated as a constant
(stop-gradient):

    r~_k = r + beta * sg(sigma(tau))   for k in X,      r~_k = r   for k in E.

Since ``r`` enters the TD error linearly, an explorer's TD error is its extrinsic one plus
``beta * sg(sigma)``; :func:`tdu_td_errors` applies that to a stacked ``[K, B]`` array so one
forward/backward pass serves both groups. Behaviour: one member (exploiter or explorer) is
sampled uniformly per episode and followed greedily. ``beta >= 0`` is an exploration bonus
(rewards are maximised).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def explorer_mask(num_ensemble: int, num_explorers: int) -> jax.Array:
    """``[K]`` booleans: the last ``num_explorers`` members are explorers.

    Raises if fewer than 2 exploiters remain when there are explorers (the std needs >= 2).
    """
    if num_ensemble < 1 or not 0 <= num_explorers < num_ensemble:
        raise ValueError(
            f"tdu: need num_ensemble >= 1 and 0 <= num_explorers < num_ensemble; got "
            f"num_ensemble={num_ensemble}, num_explorers={num_explorers}"
        )
    if num_explorers > 0 and num_ensemble - num_explorers < 2:
        raise ValueError(
            f"tdu: the TD-error std needs >= 2 exploiters; got num_ensemble={num_ensemble}, "
            f"num_explorers={num_explorers}"
        )
    return jnp.arange(num_ensemble) >= num_ensemble - num_explorers


def td_uncertainty(td_errors: jax.Array, is_explorer: jax.Array) -> jax.Array:
    """``sg(sigma)``: sample std (ddof 1) over exploiter members of their TD errors.

    Args:
      td_errors: ``[K, ...]`` extrinsic TD errors of every member on the same transitions.
      is_explorer: ``[K]`` booleans (explorers are excluded from the std).

    Returns:
      ``[...]`` the stop-gradient TD uncertainty of each transition (>= 0).
    """
    w = (~is_explorer).astype(td_errors.dtype).reshape((-1,) + (1,) * (td_errors.ndim - 1))
    n = jnp.sum(~is_explorer)
    mean = jnp.sum(w * td_errors, axis=0) / n
    var = jnp.sum(w * (td_errors - mean) ** 2, axis=0) / jnp.maximum(n - 1, 1)
    return jax.lax.stop_gradient(jnp.sqrt(var))


def tdu_td_errors(
    td_errors: jax.Array, is_explorer: jax.Array, beta: jax.Array | float
) -> tuple[jax.Array, jax.Array]:
    """Members' TD errors for TDU: explorers' get ``+ beta * sg(sigma)``.

    Args:
      td_errors: ``[K, ...]`` extrinsic TD errors ``r + gamma max Qbar' - Q``.
      is_explorer: ``[K]`` booleans.
      beta: bonus weight (>= 0; may be traced).

    Returns:
      ``(td_errors_with_bonus [K, ...], sigma [...])``.
    """
    sigma = td_uncertainty(td_errors, is_explorer)
    x = is_explorer.astype(td_errors.dtype).reshape((-1,) + (1,) * (td_errors.ndim - 1))
    return td_errors + x * beta * sigma, sigma


def tdu_rewards(
    r_t: jax.Array, sigma: jax.Array, is_explorer: jax.Array, beta: jax.Array | float
) -> jax.Array:
    """Per-member rewards ``[K, ...]``: ``r + beta * sg(sigma)`` for explorers, ``r`` else."""
    x = is_explorer.astype(r_t.dtype).reshape((-1,) + (1,) * r_t.ndim)
    return r_t[None] + x * beta * jax.lax.stop_gradient(sigma)[None]
