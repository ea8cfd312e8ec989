"""Deep Sea (bsuite) on top of gymnax's pure-JAX ``DeepSea``, plus bsuite-style scoring.

Reference: Osband et al. (2020), "Behaviour Suite for Reinforcement Learning" (bsuite), and
Osband, Aslanides & Cassirer (2018), "Randomized Prior Functions for Deep RL".

Definition (bsuite 0.3.6, ``bsuite.environments.deep_sea``): an ``N x N`` grid, the agent
starts at row 0, column 0 and falls one row per step, so every episode lasts exactly ``N``
steps. In each cell ``(r, c)`` one of the two actions means *right*: action ``a`` is right iff
``a == mapping[r, c]`` with ``mapping ~ Bernoulli(1/2)^{N x N}`` (drawn once from
``mapping_seed``). Moving right costs ``move_cost / N`` (charged even if a stochastic move
fails); taking *right* in the last column pays ``+1``. Going *left* while on the diagonal
(``row == column``) makes the episode "bad". In the stochastic variant a right move fails (the
column stays) with probability ``1/N``, and standard normal noise is added to the reward in
the two bottom corner cells. The optimal return is ``1 - move_cost`` (deterministic) or
``(1 - 1/N)^(N-1) - move_cost`` (stochastic).

gymnax 1.0.1's ``DeepSea`` implements these dynamics (checked line by line and by
``tests/rl/test_deep_sea.py`` against bsuite's own environment). The only difference is how
the action mapping is drawn: gymnax uses ``jax.random.bernoulli(key(0))``, bsuite uses
``numpy.random.RandomState(mapping_seed).binomial``. :func:`make_deep_sea` therefore puts
bsuite's mapping in the params so that the same ``mapping_seed`` gives the same MDP.

The action mapping is a traced input: it lives in :class:`DeepSeaParams` (``params.action_mapping``,
``[N, N]`` int32), so a new mapping is a new argument value, not a new program: mappings vmap
(one program for many MDPs) and changing them never recompiles. gymnax's own ``DeepSea`` keeps
the mapping as a Python attribute of the environment object, which a jitted function closes over
as a constant (one compilation per mapping).

Observations are the one-hot ``N x N`` grid (all zeros after the last step). Agents here use
the equivalent integer :func:`cell_index` (``row * N + column``, ``N * N`` for the terminal
null observation), so that a first network layer is a table lookup instead of a dense matmul.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments.bsuite.deep_sea import DeepSea as _GymnaxDeepSea
from gymnax.environments.bsuite.deep_sea import EnvParams, EnvState

__all__ = [
    "DeepSea",
    "DeepSeaParams",
    "EnvParams",
    "EnvState",
    "bsuite_action_mapping",
    "bsuite_score",
    "cell_index",
    "make_deep_sea",
    "random_action_mapping",
    "reachable_cells",
    "optimal_return",
    "solve_episode",
]


def _check_size(size: int) -> None:
    if not isinstance(size, int | np.integer) or size < 2:
        raise ValueError(f"deep sea: size must be an int >= 2, got {size!r}")


@struct.dataclass
class DeepSeaParams(EnvParams):
    """gymnax's ``EnvParams`` plus the action mapping as a traced array.

    ``action_mapping``: ``[N, N]`` int32; action ``mapping[r, c]`` moves right in cell
    ``(r, c)``. ``None`` falls back to the environment object's mapping (gymnax behaviour).
    """

    action_mapping: jax.Array | None = None


class DeepSea(_GymnaxDeepSea):
    """gymnax's ``DeepSea`` whose reset reads the action mapping from ``params``.

    Dynamics, rewards and observations are gymnax's (``step_env`` reads the mapping from the
    state, which ``reset_env`` fills). gymnax-style API: ``reset(key, params) -> (obs, state)``,
    ``step(key, state, action, params) -> (obs, state, reward, done, info)`` (auto-reset), and
    the raw ``reset_env`` / ``step_env``.
    """

    @property
    def default_params(self) -> DeepSeaParams:
        return DeepSeaParams(
            max_steps_in_episode=self.size, action_mapping=jnp.asarray(self.action_mapping)
        )

    def reset_env(self, key: jax.Array, params: EnvParams) -> tuple[jax.Array, EnvState]:
        obs, state = super().reset_env(key, params)
        mapping = getattr(params, "action_mapping", None)
        if mapping is None:
            return obs, state
        mapping = jnp.asarray(mapping, jnp.int32)
        if mapping.shape != (self.size, self.size):
            raise ValueError(
                f"deep sea: params.action_mapping must have shape ({self.size}, {self.size}), "
                f"got {mapping.shape}"
            )
        debug = jnp.ones_like(mapping)
        fixed = jnp.where(params.randomize_actions, mapping, debug)
        sampled = jax.random.bernoulli(key, 0.5, mapping.shape).astype(jnp.int32)
        return obs, state.replace(
            action_mapping=jnp.where(params.sample_action_map, sampled, fixed)
        )


def random_action_mapping(key: jax.Array, size: int) -> jax.Array:
    """A fresh ``[N, N]`` mapping ``~ Bernoulli(1/2)`` from a JAX key (vmappable over keys)."""
    _check_size(size)
    return jax.random.bernoulli(key, 0.5, (size, size)).astype(jnp.int32)


def bsuite_action_mapping(
    size: int, mapping_seed: int | None = 42, randomize_actions: bool = True
) -> np.ndarray:
    """The per-cell action mapping bsuite draws for ``(size, mapping_seed)``.

    Args:
      size: grid size ``N`` (>= 2).
      mapping_seed: bsuite's ``mapping_seed`` (the bsuite sweep uses 42).
      randomize_actions: if False, bsuite's debug mapping (action 1 is right everywhere).

    Returns:
      An ``int32`` array ``[N, N]``: action ``mapping[r, c]`` moves right in cell ``(r, c)``.
    """
    _check_size(size)
    if not randomize_actions:
        return np.ones((size, size), np.int32)
    rng = np.random.RandomState(mapping_seed)
    return rng.binomial(1, 0.5, [size, size]).astype(np.int32)


def make_deep_sea(
    size: int,
    deterministic: bool = True,
    mapping_seed: int | None = 42,
    unscaled_move_cost: float = 0.01,
    randomize_actions: bool = True,
) -> tuple[DeepSea, DeepSeaParams]:
    """A gymnax-style ``DeepSea`` with bsuite's action mapping (in ``params``) and parameters.

    Args:
      size: grid size ``N`` (>= 2); the episode length is ``N``.
      deterministic: True for ``deep_sea``, False for ``deep_sea_stochastic`` (right moves
        fail with probability ``1/N``; N(0, 1) reward noise in the bottom corners).
      mapping_seed: bsuite's mapping seed (numpy ``RandomState``).
      unscaled_move_cost: cost of a right move times ``N`` (bsuite default 0.01).
      randomize_actions: False gives bsuite's debug mapping (action 1 = right everywhere).

    Returns:
      ``(env, params)``; use ``env.reset_env(key, params)`` / ``env.step_env(key, state,
      action, params)`` (pure, jit/vmap-able). ``params.action_mapping`` is a traced array:
      ``params.replace(action_mapping=m)`` switches the MDP without recompiling.
    """
    _check_size(size)
    if unscaled_move_cost < 0:
        raise ValueError(f"deep sea: unscaled_move_cost must be >= 0, got {unscaled_move_cost}")
    env = DeepSea(size=int(size))
    mapping = jnp.asarray(bsuite_action_mapping(size, mapping_seed, randomize_actions), jnp.int32)
    env.action_mapping = mapping  # gymnax's attribute, for code that reads it
    params = DeepSeaParams(
        deterministic=bool(deterministic),
        sample_action_map=False,
        unscaled_move_cost=float(unscaled_move_cost),
        randomize_actions=True,  # the mapping in params is used as is
        max_steps_in_episode=int(size),
        action_mapping=mapping,
    )
    return env, params


def optimal_return(
    size: int, deterministic: bool = True, unscaled_move_cost: float = 0.01
) -> float:
    """bsuite's optimal expected episode return (noise excluded)."""
    _check_size(size)
    no_cost = 1.0 if deterministic else (1.0 - 1.0 / size) ** (size - 1)
    return no_cost - unscaled_move_cost


