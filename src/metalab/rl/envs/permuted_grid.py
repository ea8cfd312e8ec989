r"""A small grid world with permuted observations and actions (pure JAX), for meta-RL.

SymLA (Kirsch et al. 2021) meta-tests a learner on grid worlds whose observation vector and
action indices are shuffled. Here a *lifetime* is a sequence of episodes in one task:

* the grid is ``size x size``; the agent starts every episode in cell 0 (top-left corner);
* the task is a goal cell drawn uniformly from the other cells, fixed for the lifetime;
* reaching the goal gives reward 1 and restarts the episode; after ``episode_len`` steps
  without reaching it the episode also restarts (reward 0);
* the observation is the one-hot cell index passed through an observation permutation
  :math:`\pi_o`: ``obs[i] = onehot(cell)[pi_o[i]]``;
* action ``a`` moves in direction ``MOVES[pi_a[a]]`` (up, down, left, right; walls block).

The training distribution uses identity permutations; a learner that is symmetric in its
inputs and outputs (SymLA) behaves identically in distribution under any :math:`\pi_o,\pi_a`,
an ordinary recurrent policy (RL^2) does not. Reward is maximised.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)  # (row, col) deltas


@struct.dataclass
class GridState:
    """Lifetime state: position, goal, time in episode and the two permutations."""

    pos: jnp.ndarray  # (2,) row, col
    goal: jnp.ndarray  # (2,)
    t_episode: jnp.ndarray
    obs_perm: jnp.ndarray  # (size*size,)
    act_perm: jnp.ndarray  # (4,)


@dataclass(frozen=True)
class PermutedGrid:
    """Grid-world lifetime task.

    Attributes:
      size: side length (>= 2); the observation has ``size**2`` units, there are 4 actions.
      episode_len: steps before an unsuccessful episode restarts (>= 1).
    """

    size: int = 3
    episode_len: int = 6

    def __post_init__(self) -> None:
        if int(self.size) < 2:
            raise ValueError(f"PermutedGrid: size must be >= 2, got {self.size}")
        if int(self.episode_len) < 1:
            raise ValueError(f"PermutedGrid: episode_len must be >= 1, got {self.episode_len}")

    @property
    def obs_dim(self) -> int:
        return int(self.size) ** 2

    @property
    def num_actions(self) -> int:
        return 4

    def init(
        self,
        key: jax.Array,
        obs_perm: jnp.ndarray | None = None,
        act_perm: jnp.ndarray | None = None,
    ) -> GridState:
        """Sample a goal (never the start cell); permutations default to the identity."""
        n = self.obs_dim
        g = jax.random.randint(key, (), 1, n)
        goal = jnp.stack([g // self.size, g % self.size]).astype(jnp.int32)
        return GridState(
            pos=jnp.zeros((2,), jnp.int32),
            goal=goal,
            t_episode=jnp.zeros((), jnp.int32),
            obs_perm=jnp.arange(n) if obs_perm is None else jnp.asarray(obs_perm),
            act_perm=jnp.arange(4) if act_perm is None else jnp.asarray(act_perm),
        )

    def random_perms(self, key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
        """A uniformly random (observation, action) permutation pair."""
        k1, k2 = jax.random.split(key)
        return jax.random.permutation(k1, self.obs_dim), jax.random.permutation(k2, 4)

    def observe(self, state: GridState) -> jnp.ndarray:
        cell = state.pos[0] * self.size + state.pos[1]
        return jax.nn.one_hot(cell, self.obs_dim)[state.obs_perm]

    # gymnax-style raw API (the conventions shared by metalab's RL envs, see docs/tdu.md)
    default_params = None

    def reset_env(self, key: jax.Array, params=None) -> tuple[jnp.ndarray, GridState]:
        """gymnax's ``reset_env``: ``(obs, state)`` of a fresh task (identity orders)."""
        del params
        state = self.init(key)
        return self.observe(state), state

    def step_env(self, key: jax.Array, state: GridState, action: jnp.ndarray, params=None):
        """gymnax's ``step_env``: ``(obs, state, reward, done, info)``; ``done`` marks the
        end of an episode (goal reached or ``episode_len`` steps; the lifetime continues)."""
        del params
        new, r = self.step(key, state, action)
        done = new.t_episode == 0
        return self.observe(new), new, r, done, {}

    def step(
        self, key: jax.Array, state: GridState, action: jnp.ndarray
    ) -> tuple[GridState, jnp.ndarray]:
        """Move; returns the new state and reward (1 on reaching the goal, else 0)."""
        del key  # deterministic dynamics
        new = jnp.clip(state.pos + MOVES[state.act_perm[action]], 0, self.size - 1)
        hit = jnp.all(new == state.goal)
        t = state.t_episode + 1
        restart = hit | (t >= self.episode_len)
        pos = jnp.where(restart, jnp.zeros_like(new), new)
        t = jnp.where(restart, 0, t)
        return state.replace(pos=pos, t_episode=t), hit.astype(jnp.float32)
