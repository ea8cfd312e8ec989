"""Atari game curricula as a transfer benchmark (Rusu et al., 2022).

Reference: Andrei A. Rusu, Sebastian Flennerhag, Dushyant Rao, Razvan Pascanu, Raia Hadsell
(2022). *Probing Transfer in Deep Reinforcement Learning without Task Engineering*. CoLLAs
2022, arXiv:2210.12448.

One seed of the study (:func:`run_study`):

1. train a DQN-family agent (:mod:`metalab.rl.atari.dqn`) on the *base* variant (default
   mode 0, difficulty 0) for ``base_budget.steps`` agent steps;
2. **zero-shot**: evaluate that agent, unchanged, on every variant;
3. **finetuning**: for every variant, start from the base agent's value function (online and
   target parameters; fresh Adam moments and replay) and keep training with the same
   algorithm for ``transfer_budget.steps``;
4. **scratch**: for every variant, train a freshly initialised agent with the same budget;
5. evaluate finetuned and scratch agents, and a uniform-random policy, on every variant.

All scores are raw game scores, higher is better. The analysis (ANOVA of scores on the
variants' factors, transfer ratios, sign tests) is in :mod:`metalab.rl.atari.analysis`.

Execution: the variants are trained in lock-step in one process (one vmapped update for all
of them). With ``ray_address`` set, each (variant, finetune|scratch) run becomes a Ray task
instead (:func:`map_runs`), which is how the paper-scale ``full`` preset spreads over a
cluster.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import jax
import numpy as np

from metalab.rl.atari.analysis import (
    EffectSummary,
    SignTestResult,
    anova_formula,
    excess_partial_eta_sq,
    factor_anova,
    majority_sign_test,
    normalised_score,
    strongest_term,
    transfer_ratio,
)
from metalab.rl.atari.dqn import DQNConfig, DQNState, QNetwork, make_agent, n_step_targets
from metalab.rl.atari.env import AtariVariantEnv, VariantBatch, downsample, load_ale
from metalab.rl.atari.train import (
    ReplayBuffer,
    TrainBudget,
    _seed,
    broadcast_state,
    evaluate_variants,
    init_agents,
    train_variants,
    unstack_state,
)
from metalab.rl.atari.variants import (
    FACTOR_DOCS,
    GAMES,
    Variant,
    enumerate_variants,
    factor_table,
    make_variant,
    mode_factors,
    select_variants,
)

__all__ = [
    "FACTOR_DOCS",
    "GAMES",
    "AtariVariantEnv",
    "DQNConfig",
    "DQNState",
    "EffectSummary",
    "EnvSpec",
    "QNetwork",
    "ReplayBuffer",
    "SignTestResult",
    "StudySpec",
    "TrainBudget",
    "Variant",
    "VariantBatch",
    "anova_formula",
    "downsample",
    "enumerate_variants",
    "excess_partial_eta_sq",
    "factor_anova",
    "factor_table",
    "load_ale",
    "majority_sign_test",
    "make_agent",
    "make_variant",
    "map_runs",
    "mode_factors",
    "n_step_targets",
    "normalised_score",
    "run_study",
    "select_variants",
    "strongest_term",
    "transfer_ratio",
]


MAX_LOCAL_REPLAY_BYTES = 16 * 2**30


@dataclass(frozen=True)
class EnvSpec:
    """Emulator wrapper settings shared by every variant (see :class:`AtariVariantEnv`)."""

    frame_skip: int = 4
    obs_hw: tuple[int, int] = (42, 40)
    stack: int = 2
    noop_max: int = 30
    max_episode_steps: int = 27_000
    eval_max_steps: int = 27_000

    def make(self, v: Variant, seed: int, evaluation: bool = False) -> AtariVariantEnv:
        return AtariVariantEnv(
            v.game,
            v.mode,
            v.difficulty,
            seed=seed,
            frame_skip=self.frame_skip,
            obs_hw=self.obs_hw,
            stack=self.stack,
            noop_max=self.noop_max,
            max_episode_steps=self.eval_max_steps if evaluation else self.max_episode_steps,
        )


@dataclass(frozen=True)
class StudySpec:
    """Everything one seed of the transfer study needs (static, hashable).

    Attributes:
      base: the variant the expert is trained on.
      variants: the variants evaluated zero-shot and finetuned on (same game as ``base``).
      agent: the DQN configuration; ``num_actions`` is filled from the emulator.
      env: emulator wrapper settings.
      base_budget: training budget on the base variant.
      transfer_budget: training budget per variant, for finetuning and for scratch.
      eval_episodes: evaluation episodes per (agent, variant).
      eval_epsilon: epsilon of the evaluation policy.
      ray_address: if non-empty, per-variant runs are Ray tasks on this cluster
        (``"auto"`` or ``"ray://host:port"``); empty = lock-step in this process.
    """

    base: Variant
    variants: tuple[Variant, ...]
    agent: DQNConfig = field(default_factory=lambda: DQNConfig(num_actions=1))
    env: EnvSpec = EnvSpec()
    base_budget: TrainBudget = TrainBudget(steps=10_000)
    transfer_budget: TrainBudget = TrainBudget(steps=2_000)
    eval_episodes: int = 1
    eval_epsilon: float = 0.01
    ray_address: str = ""

    def replay_bytes(self) -> int:
        """Bytes of the lock-step replay buffers (all variants, stacked uint8 frames)."""
        rows = min(self.transfer_budget.steps + 1, self.transfer_budget.replay_capacity)
        return rows * len(self.variants) * self.env.stack * self.env.obs_hw[0] * self.env.obs_hw[1]

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError("StudySpec.variants is empty")
        if not self.ray_address and self.replay_bytes() > MAX_LOCAL_REPLAY_BYTES:
            raise ValueError(
                f"lock-step replay for {len(self.variants)} variants needs "
                f"{self.replay_bytes() / 2**30:.1f} GiB (> {MAX_LOCAL_REPLAY_BYTES / 2**30:.0f}); "
                "set ray_address to run one Ray task per variant, or lower "
                "replay_capacity / the number of variants"
            )
        games = {v.game for v in self.variants} | {self.base.game}
        if len(games) != 1:
            raise ValueError(f"all variants must be of one game, got {sorted(games)}")


def _int_seed(key: jax.Array) -> int:
    return _seed(key)


def _train_eval(
    spec: StudySpec,
    variant_ids: Sequence[int],
    init_state: DQNState | None,
    seed: int,
    envs: VariantBatch | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Train agents on ``variants[variant_ids]`` in lock-step, then evaluate them.

    ``init_state`` (a single, unstacked state) = finetuning from it; ``None`` = scratch.
    ``envs`` (one per id) are reused if given, else created from ``seed``. Returns
    ``(scores (K,), curves (K, curve_points))``. Module-level so that Ray can ship it.
    """
    agent = make_agent(spec.agent)
    vs = [spec.variants[i] for i in variant_ids]
    k = len(vs)
    k_init, k_train, k_eval = jax.random.split(jax.random.PRNGKey(seed), 3)
    if envs is None:
        envs = VariantBatch([spec.env.make(v, seed + 7919 * (i + 1)) for i, v in enumerate(vs)])
    if init_state is None:
        state = init_agents(agent, k_init, k, _blank_obs(spec))
    else:
        state = broadcast_state(_reset_optimiser(agent)(init_state), k)
    state, curve, _ = train_variants(agent, state, envs, spec.transfer_budget, k_train)
    scores = evaluate_variants(
        agent,
        state.params,
        envs,
        spec.eval_episodes,
        k_eval,
        spec.eval_epsilon,
        spec.env.eval_max_steps,
    )
    return scores, curve


