r"""The non-stationary two-colours grid world (Flennerhag et al. 2021, "Bootstrapped
Meta-Learning", Sec. 5.1; also the setting of Luketina et al. 2022).

A ``size x size`` grid holds the agent and two objects, one of each colour. Walking onto an
object collects it and pays its colour's reward; the object then respawns on a uniformly random
free cell. The colour rewards are :math:`(+1, -1)` and *swap sign* every ``swap_every`` steps:

.. math::
   r_t = \sigma_t\,(\mathbb 1[\text{collect colour }0] - \mathbb 1[\text{collect colour }1])
         - c, \qquad \sigma_t = (-1)^{\lfloor t / T_{\text{swap}} \rfloor},

with a step cost :math:`c \ge 0` paid on every step. The task is continuing (no episodes).
Rewards are *maximised*.

Approximations (see docs/metagrad-rl.md): the grid is a torus (moving off one edge re-enters
on the opposite one) and the observation is egocentric (the one-hot position of each object
relative to the agent, ``2 * size**2`` features); with this view a linear policy can represent
"walk towards colour c", which keeps the agent small enough for a CPU.

API (pure functions, jit/vmap-able; ``size`` is static, the rest may be traced)::

    params = TwoColoursParams(swap_every=1000, step_cost=0.01)
    obs, state = reset(key, params)
    obs, state, reward = step(key, state, action, params)

and the same environment with gymnax's signature (the task is continuing: ``done`` is always
False)::

    env = TwoColours()
    obs, state = env.reset(key, env.default_params)
    obs, state, reward, done, info = env.step(key, state, action, env.default_params)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

# action -> (d_row, d_col): up, right, down, left
MOVES = jnp.array([[-1, 0], [0, 1], [1, 0], [0, -1]], dtype=jnp.int32)
NUM_ACTIONS = 4


class TwoColoursParams(NamedTuple):
    """Environment parameters.

    Attributes:
      swap_every: steps between reward swaps (the schedule of the non-stationarity), >= 1.
      step_cost: cost subtracted from the reward on every step, >= 0.
      size: side of the square grid (static), >= 3.
    """

    swap_every: int = 1000
    step_cost: float = 0.01
    size: int = 5


class TwoColoursState(NamedTuple):
    """``agent``: (row, col); ``objects``: [2, 2] positions of colour 0 and 1; ``t``: step."""

    agent: jnp.ndarray
    objects: jnp.ndarray
    t: jnp.ndarray


def check_params(params: TwoColoursParams) -> None:
    """Raise ``ValueError`` for impossible (concrete) parameters."""
    if int(params.size) < 3:
        raise ValueError(f"TwoColoursParams.size must be >= 3, got {params.size}")
    if not isinstance(params.swap_every, jax.Array) and int(params.swap_every) < 1:
        raise ValueError(f"TwoColoursParams.swap_every must be >= 1, got {params.swap_every}")
    if not isinstance(params.step_cost, jax.Array) and float(params.step_cost) < 0:
        raise ValueError(f"TwoColoursParams.step_cost must be >= 0, got {params.step_cost}")


def obs_size(params: TwoColoursParams) -> int:
    """Number of observation features: ``2 * size**2``."""
    return 2 * int(params.size) ** 2


def reward_signs(t: jnp.ndarray, swap_every) -> jnp.ndarray:
    """Rewards of (colour 0, colour 1) at step ``t``: ``(+1, -1)`` then swapped every period."""
    sign = 1.0 - 2.0 * ((t // swap_every) % 2).astype(jnp.float32)
    return jnp.stack([sign, -sign])


def observe(state: TwoColoursState, params: TwoColoursParams) -> jnp.ndarray:
    """Egocentric one-hot positions of both objects relative to the agent, flattened."""
    n = int(params.size)
    rel = (state.objects - state.agent[None, :]) % n  # [2, 2]
    idx = rel[:, 0] * n + rel[:, 1]
    return jax.nn.one_hot(idx, n * n, dtype=jnp.float32).reshape(-1)


def _random_free_cell(key, occupied: jnp.ndarray, n: int) -> jnp.ndarray:
    """A uniformly random cell not in ``occupied`` ([m, 2] positions)."""
    flat = occupied[:, 0] * n + occupied[:, 1]
    free = jnp.ones(n * n).at[flat].set(0.0)
    # argmax of iid uniforms over the free cells = a uniform free cell (cheaper than choice(p=))
    cell = jnp.argmax(jnp.where(free > 0, jax.random.uniform(key, (n * n,)), -1.0))
    return jnp.stack([cell // n, cell % n]).astype(jnp.int32)


def reset(key, params: TwoColoursParams) -> tuple[jnp.ndarray, TwoColoursState]:
    """Agent and the two objects on three distinct uniformly random cells; ``t = 0``."""
    check_params(params)
    n = int(params.size)
    cells = lax.top_k(jax.random.uniform(key, (n * n,)), 3)[1]  # 3 distinct uniform cells
    pos = jnp.stack([cells // n, cells % n], axis=-1).astype(jnp.int32)
    state = TwoColoursState(agent=pos[0], objects=pos[1:], t=jnp.zeros((), jnp.int32))
    return observe(state, params), state


def step(
    key, state: TwoColoursState, action, params: TwoColoursParams
) -> tuple[jnp.ndarray, TwoColoursState, jnp.ndarray]:
    """One transition. Returns ``(obs, next_state, reward)``; the reward is to be maximised.

    The reward uses the colour signs of the *current* step ``state.t``, so the first step
    with swapped rewards is ``t = swap_every``.
    """
    n = int(params.size)
    agent = (state.agent + MOVES[action]) % n
    hit = jnp.all(state.objects == agent[None, :], axis=-1)  # [2]
    signs = reward_signs(state.t, params.swap_every)
    reward = jnp.sum(hit * signs) - params.step_cost
    # respawn a collected object (at most one can be hit) on a free cell
    which = jnp.argmax(hit)
    other = state.objects[1 - which]
    new_cell = _random_free_cell(key, jnp.stack([agent, other]), n)
    objects = jnp.where(jnp.any(hit), state.objects.at[which].set(new_cell), state.objects)
    new_state = TwoColoursState(agent=agent, objects=objects, t=state.t + 1)
    return observe(new_state, params), new_state, reward.astype(jnp.float32)


def env_fns(params: TwoColoursParams):
    """The environment as ``metalab.rl.actor_critic.EnvFns`` (reset/step closed over params)."""
    from metalab.rl.actor_critic import EnvFns

    check_params(params)
    return EnvFns(
        reset=lambda key: reset(key, params),
        step=lambda key, s, a: step(key, s, a, params),
    )


def phase(state: TwoColoursState, params: TwoColoursParams) -> jnp.ndarray:
    """Time since the last reward swap as a fraction of the period, in [0, 1)."""
    return (state.t % params.swap_every).astype(jnp.float32) / params.swap_every


class TwoColours:
    """The two-colours world with gymnax's ``reset``/``step`` signature (a continuing task).

    ``step`` returns ``(obs, state, reward, done, info)`` with ``done`` always False and
    ``info = {"t": state.t}``; ``params`` is a :class:`TwoColoursParams` (``size`` static).
    """

    num_actions = NUM_ACTIONS

    @property
    def default_params(self) -> TwoColoursParams:
        return TwoColoursParams()

    def reset(self, key, params: TwoColoursParams | None = None):
        return reset(key, self.default_params if params is None else params)

    def step(self, key, state: TwoColoursState, action, params: TwoColoursParams | None = None):
        params = self.default_params if params is None else params
        obs, new, reward = step(key, state, action, params)
        return obs, new, reward, jnp.zeros((), bool), {"t": new.t}

    def observation_shape(self, params: TwoColoursParams | None = None) -> tuple[int]:
        return (obs_size(self.default_params if params is None else params),)


__all__ = [
    "MOVES",
    "NUM_ACTIONS",
    "TwoColours",
    "TwoColoursParams",
    "TwoColoursState",
    "check_params",
    "env_fns",
    "obs_size",
    "observe",
    "phase",
    "reset",
    "reward_signs",
    "step",
]