def cell_index(state: EnvState, size: int) -> jax.Array:
    """Integer form of the one-hot observation: ``row * N + column``; ``N * N`` when done."""
    return jnp.where(state.row >= size, size * size, state.row * size + state.column).astype(
        jnp.int32
    )


def reachable_cells(size: int) -> np.ndarray:
    """The cells an episode can visit, sorted: ``row * N + column`` with ``column <= row``
    (the agent starts at column 0 and moves one column per row), plus the null cell ``N * N``.
    ``N (N + 1) / 2 + 1`` of the ``N * N + 1`` inputs."""
    rows, cols = np.tril_indices(int(size))
    return np.append(rows * size + cols, size * size).astype(np.int32)


def solve_episode(bad_t: jax.Array, deterministic: bool = True) -> tuple[jax.Array, jax.Array]:
    """bsuite's "episodes until < 90% bad episodes" on a per-episode log.

    bsuite (``experiments/deep_sea/analysis.find_solution``) calls a run solved at the first
    episode ``e`` (1-based) where ``total_bad_episodes(e) / e < thresh``, with ``thresh = 0.9``;
    the stochastic variant only looks at ``e >= 100`` and uses ``thresh = 0.8``. bsuite
    evaluates this on its logging schedule; here every episode is checked.

    Args:
      bad_t: ``[E]`` booleans, 1 if episode ``t`` was bad (left while on the diagonal).
      deterministic: which variant's threshold to use.

    Returns:
      ``(solved, episode)``: a bool and the 1-based solve episode (``E`` if never solved).
    """
    bad_t = jnp.asarray(bad_t, jnp.float32)
    num = bad_t.shape[0]
    episode = jnp.arange(1, num + 1)
    avg_bad = jnp.cumsum(bad_t) / episode
    thresh, first = (0.9, 1) if deterministic else (0.8, 100)
    ok = (avg_bad < thresh) & (episode >= first)
    solved = jnp.any(ok)
    return solved, jnp.where(solved, jnp.argmax(ok) + 1, num)


def bsuite_score(solved: jax.Array, episode: jax.Array, size: int, forgiveness: float = 100.0):
    """bsuite's Deep Sea score for one size: 1 if solved before episode ``2^N + forgiveness``.

    bsuite averages this indicator over the sizes 10, 12, ..., 50 of its sweep.
    """
    return (jnp.asarray(solved) & (jnp.asarray(episode) < 2.0**size + forgiveness)).astype(
        jnp.float32
    )
