"""A tabular grid world with several equally good goals (for diversity under near-optimality).

The agent starts in one cell and moves up/down/right/left (moves into a wall or off the grid
leave it in place). Goal cells are absorbing and pay their reward per step spent in them, so
the normalised value of reaching goal ``g`` in ``k`` steps is ``gamma^k r_g``. With the
default layout (5x5, start in the centre, goals in the four corners) the four goals are
equally good (four steps away each), and every optimal policy is a mixture over routes to
them: near-optimal policies can be diverse at no cost, while any
detour (wandering through other cells) costs a factor ``gamma`` per step.

Features ``phi`` are one-hot cells (``features="cells"``: normalised successor features equal
state occupancies) or one indicator per goal (``features="goals"``: a ``len(goals)``-dimensional
feature, so SFs are the discounted time spent in each goal and the route taken is invisible;
with unequal goal rewards, diversity then has to cost reward) or the cell's coordinates
(``features="xy"``: ``phi(s) = ((i - c_i) / c_i, (j - c_j) / c_j)`` in ``[-1, 1]^2``, a
two-dimensional, non-one-hot feature).

The MDP is a :class:`metalab.rl.exact.TabularMDP` (numpy arrays); :func:`grid_env` gives the
same grid as a gymnax-style environment (``reset(key, params)``, ``step(key, state, action,
params)``) for sampled-experience agents.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metalab.rl.exact import TabularMDP

FEATURES = ("cells", "goals", "xy")

ACTIONS = ((-1, 0), (1, 0), (0, 1), (0, -1))  # up, down, right, left


def diversity_grid(
    height: int = 5,
    width: int = 5,
    start: tuple[int, int] = (2, 2),
    goals: tuple[tuple[int, int], ...] = ((0, 0), (0, 4), (4, 0), (4, 4)),
    walls: tuple[tuple[int, int], ...] = (),
    gamma: float = 0.95,
    goal_rewards: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
    features: str = "cells",
) -> TabularMDP:
    """Build the grid MDP (numpy arrays; convert with ``jnp.asarray`` or use as constants).

    Args:
      height, width: grid size (>= 2 each).
      start: the start cell ``(row, col)``.
      goals: absorbing rewarding cells (at least one, distinct from start and walls).
      walls: blocked cells.
      gamma: discount in (0, 1).
      goal_rewards: reward per step spent in each goal cell (same length as ``goals``).
      features: ``"cells"`` (one-hot cells, ``phi[S, S]``), ``"goals"`` (``phi[S, G]``, one
        indicator per goal) or ``"xy"`` (``phi[S, 2]``, centred coordinates in ``[-1, 1]``).

    Returns:
      A :class:`TabularMDP` with ``S = height * width`` states (cell ``(i, j)`` is state
      ``i * width + j``), 4 actions, state rewards ``r[S]`` and features ``phi``.
    """
    if features not in FEATURES:
        raise ValueError(f"features must be one of {FEATURES}; got {features!r}")
    if height < 2 or width < 2:
        raise ValueError(f"height and width must be >= 2; got {height}, {width}")
    if not 0.0 < gamma < 1.0:
        raise ValueError(f"gamma must be in (0, 1); got {gamma}")
    if not goals:
        raise ValueError("goals must hold at least one cell")
    cells = [start, *goals, *walls]
    for c in cells:
        if not (0 <= c[0] < height and 0 <= c[1] < width):
            raise ValueError(f"cell {c} is outside the {height}x{width} grid")
    if len(goal_rewards) != len(goals):
        raise ValueError(
            f"goal_rewards must have one entry per goal ({len(goals)}); got {len(goal_rewards)}"
        )
    if start in goals or start in walls or set(goals) & set(walls):
        raise ValueError("start, goals and walls must be distinct cells")
    S, A = height * width, len(ACTIONS)
    idx = lambda c: c[0] * width + c[1]
    P = np.zeros((S, A, S))
    for i in range(height):
        for j in range(width):
            s = idx((i, j))
            for a, (di, dj) in enumerate(ACTIONS):
                if (i, j) in goals or (i, j) in walls:
                    P[s, a, s] = 1.0
                    continue
                ni, nj = i + di, j + dj
                blocked = not (0 <= ni < height and 0 <= nj < width) or (ni, nj) in walls
                P[s, a, s if blocked else idx((ni, nj))] = 1.0
    r = np.zeros(S)
    for g, rg in zip(goals, goal_rewards, strict=True):
        r[idx(g)] = rg
    d0 = np.zeros(S)
    d0[idx(start)] = 1.0
    if features == "cells":
        phi = np.eye(S)
    elif features == "goals":
        phi = np.zeros((S, len(goals)))
        for k, g in enumerate(goals):
            phi[idx(g), k] = 1.0
    else:
        ci, cj = (height - 1) / 2, (width - 1) / 2
        phi = np.asarray(
            [((i - ci) / ci, (j - cj) / cj) for i in range(height) for j in range(width)]
        )
    return TabularMDP(P=P, r=r, d0=d0, gamma=gamma, phi=phi)


class GridState(NamedTuple):
    """Current cell index and the step count."""

    cell: jnp.ndarray
    t: jnp.ndarray


class GridParams(NamedTuple):
    """Traced parameters of :func:`grid_env`: the episode length."""

    max_steps: jnp.ndarray | int = 50


class GridEnv(NamedTuple):
    """A tabular MDP as a gymnax-style environment (pure functions, jit/vmap-able).

    ``reset(key, params) -> (obs, state)``; ``step(key, state, action, params) -> (obs, state,
    reward, done, info)``: the next cell is sampled from ``P[cell, action]``, the reward is the
    MDP's reward of the cell left, observations are the features ``phi`` of the cell (one-hot
    cells by default), and an episode ends after ``params.max_steps`` steps (then resets).
    """

    mdp: TabularMDP

    def default_params(self) -> GridParams:
        return GridParams()

    def observe(self, cell: jnp.ndarray) -> jnp.ndarray:
        phi = jnp.asarray(self.mdp.phi if self.mdp.phi is not None else np.eye(self.mdp.P.shape[0]))
        return phi[cell].astype(jnp.float32)

    def reset(self, key: jax.Array, params: GridParams | None = None):
        d0 = jnp.asarray(self.mdp.d0)
        cell = jax.random.categorical(key, jnp.log(jnp.maximum(d0, 1e-30)))
        state = GridState(cell, jnp.zeros((), jnp.int32))
        return self.observe(cell), state

    def step(self, key: jax.Array, state: GridState, action, params: GridParams | None = None):
        params = self.default_params() if params is None else params
        P, r = jnp.asarray(self.mdp.P), jnp.asarray(self.mdp.r)
        k_step, k_reset = jax.random.split(key)
        nxt = jax.random.categorical(k_step, jnp.log(jnp.maximum(P[state.cell, action], 1e-30)))
        reward = (r[state.cell] if r.ndim == 1 else r[state.cell, action]).astype(jnp.float32)
        t = state.t + 1
        done = t >= params.max_steps
        obs_reset, s_reset = self.reset(k_reset, params)
        new = GridState(jnp.where(done, s_reset.cell, nxt), jnp.where(done, 0, t))
        obs = jnp.where(done, obs_reset, self.observe(nxt))
        return obs, new, reward, done, {}


def grid_env(**kwargs) -> GridEnv:
    """:func:`diversity_grid` (same keyword arguments) as a gymnax-style :class:`GridEnv`."""
    return GridEnv(diversity_grid(**kwargs))


__all__ = [
    "ACTIONS",
    "FEATURES",
    "GridEnv",
    "GridParams",
    "GridState",
    "diversity_grid",
    "grid_env",
]
