"""A tabular grid world with several equally good goals (for diversity under near-optimality).

The agent starts in one cell and moves up/down/right/left (moves into a wall or off the grid
leave it in place). Goal cells are absorbing and pay their reward per step spent in them, so
the normalised value of reaching goal ``g`` in ``k`` steps is ``gamma^k r_g``. With the
default layout (5x5, start in the centre, goals in the four corners) the four goals are
equally good (four steps away each), and every optimal policy is a mixture over routes to
them: near-optimal policies can be diverse at no cost, while any
detour (wandering through other cells) costs a factor ``gamma`` per step.

Features ``phi`` are one-hot cells, so normalised successor features equal state occupancies
and distances between policies are distances between occupancy distributions.
"""

from __future__ import annotations

import numpy as np

from metalab.rl.successor_features import TabularMDP

ACTIONS = ((-1, 0), (1, 0), (0, 1), (0, -1))  # up, down, right, left


def diversity_grid(
    height: int = 5,
    width: int = 5,
    start: tuple[int, int] = (2, 2),
    goals: tuple[tuple[int, int], ...] = ((0, 0), (0, 4), (4, 0), (4, 4)),
    walls: tuple[tuple[int, int], ...] = (),
    gamma: float = 0.95,
    goal_rewards: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
) -> TabularMDP:
    """Build the grid MDP (numpy arrays; convert with ``jnp.asarray`` or use as constants).

    Args:
      height, width: grid size (>= 2 each).
      start: the start cell ``(row, col)``.
      goals: absorbing rewarding cells (at least one, distinct from start and walls).
      walls: blocked cells.
      gamma: discount in (0, 1).
      goal_rewards: reward per step spent in each goal cell (same length as ``goals``).

    Returns:
      A :class:`TabularMDP` with ``S = height * width`` states (cell ``(i, j)`` is state
      ``i * width + j``), 4 actions, state rewards ``r[S]``, one-hot ``phi[S, S]``.
    """
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
    return TabularMDP(P=P, r=r, d0=d0, phi=np.eye(S), gamma=gamma)
