r"""SymLA: a symmetric black-box meta-RL learner, and lifetime meta-training.

Kirsch, Flennerhag, van Hasselt, Friesen, Oh, Chen (2021), *Introducing Symmetries to Black
Box Meta Reinforcement Learning*, arXiv:2109.10781.

A black-box meta-learner (RL^2) is one recurrent network whose input and output sizes fix the
observation and action spaces. SymLA replaces **every weight** :math:`w_{ab}` of a small
feed-forward network (layer sizes :math:`n_0 \to n_1 \to \dots \to n_L`) by a tiny LSTM with
state :math:`s_{ab}`; all LSTMs of a layer share their parameters :math:`\phi_\ell`. At every
step :math:`t`, for a layer with :math:`A` inputs and :math:`B` outputs,

.. math::
    s_{ab}^{t} = \mathrm{LSTM}_{\phi_\ell}\big(s_{ab}^{t-1},\,[\overrightarrow{m}_a^{t},\,
                 \overleftarrow{m}_b^{t-1},\, r_{t-1}]\big), \qquad
    \overrightarrow{m}_b^{\ell+1,t} = \sum_{a=1}^{A} f_{\phi_\ell}(s_{ab}^{t}), \qquad
    \overleftarrow{m}_a^{\ell,t} = \sum_{b=1}^{B} g_{\phi_\ell}(s_{ab}^{t}),

with forward messages entering layer 0 as the observation components
(:math:`\overrightarrow{m}_a^{0} = o_a`), backward messages entering the last layer as the
previous action (:math:`\overleftarrow{m}_b^{L} = \mathbb{1}[a_{t-1} = b]`), and the reward
:math:`r_{t-1}` fed to every LSTM. The policy logits are the first channel of the last layer's
forward messages: :math:`\pi(a_t = b) \propto \exp \overrightarrow{m}^{L}_{b,0}`.

Because parameters are shared and messages are **summed**, the learner is

* invariant to a permutation of the observation units (sums over :math:`a`),
* equivariant to a permutation of the action units (logit :math:`b` follows unit :math:`b`),
* applicable to any :math:`n_0` and :math:`n_L` with the same :math:`\phi` (sizes are free).

Messages inside a lifetime carry the learning: no gradient is taken inside a lifetime.
Meta-training maximises the expected lifetime return
:math:`J(\phi) = \mathbb{E}_{\text{task}}\,\mathbb{E}\big[\sum_{t=1}^{T} r_t\big]` by
backpropagation through the whole lifetime with the score-function estimator

.. math:: \nabla_\phi J \approx \frac{1}{NT}\sum_{i,t} \nabla_\phi \log\pi_\phi(a^i_t \mid h^i_t)\,
          \frac{G^i_t - b_t}{\sigma_t}, \qquad G^i_t = \sum_{t' \ge t} \gamma^{t'-t} r^i_{t'},

with the leave-one-out batch mean :math:`b_t` as baseline (the paper uses ES; both are black-box
meta-training of the same objective; see :func:`make_meta_train`). Rewards are maximised;
:func:`lifetime_pg_loss` returns a loss to *minimise*.

The same :class:`Learner` interface wraps the RL^2 baseline (:mod:`metalab.rl.rl2`), so both
are meta-trained and evaluated by one code path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

PyTree = Any


# ---------------------------------------------------------------------------------------------
# The learner interface shared by SymLA and RL^2
# ---------------------------------------------------------------------------------------------


class Learner(NamedTuple):
    """A black-box meta-RL learner: parameters are meta-learned, state carries the learning.

    Attributes:
      init_params: ``(key, n_in, n_out) -> params``.
      init_state: ``(key, n_in, n_out) -> state`` at the start of a lifetime.
      step: ``(params, state, obs[n_in], prev_action_onehot[n_out], reward) -> (logits[n_out],
        state)``; ``reward`` is the reward of the previous action (0 at t = 0).
    """

    init_params: Callable[[jax.Array, int, int], PyTree]
    init_state: Callable[[jax.Array, int, int], PyTree]
    step: Callable[..., tuple[jnp.ndarray, PyTree]]


class LifetimeEnv(Protocol):
    """What a lifetime environment provides (see ``rl/envs/permuted_*.py``)."""

    obs_dim: int
    num_actions: int

    def observe(self, state: Any) -> jnp.ndarray: ...

    def step(self, key: jax.Array, state: Any, action: jnp.ndarray) -> tuple[Any, jnp.ndarray]: ...


# ---------------------------------------------------------------------------------------------
# SymLA network
# ---------------------------------------------------------------------------------------------


class FusedLSTMCell(nn.Module):
    r"""LSTM cell with one matmul for all gates, over any leading batch dims.

    :math:`[i, f, g, o] = W [x; h] + b`, :math:`c' = \sigma(f) c + \sigma(i) \tanh(g)`,
    :math:`h' = \sigma(o) \tanh(c')`. Same maths as ``flax.linen.LSTMCell`` but one fused
    ``Dense`` instead of eight, which keeps compile time of the many scans here small.
    Carry is ``(c, h)``; the forget-gate bias starts at 1.
    """

    features: int

    @nn.compact
    def __call__(self, carry, x):
        c, h = carry
        z = nn.Dense(4 * self.features, name="gates")(jnp.concatenate([x, h], axis=-1))
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f + 1.0) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h


class SymLAState(NamedTuple):
    """SymLA lifetime state.

    Attributes:
      carry: per layer, the LSTM carry ``(c, h)``, each of shape ``(A_l, B_l, lstm_size)``.
      bwd: per layer but the last, the backward messages it receives from the next layer,
        computed at the previous step: shape ``(B_l, msg_dim)``.
    """

    carry: tuple[tuple[jnp.ndarray, jnp.ndarray], ...]
    bwd: tuple[jnp.ndarray, ...]


class SymLALayer(nn.Module):
    """One layer of weight-LSTMs sharing parameters (see the module docstring).

    Attributes:
      lstm_size: hidden size of each weight-LSTM.
      fwd_dim: size of the forward messages it emits (1 for the last layer: the logits).
      bwd_dim: size of the backward messages it emits.
    """

    lstm_size: int
    fwd_dim: int
    bwd_dim: int

    @nn.compact
    def __call__(
        self,
        carry: tuple[jnp.ndarray, jnp.ndarray],
        fwd_in: jnp.ndarray,
        bwd_in: jnp.ndarray,
        reward: jnp.ndarray,
    ) -> tuple[tuple[jnp.ndarray, jnp.ndarray], jnp.ndarray, jnp.ndarray]:
        """Args: carry ``(A, B, H)`` x2, fwd_in ``(A, F)``, bwd_in ``(B, Bd)``, reward ``()``.

        Returns the new carry, forward messages ``(B, fwd_dim)`` (summed over inputs ``a``) and
        backward messages ``(A, bwd_dim)`` (summed over outputs ``b``).
        """
        A, B = fwd_in.shape[0], bwd_in.shape[0]
        x = jnp.concatenate(
            [
                jnp.broadcast_to(fwd_in[:, None, :], (A, B, fwd_in.shape[-1])),
                jnp.broadcast_to(bwd_in[None, :, :], (A, B, bwd_in.shape[-1])),
                jnp.broadcast_to(jnp.reshape(reward, (1, 1, 1)), (A, B, 1)),
            ],
            axis=-1,
        )
        carry, h = FusedLSTMCell(self.lstm_size, name="lstm")(carry, x)
        fwd_out = nn.Dense(self.fwd_dim, name="fwd")(h).sum(axis=0)
        bwd_out = nn.Dense(self.bwd_dim, name="bwd")(h).sum(axis=1)
        return carry, fwd_out, bwd_out


class SymLANet(nn.Module):
    """A stack of :class:`SymLALayer`; one parameter set per layer, free in all unit counts.

    Attributes:
      num_layers: number of weight layers ``L`` (1 = observation units straight to actions).
      lstm_size: hidden size of each weight-LSTM.
      msg_dim: message size between layers.
    """

    num_layers: int = 1
    lstm_size: int = 16
    msg_dim: int = 4

    @nn.compact
    def __call__(
        self,
        state: SymLAState,
        obs: jnp.ndarray,
        prev_action: jnp.ndarray,
        reward: jnp.ndarray,
    ) -> tuple[jnp.ndarray, SymLAState]:
        fwd = obs.astype(jnp.float32)[:, None]
        carries, bwd_outs = [], []
        for layer in range(self.num_layers):
            last = layer == self.num_layers - 1
            bwd_in = prev_action.astype(jnp.float32)[:, None] if last else state.bwd[layer]
            fwd_dim = 1 if last else self.msg_dim
            c, fwd, b = SymLALayer(self.lstm_size, fwd_dim, self.msg_dim, name=f"layer{layer}")(
                state.carry[layer], fwd, bwd_in, reward
            )
            carries.append(c)
            bwd_outs.append(b)
        new_bwd = tuple(bwd_outs[layer + 1] for layer in range(self.num_layers - 1))
        return fwd[:, 0], SymLAState(tuple(carries), new_bwd)


def _check_sizes(n_in: int, n_out: int) -> None:
    if int(n_in) < 1 or int(n_out) < 1:
        raise ValueError(f"n_in and n_out must be >= 1, got n_in={n_in}, n_out={n_out}")


def symla_init_state(
    key: jax.Array,
    sizes: tuple[int, ...],
    lstm_size: int,
    msg_dim: int,
    state_noise: float = 0.0,
) -> SymLAState:
    """Initial lifetime state for layer sizes ``sizes = (n_0, ..., n_L)``.

    ``state_noise > 0`` draws the LSTM carries from :math:`\\mathcal N(0, \\text{noise}^2)`,
    which breaks the symmetry between hidden units (needed when ``L > 1``: identical hidden
    units would otherwise stay identical forever). With noise the learner is permutation
    equivariant *in distribution*; with zero noise, exactly.
    """
    if len(sizes) < 2:
        raise ValueError(f"sizes must list at least (n_in, n_out), got {sizes}")
    carries, bwd = [], []
    keys = jax.random.split(key, 2 * (len(sizes) - 1))
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        shape = (int(a), int(b), int(lstm_size))
        c = state_noise * jax.random.normal(keys[2 * i], shape)
        h = state_noise * jax.random.normal(keys[2 * i + 1], shape)
        carries.append((c, h))
        if i < len(sizes) - 2:
            bwd.append(jnp.zeros((int(b), int(msg_dim))))
    return SymLAState(tuple(carries), tuple(bwd))


def make_symla(
    hidden_units: tuple[int, ...] = (),
    lstm_size: int = 16,
    msg_dim: int = 4,
    state_noise: float = 0.0,
) -> Learner:
    """Build a SymLA :class:`Learner`.

    Args:
      hidden_units: unit counts of hidden layers (``()`` = one weight layer). Hidden sizes
        are, like input/output sizes, free: the parameters do not depend on them.
      lstm_size: hidden size of each weight-LSTM.
      msg_dim: forward/backward message size between layers.
      state_noise: std of the random initial LSTM carries (see :func:`symla_init_state`).

    Returns:
      A :class:`Learner` whose params are independent of ``n_in`` and ``n_out``.
    """
    if int(lstm_size) < 1 or int(msg_dim) < 1:
        raise ValueError(f"lstm_size and msg_dim must be >= 1, got {lstm_size}, {msg_dim}")
    if any(int(h) < 1 for h in hidden_units):
        raise ValueError(f"hidden_units must all be >= 1, got {hidden_units}")
    net = SymLANet(len(hidden_units) + 1, int(lstm_size), int(msg_dim))

    def sizes(n_in: int, n_out: int) -> tuple[int, ...]:
        _check_sizes(n_in, n_out)
        return (int(n_in), *map(int, hidden_units), int(n_out))

    def init_state(key: jax.Array, n_in: int, n_out: int) -> SymLAState:
        return symla_init_state(key, sizes(n_in, n_out), lstm_size, msg_dim, state_noise)

    def init_params(key: jax.Array, n_in: int = 2, n_out: int = 2) -> PyTree:
        k1, k2 = jax.random.split(key)
        st = init_state(k1, n_in, n_out)
        return net.init(k2, st, jnp.zeros((n_in,)), jnp.zeros((n_out,)), jnp.zeros(()))

    def step(params, state, obs, prev_action, reward):
        return net.apply(params, state, obs, prev_action, reward)

    return Learner(init_params, init_state, step)


# ---------------------------------------------------------------------------------------------
# Lifetimes and meta-training (shared by SymLA and RL^2)
# ---------------------------------------------------------------------------------------------


class LifetimeTrace(NamedTuple):
    """Per-step record of one lifetime: shapes ``(T,)``."""

    rewards: jnp.ndarray
    actions: jnp.ndarray
    logp: jnp.ndarray
    entropy: jnp.ndarray


def lifetime_rollout(
    learner: Learner,
    params: PyTree,
    env: LifetimeEnv,
    env_state: Any,
    key: jax.Array,
    lifetime: int,
) -> LifetimeTrace:
    """Run one lifetime of ``lifetime`` steps in a task (``env_state``), sampling actions.

    ``logp`` is differentiable w.r.t. ``params`` (backprop through the whole lifetime);
    sampled actions and rewards are constants.
    """
    n_in, n_out = env.obs_dim, env.num_actions
    k_state, k_run = jax.random.split(key)
    lstate = learner.init_state(k_state, n_in, n_out)

    def body(carry, k):
        ls, es, prev_a, prev_r = carry
        k_act, k_env = jax.random.split(k)
        logits, ls = learner.step(params, ls, env.observe(es), prev_a, prev_r)
        logp_all = jax.nn.log_softmax(logits)
        a = jax.random.categorical(k_act, jax.lax.stop_gradient(logits))
        es, r = env.step(k_env, es, a)
        ent = -jnp.sum(jnp.exp(logp_all) * logp_all)
        return (ls, es, jax.nn.one_hot(a, n_out), r), (r, a, logp_all[a], ent)

    init = (lstate, env_state, jnp.zeros((n_out,)), jnp.zeros(()))
    _, (rs, acts, logp, ent) = jax.lax.scan(body, init, jax.random.split(k_run, lifetime))
    return LifetimeTrace(rs, acts, logp, ent)


def returns_to_go(rewards_t: jnp.ndarray, discount: float) -> jnp.ndarray:
    r""":math:`G_t = \sum_{t' \ge t} \gamma^{t'-t} r_{t'}` along the last axis (time)."""

    def body(g, r):
        g = r + discount * g
        return g, g

    rs = jnp.moveaxis(rewards_t, -1, 0)
    _, g = jax.lax.scan(body, jnp.zeros(rs.shape[1:]), rs[::-1])
    return jnp.moveaxis(g[::-1], 0, -1)


def lifetime_pg_loss(
    params: PyTree,
    learner: Learner,
    env: LifetimeEnv,
    init_task: Callable[[jax.Array], Any],
    key: jax.Array,
    batch: int,
    lifetime: int,
    discount: float = 1.0,
    entropy_coef: float = 0.0,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Score-function surrogate of the negative expected lifetime return (to minimise).

    Returns ``(loss, mean lifetime return)``; advantages use a leave-one-out batch baseline
    per step and are scaled by their batch std per step.
    """
    if batch < 2:
        raise ValueError(f"batch must be >= 2 for the leave-one-out baseline, got {batch}")
    keys = jax.random.split(key, 2 * batch)
    tasks = jax.vmap(init_task)(keys[:batch])
    tr = jax.vmap(lambda s, k: lifetime_rollout(learner, params, env, s, k, lifetime))(
        tasks, keys[batch:]
    )
    g = returns_to_go(tr.rewards, discount)  # (N, T)
    base = (g.sum(0, keepdims=True) - g) / (batch - 1)
    adv = g - base
    adv = adv / (adv.std(0, keepdims=True) + 1e-6)
    adv = jax.lax.stop_gradient(adv)
    loss = -jnp.mean(tr.logp * adv) - entropy_coef * jnp.mean(tr.entropy)
    return loss, tr.rewards.sum(-1).mean()