@functools.cache
def _reset_optimiser(agent):
    return jax.jit(agent.reset_optimiser)


def _blank_obs(spec: StudySpec) -> np.ndarray:
    return np.zeros((spec.env.stack, *spec.env.obs_hw), np.uint8)


def map_runs(fn: Callable[..., Any], arg_list: Sequence[tuple], ray_address: str = "") -> list[Any]:
    """``[fn(*args) for args in arg_list]``, as Ray tasks when ``ray_address`` is set.

    With an address, ``ray.init(address=ray_address)`` is called once (reused if already
    connected) and each call becomes ``ray.remote(fn).remote(*args)``; results come back in
    order. Without, the calls run here, sequentially.
    """
    if not ray_address:
        return [fn(*args) for args in arg_list]
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, ignore_reinit_error=True, log_to_driver=False)
    remote = ray.remote(fn)
    return ray.get([remote.remote(*args) for args in arg_list])


def run_study(spec: StudySpec, key: jax.Array) -> dict[str, np.ndarray]:
    """One seed of the transfer study (see the module docstring).

    Args:
      spec: the study; ``spec.agent.num_actions`` is replaced by the game's action count.
      key: PRNG key (the only source of randomness; emulator seeds derive from it).

    Returns:
      numpy arrays (scores are raw game scores, higher is better; ``K`` = number of
      variants, in ``spec.variants`` order): ``zero_shot``, ``finetune``, ``scratch``,
      ``random`` ``(K,)``; ``expert_base`` () the base agent's score on the base variant;
      ``base_curve`` ``(P,)``; ``finetune_curve``, ``scratch_curve`` ``(K, P)`` training
      reward per agent step in ``P = curve_points`` chunks.
    """
    base_env = VariantBatch([spec.env.make(spec.base, _int_seed(key))])
    spec = replace(spec, agent=replace(spec.agent, num_actions=base_env.num_actions))
    agent = make_agent(spec.agent)
    k_base, k_init, k_zs, k_rand, k_ft, k_sc, k_exp = jax.random.split(key, 7)
    seed = _int_seed(k_base)
    k = len(spec.variants)
    ev = (spec.eval_episodes, spec.eval_epsilon, spec.env.eval_max_steps)

    # 1. the base expert
    base_state = init_agents(agent, k_init, 1, _blank_obs(spec))
    base_state, base_curve, _ = train_variants(
        agent, base_state, base_env, spec.base_budget, k_base
    )
    expert_base = evaluate_variants(agent, base_state.params, base_env, ev[0], k_exp, *ev[1:])[0]
    single = unstack_state(base_state)

    # 2. zero-shot on every variant, and the uniform-random policy's score
    pool = VariantBatch(
        [spec.env.make(v, seed + 7919 * (i + 1)) for i, v in enumerate(spec.variants)]
    )
    many = broadcast_state(single, k).params
    zero_shot = evaluate_variants(agent, many, pool, ev[0], k_zs, *ev[1:])
    random = evaluate_variants(agent, many, pool, ev[0], k_rand, 1.0, ev[2])

    # 3-5. finetuning and scratch, per variant (lock-step here, or one Ray task each)
    host_state = single
    ft_seed, sc_seed = _int_seed(k_ft), _int_seed(k_sc)
    if spec.ray_address:
        ft = map_runs(
            _train_eval,
            [(spec, (i,), host_state, ft_seed + 17 * i) for i in range(k)],
            spec.ray_address,
        )
        sc = map_runs(
            _train_eval,
            [(spec, (i,), None, sc_seed + 17 * i) for i in range(k)],
            spec.ray_address,
        )
        ft_scores = np.concatenate([s for s, _ in ft])
        ft_curve = np.concatenate([c for _, c in ft])
        sc_scores = np.concatenate([s for s, _ in sc])
        sc_curve = np.concatenate([c for _, c in sc])
    else:
        ft_scores, ft_curve = _train_eval(spec, range(k), host_state, ft_seed, pool)
        sc_scores, sc_curve = _train_eval(spec, range(k), None, sc_seed, pool)

    return {
        "zero_shot": np.asarray(zero_shot, np.float64),
        "finetune": np.asarray(ft_scores, np.float64),
        "scratch": np.asarray(sc_scores, np.float64),
        "random": np.asarray(random, np.float64),
        "expert_base": np.asarray(expert_base, np.float64),
        "base_curve": np.asarray(base_curve[0], np.float64),
        "finetune_curve": np.asarray(ft_curve, np.float64),
        "scratch_curve": np.asarray(sc_curve, np.float64),
    }
