"""Acting, replay and evaluation loops for several ALE variants in lock-step.

The emulator is stepped in Python (ALE is not JAX), so these loops are Python loops around
jitted, vmapped agent calls: with ``K`` variants, one ``act`` call picks ``K`` actions and one
``update`` call applies ``K`` independent double-DQN updates (``jax.vmap`` over the stacked
agent states). Each variant has its own replay buffer slice and its own agent.

Randomness: JAX keys drive action selection and network initialisation; replay sampling uses
a numpy ``Generator`` seeded from a JAX key (the buffer lives on the host next to the
emulator). Both are deterministic given the key.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from metalab.rl.atari.dqn import Batch, DQNAgent, DQNState, n_step_targets
from metalab.rl.atari.env import VariantBatch


class ReplayBuffer:
    """Circular host buffer of ``K`` parallel transition streams.

    Row ``p`` holds the observation *before* action ``p``, the action, the reward after it and
    whether the episode terminated after it. An n-step sample at ``p`` uses rows
    ``p .. p + n`` (the bootstrap observation is row ``p + n``; if an episode ends inside the
    window its discount is 0 and the bootstrap row is irrelevant).
    """

    def __init__(self, capacity: int, num_streams: int, obs_shape: tuple[int, ...]) -> None:
        if capacity < 2:
            raise ValueError(f"replay capacity must be >= 2, got {capacity}")
        self.capacity, self.k = capacity, num_streams
        self.obs = np.zeros((capacity, num_streams, *obs_shape), np.uint8)
        self.action = np.zeros((capacity, num_streams), np.int32)
        self.reward = np.zeros((capacity, num_streams), np.float32)
        self.terminal = np.zeros((capacity, num_streams), bool)
        self.ptr, self.size = 0, 0

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminal: np.ndarray):
        p = self.ptr
        self.obs[p], self.action[p], self.reward[p], self.terminal[p] = (
            obs,
            action,
            reward,
            terminal,
        )
        self.ptr = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, rng: np.random.Generator, batch_size: int, n: int, gamma: float) -> Batch:
        """``K`` independent batches, arrays with leading axes ``(K, batch_size)``."""
        if self.size <= n:
            raise ValueError(f"buffer holds {self.size} rows; an {n}-step sample needs > {n}")
        oldest = self.ptr if self.size == self.capacity else 0
        off = rng.integers(0, self.size - n, size=(self.k, batch_size))
        p = (oldest + off) % self.capacity  # (K, B)
        window = (p[..., None] + np.arange(n + 1)) % self.capacity  # (K, B, n + 1)
        kk = np.arange(self.k)[:, None]
        r = self.reward[window[..., :n], kk[..., None]]
        term = self.terminal[window[..., :n], kk[..., None]]
        g, disc = n_step_targets(r, term, gamma)
        return Batch(
            obs_tm1=self.obs[p, kk],
            a_tm1=self.action[p, kk],
            r_t=g,
            discount_t=disc,
            obs_t=self.obs[window[..., n], kk],
        )


@dataclass(frozen=True)
class TrainBudget:
    """Budget and schedule of one training phase (in agent steps; frames = steps x skip).

    Attributes:
      steps: agent steps per variant.
      batch_size: replay batch per update.
      train_every: agent steps between updates.
      learn_start: agent steps before the first update.
      eps_start, eps_end, eps_decay_frac: linear epsilon schedule over the first
        ``eps_decay_frac * steps`` steps.
      replay_capacity: buffer rows per variant (``min(steps, capacity)`` are allocated).
      reward_clip: clip training rewards to [-clip, clip] (0 disables); evaluation uses raw score.
      curve_points: number of chunks of the reward-rate learning curve.
    """

    steps: int
    batch_size: int = 32
    train_every: int = 4
    learn_start: int = 500
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_frac: float = 0.5
    replay_capacity: int = 100_000
    reward_clip: float = 1.0
    curve_points: int = 10

    def epsilon(self, t: int) -> float:
        horizon = max(1.0, self.eps_decay_frac * self.steps)
        frac = min(1.0, t / horizon)
        return float(self.eps_start + frac * (self.eps_end - self.eps_start))


def stack_states(states: list[DQNState]) -> DQNState:
    return jax.tree.map(lambda *x: jnp.stack(x), *states)


def broadcast_state(state: DQNState, k: int) -> DQNState:
    """``k`` copies of a single agent state along a new leading axis (host-side copy, so no
    per-leaf eager JAX op is compiled)."""
    return jax.tree.map(lambda x: jnp.asarray(np.repeat(np.asarray(x)[None], k, 0)), state)


def unstack_state(state: DQNState, i: int = 0) -> DQNState:
    """Agent ``i`` of a stacked state, as host numpy arrays."""
    return jax.tree.map(lambda x: np.asarray(x)[i], state)


_JIT_CACHE: dict[int, tuple] = {}


def _jitted(agent: DQNAgent) -> tuple:
    """``(init, act, update)`` vmapped over agents and jitted once per agent object.

    ``init(keys (K,), obs) -> state``; ``act(params, obs (K, ...), key, eps) -> (a, key')``
    splits the key inside the compiled call (one dispatch per environment step);
    ``update(state, batch) -> (state, loss)``.
    """
    k = id(agent.act)
    if k not in _JIT_CACHE:

        def act(params, obs, key, epsilon):
            key, sub = jax.random.split(key)
            keys = jax.random.split(sub, obs.shape[0])
            return jax.vmap(agent.act, in_axes=(0, 0, 0, None))(params, obs, keys, epsilon), key

        _JIT_CACHE[k] = (
            jax.jit(jax.vmap(agent.init, in_axes=(0, None))),
            jax.jit(act),
            jax.jit(jax.vmap(agent.update)),
            agent.act,  # keeps the id alive
        )
    return _JIT_CACHE[k][:3]


def init_agents(agent: DQNAgent, key: jax.Array, k: int, obs: np.ndarray) -> DQNState:
    """``k`` freshly initialised agents, stacked on axis 0 (one compiled call)."""
    init, _, _ = _jitted(agent)
    return init(jax.random.split(key, k), jnp.asarray(obs))


def _seed(key: jax.Array) -> int:
    """A non-negative int seed drawn from ``key`` (for numpy generators and emulators)."""
    return int(np.asarray(jax.random.key_data(key)).ravel()[-1] % (2**31 - 1))


def train_variants(
    agent: DQNAgent,
    state: DQNState,
    envs: VariantBatch,
    budget: TrainBudget,
    key: jax.Array,
) -> tuple[DQNState, np.ndarray, np.ndarray]:
    """Train ``K`` agents (state stacked on axis 0), agent ``k`` on variant ``k``.

    Args:
      agent: from :func:`metalab.rl.atari.dqn.make_agent`.
      state: stacked :class:`DQNState` with leading axis ``K = len(envs)``.
      envs: the variants.
      budget: steps, schedule and replay settings.
      key: PRNG key.

    Returns:
      ``(state, curve, losses)``: the trained states; ``curve`` ``(K, curve_points)`` the raw
      reward per agent step in each chunk of training (higher is better); ``losses`` the mean
      TD loss per chunk ``(K, curve_points)`` (0 before learning starts).
    """
    k = len(envs)
    _, act, update = _jitted(agent)
    k_seed, key = jax.random.split(key)
    rng = np.random.default_rng(_seed(k_seed))
    obs = envs.reset()
    buf = ReplayBuffer(min(budget.steps + 1, budget.replay_capacity), k, obs.shape[1:])
    cfg = agent.config
    chunk = max(1, budget.steps // budget.curve_points)
    rew_sum = np.zeros((budget.curve_points, k))
    loss_sum = np.zeros((budget.curve_points, k))
    loss_n = np.zeros(budget.curve_points)
    for t in range(budget.steps):
        a, key = act(state.params, obs, key, budget.epsilon(t))
        a = np.asarray(a)
        nxt, r, done, _ = envs.step(a)
        r_train = np.clip(r, -budget.reward_clip, budget.reward_clip) if budget.reward_clip else r
        buf.add(obs, a, r_train, done)
        obs = nxt
        c = min(t // chunk, budget.curve_points - 1)
        rew_sum[c] += r
        if t >= budget.learn_start and t % budget.train_every == 0 and buf.size > cfg.n_step:
            batch = buf.sample(rng, budget.batch_size, cfg.n_step, cfg.gamma)
            state, loss = update(state, batch)
            loss_sum[c] += np.asarray(loss)
            loss_n[c] += 1
    counts = np.full(budget.curve_points, chunk, float)
    counts[-1] = budget.steps - chunk * (budget.curve_points - 1)
    curve = (rew_sum / np.maximum(counts, 1)[:, None]).T
    losses = (loss_sum / np.maximum(loss_n, 1)[:, None]).T
    return state, curve, losses


def evaluate_variants(
    agent: DQNAgent,
    params,
    envs: VariantBatch,
    episodes: int,
    key: jax.Array,
    epsilon: float = 0.01,
    max_episode_steps: int | None = None,
) -> np.ndarray:
    """Mean raw game score over ``episodes`` episodes per variant (higher is better).

    ``params`` is stacked with leading axis ``K = len(envs)`` (agent ``k`` plays variant
    ``k``). Episodes end at game over or at the envs' ``max_episode_steps`` (the truncated
    score counts; ``max_episode_steps`` overrides the envs' limit during the evaluation).
    ``epsilon=1`` gives the uniform-random policy's score.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    k = len(envs)
    _, act, _ = _jitted(agent)
    saved = [e.max_episode_steps for e in envs.envs]
    if max_episode_steps is not None:
        for e in envs.envs:
            e.max_episode_steps = max_episode_steps
    obs = envs.reset()
    returns: list[list[float]] = [[] for _ in range(k)]
    rng = np.random.default_rng(_seed(key))
    while min(len(r) for r in returns) < episodes:
        if epsilon >= 1.0:
            a = rng.integers(0, envs.num_actions, size=k)
        else:
            a, key = act(params, obs, key, epsilon)
            a = np.asarray(a)
        obs, _, done, ret = envs.step(a)
        for i in np.flatnonzero(done):
            returns[i].append(float(ret[i]))
    for e, m in zip(envs.envs, saved, strict=True):
        e.max_episode_steps = m
    return np.asarray([np.mean(r[:episodes]) for r in returns])
