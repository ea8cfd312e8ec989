"""Reproduction ``vlm-rewards`` (Baumli et al. 2023, Vision-Language Models as a Source of Rewards).

Claims: rewards derived from a contrastive vision-language model (thresholded softmax of the
image-goal cosine similarity against the other goals) train RL agents to achieve language
goals; larger VLMs give more accurate rewards, which give more capable agents.

No pretrained CLIP can be downloaded here, so the whole pipeline is built small (one seed):

1. CLIP-style image-text models of several sizes (``size_*`` fields) are trained with a
   symmetric InfoNCE loss on procedurally rendered scenes (:mod:`metalab.rl.envs.scenes`)
   captioned with what the agent stands on ("agent on red square" / "agent on nothing").
2. Each model becomes a reward :math:`r = 1[p(goal | image) > threshold]`, the softmax taken
   over all 12 goal strings. Its precision and recall against ground truth are measured with
   the agent placed on every cell of fresh scenes (one true goal cell per scene, 24 negatives,
   other objects included).
3. A goal-conditioned agent (REINFORCE with a value baseline, MLP over a symbolic view of the
   board) is trained with that reward as its only signal (episodes end when it fires), then
   its ground-truth success rate is measured. References: the same agent trained on the
   ground-truth reward, and a uniformly random policy.

Verdict (fixed before any result was seen): see :func:`verdict`.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats as sps

from metalab.core import stats
from metalab.experiments.base import Check, Experiment, Paper, Verdict, param
from metalab.rl.contrastive import ModelSize, make_train_contrastive, num_params
from metalab.rl.envs.scenes import SceneEnv, all_goal_tokens
from metalab.rl.vlm_reward import (
    make_scene_reward,
    make_train_agent,
    policy_from_params,
    precision_recall,
    reward_confusion,
    reward_model_from_flax,
    success_rate,
)


@dataclass(frozen=True)
class VLMRewardsConfig:
    grid: int = param(5, "board side of the scenes", lo=2, hi=12)
    num_objects: int = param(3, "objects per scene", lo=1, hi=12)
    max_steps: int = param(12, "episode length cap", lo=1, hi=1000)
    size_channels: tuple[int, ...] = param(
        (1, 2, 4, 8), "patch-embedding channels of each model size (smallest first)", lo=1
    )
    size_width: tuple[int, ...] = param((4, 8, 16, 32), "MLP width of each model size", lo=1)
    size_embed: tuple[int, ...] = param((4, 8, 16, 32), "embedding dim of each model size", lo=1)
    clip_steps: int = param(800, "contrastive training steps per model", lo=1)
    clip_batch: int = param(64, "captioned scenes per contrastive batch", lo=2)
    clip_lr: float = param(3e-3, "Adam step size for the contrastive models", lo=1e-6, hi=1.0)
    threshold: float = param(0.5, "reward threshold on p(goal | image)", lo=0.0, hi=0.999)
    agent_iterations: int = param(200, "policy-gradient iterations per agent", lo=1)
    agent_batch: int = param(32, "episodes per policy-gradient iteration", lo=1)
    agent_lr: float = param(3e-3, "Adam step size for the agent", lo=1e-6, hi=1.0)
    eval_scenes: int = param(200, "scenes (x every cell) for reward precision/recall", lo=1)
    eval_episodes: int = param(500, "episodes for ground-truth success rates", lo=1)

    def sizes(self) -> tuple[ModelSize, ...]:
        n = len(self.size_channels)
        if not (len(self.size_width) == len(self.size_embed) == n) or n < 2:
            raise ValueError(
                "size_channels, size_width and size_embed must have the same length >= 2, got "
                f"{len(self.size_channels)}, {len(self.size_width)}, {len(self.size_embed)}"
            )
        return tuple(
            ModelSize(c, w, e)
            for c, w, e in zip(self.size_channels, self.size_width, self.size_embed, strict=True)
        )


PRESETS = {
    "smoke": VLMRewardsConfig(
        size_channels=(1, 2),
        size_width=(2, 4),
        size_embed=(2, 4),
        clip_steps=3,
        clip_batch=8,
        agent_iterations=2,
        agent_batch=4,
        eval_scenes=4,
        eval_episodes=8,
    ),
    "quick": VLMRewardsConfig(),
    "full": VLMRewardsConfig(
        grid=8,
        num_objects=5,
        max_steps=30,
        size_channels=(1, 2, 4, 8, 16, 32),
        size_width=(4, 8, 16, 32, 64, 128),
        size_embed=(4, 8, 16, 32, 64, 64),
        clip_steps=20_000,
        clip_batch=256,
        agent_iterations=5_000,
        agent_batch=64,
        eval_scenes=2000,
        eval_episodes=5000,
    ),
}


def run(config: VLMRewardsConfig, key: jax.Array) -> dict[str, jax.Array]:
    c = config
    env = SceneEnv(c.grid, c.num_objects, 5, c.max_steps)
    goals = all_goal_tokens()
    k_eval_r, k_eval_s, k_models, k_gt = jax.random.split(key, 4)
    out: dict[str, jax.Array] = {}
    agent_kw = dict(iterations=c.agent_iterations, batch=c.agent_batch, lr=c.agent_lr)
    for i, size in enumerate(c.sizes()):
        k_clip, k_agent = jax.random.split(jax.random.fold_in(k_models, i))
        model, train = make_train_contrastive(
            env, size, steps=c.clip_steps, batch=c.clip_batch, lr=c.clip_lr
        )
        params, loss = train(k_clip)
        reward = make_scene_reward(env, reward_model_from_flax(model, params), goals, c.threshold)
        prec, rec, f1 = precision_recall(reward_confusion(env, reward, k_eval_r, c.eval_scenes))
        net, train_agent = make_train_agent(env, reward, **agent_kw)
        ap, acurve = train_agent(k_agent)
        out[f"clip_loss/size{i}"] = loss
        out[f"agent_vlm_return/size{i}"] = acurve
        out[f"params/size{i}"] = jnp.asarray(float(num_params(params)))
        out[f"reward_precision/size{i}"] = prec
        out[f"reward_recall/size{i}"] = rec
        out[f"reward_f1/size{i}"] = f1
        out[f"success/size{i}"] = success_rate(
            env, policy_from_params(net, ap), k_eval_s, c.eval_episodes
        )
    net, train_agent = make_train_agent(
        env, lambda s: env.success(s).astype(jnp.float32), **agent_kw
    )
    ap, _ = train_agent(k_gt)
    out["success/ground_truth"] = success_rate(
        env, policy_from_params(net, ap), k_eval_s, c.eval_episodes
    )
    out["success/random"] = success_rate(
        env, lambda x, k: jax.random.randint(k, (), 0, env.num_actions), k_eval_s, c.eval_episodes
    )
    return out


def _col(ms, key) -> np.ndarray:
    return np.array([float(m[key]) for m in ms])


def _slopes(ms, metric: str, n: int) -> np.ndarray:
    """Per-seed least-squares slope of ``metric`` against log(#params) across model sizes."""
    out = []
    for m in ms:
        x = np.log([float(m[f"params/size{i}"]) for i in range(n)])
        y = np.array([float(m[f"{metric}/size{i}"]) for i in range(n)])
        out.append(sps.linregress(x, y).slope)
    return np.array(out)


def verdict(metrics_list, config: VLMRewardsConfig) -> Verdict:
    """Checks, fixed before the results were seen.

    1. *The largest model's VLM reward is accurate*: its precision and its recall against
       ground truth are each > 0.5 (one-sided one-sample t-tests, both p < 0.05). The base
       rate of positives is 1 / grid**2, so precision 0.5 is far above chance.
    2. *The VLM reward trains an agent to achieve the goals*: the ground-truth success of the
       agent trained on the largest model's reward exceeds the random policy's (paired
       one-sided t, p < 0.05) and is at least half the success of the same agent trained on
       the ground-truth reward (mean over seeds).
    3. *Larger model, more accurate reward*: per-seed slope of reward F1 against log(#params)
       is > 0 (one-sided t-test over seeds, p < 0.05).
    4. *Larger model, better agent*: per-seed slope of ground-truth success against
       log(#params) is > 0 (one-sided t-test over seeds, p < 0.05).
    """
    ms = metrics_list
    n = len(config.sizes())
    top = n - 1
    prec, rec = _col(ms, f"reward_precision/size{top}"), _col(ms, f"reward_recall/size{top}")
    tp = stats.one_sample_t(prec, 0.5, alternative="greater")
    tr = stats.one_sample_t(rec, 0.5, alternative="greater")
    p1 = float(max(tp.p_value, tr.p_value))
    checks = [
        Check(
            name="largest model's reward is accurate",
            statistic="min(mean precision, mean recall) of the largest model",
            value=float(min(prec.mean(), rec.mean())),
            p_value=p1,
            passed=bool(p1 < 0.05),
            threshold="precision > 0.5 and recall > 0.5, one-sided t-tests, both p < 0.05",
            test="one-sample t-tests",
        )
    ]
    succ = _col(ms, f"success/size{top}")
    rand, gt = _col(ms, "success/random"), _col(ms, "success/ground_truth")
    t2 = stats.paired_t(succ, rand, alternative="greater")
    ratio = float(succ.mean() / max(gt.mean(), 1e-9))
    checks.append(
        Check(
            name="agent trained on the VLM reward achieves goals",
            statistic="ground-truth success of the largest model's agent",
            value=float(succ.mean()),
            effect_size=ratio,
            p_value=t2.p_value,
            passed=bool(t2.p_value < 0.05 and ratio >= 0.5),
            threshold="> random policy (paired t, p < 0.05) and >= 0.5 x ground-truth-reward "
            "agent (ratio in effect size)",
            test="paired t-test, one-sided",
        )
    )
    for metric, name in (("reward_f1", "reward F1"), ("success", "agent success")):
        s = _slopes(ms, metric, n)
        t = stats.one_sample_t(s, 0.0, alternative="greater")
        m, lo, hi = stats.mean_ci(s)
        checks.append(
            Check(
                name=f"larger model -> higher {name}",
                statistic=f"mean per-seed slope of {name} vs log(#params)",
                value=float(s.mean()),
                ci=(lo, hi),
                effect_size=t.effect_size,
                p_value=t.p_value,
                passed=bool(t.p_value < 0.05 and s.mean() > 0),
                threshold="slope > 0, one-sided t-test over seeds, p < 0.05",
                test="one-sample t-test",
            )
        )
    per_size = ", ".join(
        f"size{i} ({_col(ms, f'params/size{i}').mean():.0f} params): "
        f"P {_col(ms, f'reward_precision/size{i}').mean():.2f} "
        f"R {_col(ms, f'reward_recall/size{i}').mean():.2f} "
        f"success {_col(ms, f'success/size{i}').mean():.2f}"
        for i in range(n)
    )
    summary = (
        f"{sum(ch.passed for ch in checks)}/{len(checks)} checks pass. {per_size}; "
        f"ground-truth-reward agent {gt.mean():.2f}, random policy {rand.mean():.2f}."
    )
    notes = (
        "Everything is small and trained here: no pretrained CLIP can be downloaded, so the "
        "reward models are CLIP-style dual encoders (patch convnet with global pooling, "
        "bag-of-words text encoder) trained with InfoNCE on procedurally rendered, captioned "
        "scenes; model size is varied by width. The reward is the paper's (softmax over all "
        "goal strings as negatives, thresholded). The policy reads a symbolic view of the board "
        "(goal object, other objects, agent) rather than pixels, to keep RL cheap; only its "
        "reward comes from the rendered image. The paper's domains (Playhouse, AndroidEnv) and "
        "model scales are not reproduced."
    )
    return Verdict(checks=tuple(checks), summary=summary, notes=notes)


EXPERIMENT = Experiment(
    name="vlm-rewards",
    paper=Paper(
        title="Vision-Language Models as a Source of Rewards",
        authors="Baumli, Baveja, Behbahani, et al.",
        year=2023,
        arxiv="2312.09187",
    ),
    claim=(
        "Rewards from CLIP-style vision-language models (thresholded softmax against the other "
        "goals) train RL agents to achieve language goals, and larger VLMs give more accurate "
        "rewards and more capable agents."
    ),
    config_cls=VLMRewardsConfig,
    presets=PRESETS,
    run=run,
    verdict=verdict,
    seeds={"smoke": 2, "quick": 5, "full": 10},
    tags=("rl", "rewards", "vlm"),
)
