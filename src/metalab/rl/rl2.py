r"""RL^2: a recurrent black-box meta-RL learner (the baseline SymLA is compared with).

Duan et al. (2016), *RL^2: Fast Reinforcement Learning via Slow Reinforcement Learning*,
arXiv:1611.02779; Wang et al. (2016), *Learning to reinforcement learn*, arXiv:1611.05763.

One LSTM reads the observation, the previous action (one-hot) and the previous reward and
outputs action logits; its state persists across the episodes of a lifetime, so in-lifetime
learning is carried by the activations:

.. math:: (c_t, h_t) = \mathrm{LSTM}_\theta\big((c_{t-1}, h_{t-1}),\,
          [o_t,\, \mathrm{onehot}(a_{t-1}),\, r_{t-1}]\big), \qquad
          \pi_\theta(\cdot \mid h_t) = \mathrm{softmax}(W h_t + b).

Its input and output sizes are fixed by :math:`\theta`: an RL^2 learner trained with ``n_in``
observation units and ``n_out`` actions **cannot run** on other sizes. :func:`make_rl2` raises
:class:`SizeMismatchError` in that case. :func:`pad_rl2` is a (generous, hand-made) adaptation
for *smaller* spaces: zero-pad the observation and previous action to the trained sizes and
give the surplus actions probability zero; there is no principled way to run it on larger ones.

The meta-training objective and loop are shared with SymLA (:mod:`metalab.rl.symla`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from metalab.rl.symla import FusedLSTMCell, Learner

PyTree = Any


class SizeMismatchError(ValueError):
    """An RL^2 learner was asked to run on observation/action sizes it was not built for."""


class RL2Net(nn.Module):
    """LSTM policy over ``[obs, onehot(prev action), prev reward]``.

    Attributes:
      num_actions: output size.
      hidden: LSTM hidden size.
    """

    num_actions: int
    hidden: int = 64

    @nn.compact
    def __call__(self, carry, obs, prev_action, reward):
        x = jnp.concatenate(
            [obs.astype(jnp.float32), prev_action.astype(jnp.float32), jnp.reshape(reward, (1,))]
        )
        carry, h = FusedLSTMCell(self.hidden, name="lstm")(carry, x)
        return nn.Dense(self.num_actions, name="policy")(h), carry


def make_rl2(n_in: int, n_out: int, hidden: int = 64) -> Learner:
    """Build an RL^2 :class:`Learner` for exactly ``n_in`` observation units and ``n_out``
    actions.

    ``init_params``/``init_state``/``step`` raise :class:`SizeMismatchError` for other sizes.
    """
    n_in, n_out, hidden = int(n_in), int(n_out), int(hidden)
    if n_in < 1 or n_out < 1 or hidden < 1:
        raise ValueError(f"n_in, n_out, hidden must be >= 1, got {n_in}, {n_out}, {hidden}")
    net = RL2Net(n_out, hidden)

    def check(a: int, b: int) -> None:
        if (int(a), int(b)) != (n_in, n_out):
            raise SizeMismatchError(
                f"RL^2 was built for n_in={n_in}, n_out={n_out}; cannot run with "
                f"n_in={a}, n_out={b} (its input and output layers have fixed sizes)"
            )

    def init_state(key: jax.Array, a: int, b: int):
        del key
        check(a, b)
        z = jnp.zeros((hidden,))
        return (z, z)

    def init_params(key: jax.Array, a: int, b: int) -> PyTree:
        st = init_state(key, a, b)
        return net.init(key, st, jnp.zeros((a,)), jnp.zeros((b,)), jnp.zeros(()))

    def step(params, state, obs, prev_action, reward):
        check(obs.shape[0], prev_action.shape[0])
        return net.apply(params, state, obs, prev_action, reward)

    return Learner(init_params, init_state, step)


def pad_rl2(learner: Learner, n_in_train: int, n_out_train: int) -> Learner:
    """Run an RL^2 learner built for ``(n_in_train, n_out_train)`` on smaller spaces.

    Observations and previous actions are zero-padded to the trained sizes; only the first
    ``n_out`` logits are kept (equivalently, surplus actions get probability zero). Raises
    :class:`SizeMismatchError` if the new sizes are larger than the trained ones.
    """

    def fit(a: int, b: int) -> None:
        if int(a) > n_in_train or int(b) > n_out_train:
            raise SizeMismatchError(
                f"RL^2 was built for n_in={n_in_train}, n_out={n_out_train}; padding cannot "
                f"enlarge it to n_in={a}, n_out={b}"
            )

    def init_state(key, a, b):
        fit(a, b)
        return learner.init_state(key, n_in_train, n_out_train)

    def init_params(key, a, b):
        fit(a, b)
        return learner.init_params(key, n_in_train, n_out_train)

    def step(params, state, obs, prev_action, reward):
        a, b = obs.shape[0], prev_action.shape[0]
        fit(a, b)
        obs = jnp.pad(obs, (0, n_in_train - a))
        prev_action = jnp.pad(prev_action, (0, n_out_train - b))
        logits, state = learner.step(params, state, obs, prev_action, reward)
        return logits[:b], state

    return Learner(init_params, init_state, step)
