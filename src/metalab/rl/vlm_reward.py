r"""Vision-language models as a source of rewards, and an agent trained on them.

Baumli et al. (2023), *Vision-Language Models as a Source of Rewards*, arXiv:2312.09187.

A contrastive vision-language model (CLIP) embeds the observation image :math:`x` and every
goal string :math:`l_1..l_G` of the task set. The reward for goal :math:`l_g` is the
thresholded probability that the image matches :math:`l_g` rather than the other goals
(the other goals act as negatives):

.. math:: p(l_g \mid x) = \frac{\exp(\cos(f(x), g(l_g)) / \tau)}
                               {\sum_{k=1}^{G} \exp(\cos(f(x), g(l_k)) / \tau)}, \qquad
          r_{\text{VLM}}(x, l_g) = \mathbb{1}\big[p(l_g \mid x) > \beta\big].

Rewards are maximised; :math:`\tau` is a temperature (a CLIP's own logit scale is
:math:`1/\tau`) and :math:`\beta \in (0, 1)` the threshold.

:class:`RewardModel` is the plug-in point: anything with ``encode_image`` (images -> ``(N, E)``)
and ``encode_text`` (tokenised goals -> ``(G, E)``) can supply the reward, e.g. a real CLIP
wrapped in two functions; :func:`reward_model_from_flax` adapts the small models of
:mod:`metalab.rl.contrastive`.

:func:`make_train_agent` trains a goal-conditioned policy (REINFORCE with a learned value
baseline) whose only learning signal is a reward function of the rendered next state; the
episode ends when that reward fires (the agent cannot see ground truth) or at the time limit.
Success is then measured by ground truth with :func:`success_rate`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metalab.rl.envs.scenes import MOVES, SceneEnv, SceneState

PyTree = Any


class RewardModel(NamedTuple):
    """A vision-language reward model: the interface a real CLIP plugs into.

    Attributes:
      encode_image: ``(N, H, W, 3) -> (N, E)`` image embeddings (need not be normalised).
      encode_text: ``(G, L) -> (G, E)`` text embeddings of tokenised strings.
      temperature: :math:`\tau` of the softmax over goals (a CLIP's ``1 / logit_scale``).
    """

    encode_image: Callable[[jnp.ndarray], jnp.ndarray]
    encode_text: Callable[[jnp.ndarray], jnp.ndarray]
    temperature: float | jnp.ndarray = 0.1


def reward_model_from_flax(module: nn.Module, params: PyTree) -> RewardModel:
    """Wrap a :class:`metalab.rl.contrastive.ContrastiveModel` and its params (its learned
    logit scale sets the temperature)."""
    scale = module.apply(params, method=module.scale)
    return RewardModel(
        encode_image=lambda x: module.apply(params, x, method=module.encode_image),
        encode_text=lambda t: module.apply(params, t, method=module.encode_text),
        temperature=1.0 / scale,
    )


def goal_probabilities(
    image_emb: jnp.ndarray, goal_embs: jnp.ndarray, temperature: float | jnp.ndarray
) -> jnp.ndarray:
    r"""Softmax over goals of cosine similarities / temperature.

    Args:
      image_emb: ``(E,)`` or ``(N, E)``.
      goal_embs: ``(G, E)`` embeddings of all goal strings (the goal and its negatives).
      temperature: :math:`\tau > 0`.

    Returns:
      ``(G,)`` or ``(N, G)`` probabilities :math:`p(l_k \mid x)` summing to one over goals.
    """
    if goal_embs.ndim != 2 or goal_embs.shape[-1] != image_emb.shape[-1]:
        raise ValueError(
            f"goal_embs must be (G, E) with E = image_emb.shape[-1] = {image_emb.shape[-1]}, "
            f"got {goal_embs.shape}"
        )
    u = image_emb * jax.lax.rsqrt(jnp.sum(image_emb**2, axis=-1, keepdims=True) + 1e-12)
    v = goal_embs * jax.lax.rsqrt(jnp.sum(goal_embs**2, axis=-1, keepdims=True) + 1e-12)
    return jax.nn.softmax((u @ v.T) / temperature, axis=-1)


def vlm_reward(
    image_emb: jnp.ndarray,
    goal_embs: jnp.ndarray,
    goal_index: jnp.ndarray,
    temperature: float | jnp.ndarray = 0.1,
    threshold: float = 0.5,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    r"""The thresholded-softmax VLM reward :math:`\mathbb{1}[p(l_g \mid x) > \beta]`.

    Args:
      image_emb: ``(E,)`` embedding of one observation (or ``(N, E)`` with ``(N,)`` goals).
      goal_embs: ``(G, E)`` embeddings of every goal string; all but ``goal_index`` are the
        negatives.
      goal_index: index :math:`g` of the current goal in ``goal_embs``.
      temperature: :math:`\tau > 0`.
      threshold: :math:`\beta`; must lie in [0, 1).

    Returns:
      ``(reward in {0., 1.}, p(l_g | x))``.
    """
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    p = goal_probabilities(image_emb, goal_embs, temperature)
    pg = jnp.take_along_axis(p, jnp.asarray(goal_index)[..., None], axis=-1)[..., 0]
    return (pg > threshold).astype(jnp.float32), pg


def make_scene_reward(
    env: SceneEnv,
    model: RewardModel,
    goal_tokens: jnp.ndarray,
    threshold: float = 0.5,
) -> Callable[[SceneState], jnp.ndarray]:
    """``reward(state) -> {0., 1.}``: render the state and score it against its goal string.

    ``goal_tokens`` ``(G, L)`` lists every goal string, row ``k`` for object type ``k``.
    """
    goal_embs = model.encode_text(goal_tokens)

    def reward(state: SceneState) -> jnp.ndarray:
        emb = model.encode_image(env.render(state)[None])[0]
        r, _ = vlm_reward(emb, goal_embs, env.goal_type(state), model.temperature, threshold)
        return r

    return reward


class ReachStats(NamedTuple):
    """Confusion counts of a binary reward against ground truth."""

    tp: jnp.ndarray
    fp: jnp.ndarray
    fn: jnp.ndarray
    tn: jnp.ndarray


def reward_confusion(
    env: SceneEnv,
    reward_fn: Callable[[SceneState], jnp.ndarray],
    key: jax.Array,
    num_scenes: int,
) -> ReachStats:
    """Evaluate ``reward_fn`` with the agent placed on every cell of ``num_scenes`` scenes.

    This is the state distribution of an agent roaming the board: one positive cell (the goal
    object) and ``grid**2 - 1`` negatives per scene, other objects included.
    """
    g = env.grid
    cells = jnp.stack(jnp.meshgrid(jnp.arange(g), jnp.arange(g), indexing="ij"), -1).reshape(-1, 2)

    def one(k):
        st = env.reset(k)

        def at(c):
            s = env.place_agent(st, c)
            return reward_fn(s) > 0.5, env.success(s)

        return jax.vmap(at)(cells)

    pred, truth = jax.vmap(one)(jax.random.split(key, num_scenes))
    f = jnp.float32
    return ReachStats(
        tp=jnp.sum(pred & truth).astype(f),
        fp=jnp.sum(pred & ~truth).astype(f),
        fn=jnp.sum(~pred & truth).astype(f),
        tn=jnp.sum(~pred & ~truth).astype(f),
    )


def precision_recall(stats: ReachStats) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``(precision, recall, F1)``; precision is 0 when nothing is predicted positive."""
    prec = stats.tp / jnp.maximum(stats.tp + stats.fp, 1.0)
    rec = stats.tp / jnp.maximum(stats.tp + stats.fn, 1.0)
    f1 = 2 * prec * rec / jnp.maximum(prec + rec, 1e-8)
    return prec, rec, f1


class PolicyNet(nn.Module):
    """MLP actor-critic over the goal-conditioned scene features."""

    hidden: int = 64
    num_actions: int = 4

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        h = nn.relu(nn.Dense(self.hidden)(x))
        h = nn.relu(nn.Dense(self.hidden)(h))
        return nn.Dense(self.num_actions)(h), nn.Dense(1)(h)[..., 0]


class AgentTrainState(NamedTuple):
    params: PyTree
    opt_state: optax.OptState


def _episode(env, net, params, reward_fn, key):
    """One training episode; terminates when ``reward_fn`` fires or at ``max_steps``."""
    k_reset, k_run = jax.random.split(key)
    st0 = env.reset(k_reset)

    def body(carry, k):
        st, alive = carry
        x = env.features(st)
        logits, v = net.apply(params, x)
        a = jax.random.categorical(k, jax.lax.stop_gradient(logits))
        logp = jax.nn.log_softmax(logits)
        nxt = st.replace(agent=jnp.clip(st.agent + MOVES[a], 0, env.grid - 1), t=st.t + 1)
        r = reward_fn(nxt) * alive
        ent = -jnp.sum(jnp.exp(logp) * logp)
        out = (r, logp[a], v, ent, alive)
        return (nxt, alive * (1.0 - r)), out

    _, out = jax.lax.scan(body, (st0, jnp.ones(())), jax.random.split(k_run, env.max_steps))
    return out


def make_train_agent(
    env: SceneEnv,
    reward_fn: Callable[[SceneState], jnp.ndarray],
    *,
    iterations: int,
    batch: int = 32,
    lr: float = 3e-3,
    discount: float = 0.9,
    entropy_coef: float = 0.01,
    value_coef: float = 0.5,
    hidden: int = 64,
) -> tuple[PolicyNet, Callable[[jax.Array], tuple[PyTree, jnp.ndarray]]]:
    r"""``(net, train)``; ``train(key) -> (params, curve of mean episode reward)``.

    REINFORCE with a learned baseline, maximising :math:`\mathbb{E}\sum_t \gamma^t r_t` with
    :math:`r_t` = ``reward_fn`` of the state reached at step :math:`t` (1 at most once: the
    episode ends when it fires). Loss (minimised):
    :math:`-\log\pi(a_t|s_t)(G_t - V(s_t)) + c_v (G_t - V(s_t))^2 - c_H \mathcal H[\pi]`,
    masked to steps while the episode is alive.
    """
    if iterations < 1 or batch < 1:
        raise ValueError(f"iterations and batch must be >= 1, got {iterations}, {batch}")
    net = PolicyNet(hidden, env.num_actions)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(lr))

    def loss_fn(params, key):
        r, logp, v, ent, alive = jax.vmap(lambda k: _episode(env, net, params, reward_fn, k))(
            jax.random.split(key, batch)
        )
        g = jax.vmap(lambda rr: _discounted(rr, discount))(r)
        adv = jax.lax.stop_gradient(g - v)
        n = jnp.maximum(alive.sum(), 1.0)
        pg = -(alive * logp * adv).sum() / n
        vl = (alive * (g - v) ** 2).sum() / n
        el = (alive * ent).sum() / n
        return pg + value_coef * vl - entropy_coef * el, r.sum(-1).mean()

    def train(key: jax.Array) -> tuple[PyTree, jnp.ndarray]:
        k_init, k_loop = jax.random.split(key)
        params = net.init(k_init, jnp.zeros((3 * env.grid**2,)))

        def body(st, k):
            (_, ret), grads = jax.value_and_grad(loss_fn, has_aux=True)(st.params, k)
            upd, o = opt.update(grads, st.opt_state, st.params)
            return AgentTrainState(optax.apply_updates(st.params, upd), o), ret

        st, curve = jax.lax.scan(
            body, AgentTrainState(params, opt.init(params)), jax.random.split(k_loop, iterations)
        )
        return st.params, curve

    return net, train