class MetaTrainState(NamedTuple):
    """Meta-training state: learner parameters and optimiser state."""

    params: PyTree
    opt_state: optax.OptState


def make_meta_train(
    learner: Learner,
    env: LifetimeEnv,
    *,
    iterations: int,
    batch: int,
    lifetime: int,
    lr: float = 3e-3,
    discount: float = 1.0,
    entropy_coef: float = 0.0,
    max_grad_norm: float = 1.0,
    init_task: Callable[[jax.Array], Any] | None = None,
) -> Callable[[jax.Array], tuple[PyTree, jnp.ndarray]]:
    """``train(key) -> (params, curve)``: Adam on :func:`lifetime_pg_loss`, as one ``lax.scan``.

    ``curve`` holds the mean lifetime return of each meta-iteration's batch (maximised).
    Tasks come from ``init_task`` (default ``env.init``: the training distribution).
    """
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    init_task = env.init if init_task is None else init_task
    opt = optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.adam(lr))
    grad_fn = jax.value_and_grad(lifetime_pg_loss, has_aux=True)

    def train(key: jax.Array) -> tuple[PyTree, jnp.ndarray]:
        k_init, k_loop = jax.random.split(key)
        params = learner.init_params(k_init, env.obs_dim, env.num_actions)
        state = MetaTrainState(params, opt.init(params))

        def body(st, k):
            (_, ret), g = grad_fn(
                st.params, learner, env, init_task, k, batch, lifetime, discount, entropy_coef
            )
            upd, opt_state = opt.update(g, st.opt_state, st.params)
            return MetaTrainState(optax.apply_updates(st.params, upd), opt_state), ret

        state, curve = jax.lax.scan(body, state, jax.random.split(k_loop, iterations))
        return state.params, curve

    return train


def evaluate_lifetimes(
    learner: Learner,
    params: PyTree,
    env: LifetimeEnv,
    init_task: Callable[[jax.Array], Any],
    key: jax.Array,
    num: int,
    lifetime: int,
) -> jnp.ndarray:
    """Lifetime returns ``(num,)`` of ``num`` fresh tasks from ``init_task``."""
    keys = jax.random.split(key, 2 * num)
    tasks = jax.vmap(init_task)(keys[:num])
    tr = jax.vmap(lambda s, k: lifetime_rollout(learner, params, env, s, k, lifetime))(
        tasks, keys[num:]
    )
    return tr.rewards.sum(-1)