def _discounted(r: jnp.ndarray, discount: float) -> jnp.ndarray:
    def body(g, x):
        g = x + discount * g
        return g, g

    _, g = jax.lax.scan(body, jnp.zeros(()), r[::-1])
    return g[::-1]


def success_rate(
    env: SceneEnv,
    policy: Callable[[jnp.ndarray, jax.Array], jnp.ndarray],
    key: jax.Array,
    num_episodes: int,
) -> jnp.ndarray:
    """Fraction of episodes in which ``policy(features, key) -> action`` reaches the goal
    (ground truth, within ``env.max_steps``)."""

    def episode(k):
        k_reset, k_run = jax.random.split(k)
        st0 = env.reset(k_reset)

        def body(carry, kk):
            st, done = carry
            st2, d = env.step(st, policy(env.features(st), kk))
            st = jax.tree_util.tree_map(lambda a, b: jnp.where(done, a, b), st, st2)
            return (st, done | d), None

        (st, _), _ = jax.lax.scan(
            body, (st0, jnp.zeros((), bool)), jax.random.split(k_run, env.max_steps)
        )
        return env.success(st)

    return jax.vmap(episode)(jax.random.split(key, num_episodes)).mean()


def policy_from_params(net: PolicyNet, params: PyTree) -> Callable:
    """A stochastic policy ``(features, key) -> action`` from trained params."""

    def act(x, k):
        logits, _ = net.apply(params, x)
        return jax.random.categorical(k, logits)

    return act
