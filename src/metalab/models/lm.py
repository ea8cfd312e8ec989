"""Word-level language models with an aLSTM or an LSTM cell, AWD-style regularisation, and
truncated-BPTT training as ``lax.scan``: ``make_lm(config) -> Model(init, apply, train)``.

Reference: Flennerhag, Yin, Keane, Elliot (2018), arXiv:1805.08574 (the aLSTM), whose
experiments build on Merity et al.'s AWD-LSTM training code (arXiv:1708.02182).

The aLSTM step (gate order ``i, f, g, o``; ``[a, b]`` is concatenation)::

    (c^a_t, z_t) = LSTM_policy((c^a_{t-1}, z_{t-1}), [x_t, h_{t-1}])      # adaptation policy
    z_t <- m_z * z_t                                                       # policy dropout
    (pi^x, tau^x, pi^h, tau^h, beta) = tanh(P z_t)                         # sub-policies
    s_t = D(tau^x) W D(pi^x) x_t + D(tau^h) V D(pi^h) h_{t-1} + D(beta) b
    c_t = sigma(f) c_{t-1} + sigma(i) tanh(g),   h_t = sigma(o) tanh(c_t)
    h_t <- m_h * h_t   (the dropped h is what the next step reads; the output is the undropped h)

as the authors' implementation does: the projection ``P`` is a bias-free linear map followed by
``tanh``, initialised like any dense layer (uniform, scale ``1/sqrt(A)``), so the policy receives
gradients from the first step; orthogonal ``W``/``V`` blocks and a forget-gate bias of 1.

Regularisation (each rate a config field; masks are *locked*, i.e. one mask per sequence reused
at every time step of a training segment):

* ``dropout_embed``: embedding dropout, whole words of the vocabulary dropped (AWD);
* ``dropout_input`` / ``dropout_output``: locked dropout on the embeddings fed to the cell and
  on the cell's output before the decoder;
* ``dropout_hidden``: variational dropout on the recurrent state ``h`` (the aLSTM's scheme);
* ``dropout_policy``: variational dropout on the policy's ``z`` (aLSTM only);
* ``weight_drop``: DropConnect on the recurrent kernel ``V`` (AWD-LSTM's scheme), one mask
  per training segment.

Loss: mean next-word cross-entropy (minimised); perplexity is ``exp`` of the mean cross-entropy
over a whole split. The training stream is cut into ``batch_size`` rows; step ``s`` trains on
columns ``[p bptt, (p+1) bptt)`` with ``p = s mod n_segments``, carrying the recurrent state
across segments (reset at each epoch's start).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from metalab.models.adaptive import adaptive_lstm_step, split_scales
from metalab.models.api import Model
from metalab.models.lm_data import batchify

Array = jax.Array

CELLS = ("alstm", "lstm")


@dataclass(frozen=True)
class LMConfig:
    """Static settings of a word-level LM and its training run (see module docstring)."""

    vocab: int
    embed: int = 32
    hidden: int = 64
    cell: str = "alstm"
    adapt: int = 16
    dropout_embed: float = 0.0
    dropout_input: float = 0.0
    dropout_output: float = 0.0
    dropout_hidden: float = 0.0
    dropout_policy: float = 0.0
    weight_drop: float = 0.0
    batch_size: int = 32
    bptt: int = 35
    learning_rate: float = 3e-3
    clip: float = 0.5
    steps: int = 1000
    eval_every: int = 100

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell={self.cell!r}; allowed: {', '.join(CELLS)}")
        for name in (
            "dropout_embed",
            "dropout_input",
            "dropout_output",
            "dropout_hidden",
            "dropout_policy",
            "weight_drop",
        ):
            v = getattr(self, name)
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name}={v} must be in [0, 1)")
        if min(self.vocab, self.embed, self.hidden, self.adapt, self.bptt, self.batch_size) < 1:
            raise ValueError("vocab, embed, hidden, adapt, bptt and batch_size must be >= 1")
        if self.eval_every < 1 or self.steps < self.eval_every:
            raise ValueError(f"need 1 <= eval_every={self.eval_every} <= steps={self.steps}")


class LMData(NamedTuple):
    """Batchified id streams: ``train`` ``(batch_size, N)``, ``valid`` ``(eval_batch, Nv)``."""

    train: Array
    valid: Array


class LMState(NamedTuple):
    """Training state: parameters, optimiser state, recurrent carry, step, PRNG key."""

    params: Any
    opt_state: Any
    carry: Any
    step: Array
    key: Array


def _orthogonal_blocks(key: Array, rows: int, n_blocks: int) -> Array:
    keys = jax.random.split(key, n_blocks)
    init = jax.nn.initializers.orthogonal()
    return jnp.concatenate([init(k, (rows, rows)) for k in keys], axis=-1)


def _uniform(key: Array, shape: tuple[int, ...], scale: float) -> Array:
    return jax.random.uniform(key, shape, minval=-scale, maxval=scale)


def _gate_bias(hidden: int) -> Array:
    """Zero bias with the forget-gate block set to 1 (gate order i, f, g, o)."""
    return jnp.zeros(4 * hidden).at[hidden : 2 * hidden].set(1.0)


def init_params(key: Array, cfg: LMConfig) -> dict[str, Any]:
    """Parameters of the LM: embedding, cell (and aLSTM policy and projection), decoder."""
    v, e, h, a = cfg.vocab, cfg.embed, cfg.hidden, cfg.adapt
    k = jax.random.split(key, 8)
    cell = {
        "w_x": jax.nn.initializers.lecun_normal()(k[0], (e, 4 * h)),
        "w_h": _orthogonal_blocks(k[1], h, 4),
        "b": _gate_bias(h),
    }
    if cfg.cell == "alstm":
        cell["pol_wx"] = jax.nn.initializers.lecun_normal()(k[2], (e, 4 * a))
        cell["pol_whz"] = jnp.concatenate(
            [jax.nn.initializers.lecun_normal()(k[3], (h, 4 * a)), _orthogonal_blocks(k[4], a, 4)]
        )
        cell["pol_b"] = _gate_bias(a)
        cell["proj"] = _uniform(k[5], (a, e + 13 * h), 1.0 / np.sqrt(a))
    return {
        "embed": _uniform(k[6], (v, e), 0.1),
        "cell": cell,
        "dec_w": _uniform(k[7], (h, v), 0.1),
        "dec_b": jnp.zeros(v),
    }


def zero_carry(cfg: LMConfig, batch: int) -> tuple[Array, ...]:
    """Zero recurrent state: ``(c, h)`` for the LSTM, ``(c, h, c_policy, z)`` for the aLSTM."""
    zh = jnp.zeros((batch, cfg.hidden))
    if cfg.cell == "alstm":
        za = jnp.zeros((batch, cfg.adapt))
        return (zh, zh, za, za)
    return (zh, zh)


def _lstm_update(s: Array, c: Array) -> tuple[Array, Array]:
    i, f, g, o = jnp.split(s, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return c, jax.nn.sigmoid(o) * jnp.tanh(c)


def _mask(key: Array | None, rate: float, shape: tuple[int, ...]) -> Array | float:
    """Inverted-dropout mask (1 when no key or rate 0)."""
    if key is None or rate <= 0.0:
        return 1.0
    return jax.random.bernoulli(key, 1.0 - rate, shape).astype(jnp.float32) / (1.0 - rate)


def forward(
    params: dict[str, Any],
    carry: tuple[Array, ...],
    tokens: Array,
    cfg: LMConfig,
    key: Array | None = None,
) -> tuple[tuple[Array, ...], Array]:
    """Run the LM over ``tokens`` ``(B, T)``: ``(new carry, logits (B, T, V))``.

    With ``key`` the regularisation of ``cfg`` is applied (training); ``key=None`` is the
    deterministic evaluation mode.
    """
    b, _ = tokens.shape
    ks = jax.random.split(key, 6) if key is not None else [None] * 6
    cell = params["cell"]
    emb = params["embed"] * _mask(ks[0], cfg.dropout_embed, (cfg.vocab, 1))
    x = emb[tokens] * _mask(ks[1], cfg.dropout_input, (b, 1, cfg.embed))
    w_h = cell["w_h"] * _mask(ks[2], cfg.weight_drop, cell["w_h"].shape)
    m_h = _mask(ks[3], cfg.dropout_hidden, (b, cfg.hidden))
    xs = jnp.swapaxes(x, 0, 1)  # (T, B, E)
    if cfg.cell == "lstm":
        gx = xs @ cell["w_x"] + cell["b"]  # input projection hoisted out of the scan

        def step(c_h, g):
            c, h = c_h
            c, h = _lstm_update(g + h @ w_h, c)
            return (c, h * m_h), h

        carry, hs = jax.lax.scan(step, carry, gx)
    else:
        m_z = _mask(ks[4], cfg.dropout_policy, (b, cfg.adapt))
        px = xs @ cell["pol_wx"] + cell["pol_b"]  # policy's input projection hoisted

        def step(state, inp):
            c, h, c_a, z = state
            x_t, px_t = inp
            c_a, z = _lstm_update(px_t + jnp.concatenate([h, z], -1) @ cell["pol_whz"], c_a)
            z = z * m_z
            scales = split_scales(jnp.tanh(z @ cell["proj"]), cfg.embed, cfg.hidden)
            (c, h), out = adaptive_lstm_step(cell["w_x"], w_h, cell["b"], (c, h), x_t, scales)
            return (c, h * m_h, c_a, z), out

        carry, hs = jax.lax.scan(step, carry, (xs, px))
    hs = jnp.swapaxes(hs, 0, 1) * _mask(ks[5], cfg.dropout_output, (b, 1, cfg.hidden))
    return carry, hs @ params["dec_w"] + params["dec_b"]


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def param_count(cfg: LMConfig) -> int:
    """Parameter count of the LM described by ``cfg`` (no compute)."""
    shapes = jax.eval_shape(lambda k: init_params(k, cfg), jax.random.PRNGKey(0))
    return count_params(shapes)


def make_data(train_ids: Any, valid_ids: Any, cfg: LMConfig, eval_batch: int = 16) -> LMData:
    """Batchify the streams for :func:`make_lm` (validation in ``min(eval_batch, B)`` rows)."""
    tr = batchify(np.asarray(train_ids, np.int32), cfg.batch_size)
    va = batchify(np.asarray(valid_ids, np.int32), min(eval_batch, cfg.batch_size))
    return LMData(tr, va)


class LMSteps(NamedTuple):
    """Lower-level pieces of :func:`make_lm` (for timed, block-wise training).

    ``init_state(key, data) -> LMState``; ``block(state, data) -> (state, losses (eval_every,))``;
    ``evaluate(params, data) -> validation perplexity``.
    """

    init_state: Any
    block: Any
    evaluate: Any


def make_lm_steps(cfg: LMConfig) -> LMSteps:
    """Build the block-wise training and evaluation functions of the LM of ``cfg``."""
    tx = optax.chain(optax.clip_by_global_norm(cfg.clip), optax.adam(cfg.learning_rate))
    t = cfg.bptt

    def segment(arr: Array, p: Array) -> tuple[Array, Array]:
        rows = arr.shape[0]
        x = jax.lax.dynamic_slice(arr, (0, p * t), (rows, t))
        y = jax.lax.dynamic_slice(arr, (0, p * t + 1), (rows, t))
        return x, y

    def n_segments(arr: Array) -> int:
        n = (arr.shape[1] - 1) // t
        if n < 1:
            raise ValueError(f"stream of {arr.shape[1]} columns is too short for bptt={t}")
        return n

    def init_state(key: Array, data: LMData) -> LMState:
        k_p, k_s = jax.random.split(key)
        params = init_params(k_p, cfg)
        carry = zero_carry(cfg, data.train.shape[0])
        return LMState(params, tx.init(params), carry, jnp.zeros((), jnp.int32), k_s)

    def loss_fn(params, carry, x, y, key):
        carry, logits = forward(params, carry, x, cfg, key)
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, y)
        return nll.mean(), carry

    def block(state: LMState, data: LMData) -> tuple[LMState, Array]:
        n_seg = n_segments(data.train)

        def one(s: LMState, _: Any) -> tuple[LMState, Array]:
            p = s.step % n_seg
            carry = jax.tree_util.tree_map(lambda c: jnp.where(p == 0, 0.0, c), s.carry)
            x, y = segment(data.train, p)
            key, k = jax.random.split(s.key)
            (loss, carry), g = jax.value_and_grad(loss_fn, has_aux=True)(s.params, carry, x, y, k)
            updates, opt_state = tx.update(g, s.opt_state, s.params)
            params = optax.apply_updates(s.params, updates)
            carry = jax.lax.stop_gradient(carry)
            return LMState(params, opt_state, carry, s.step + 1, key), loss

        return jax.lax.scan(one, state, None, length=cfg.eval_every)

    def evaluate(params: Any, data: LMData) -> Array:
        nv = n_segments(data.valid)

        def body(carry, p):
            x, y = segment(data.valid, p)
            carry, logits = forward(params, carry, x, cfg)
            return carry, optax.softmax_cross_entropy_with_integer_labels(logits, y).sum()

        _, nll = jax.lax.scan(body, zero_carry(cfg, data.valid.shape[0]), jnp.arange(nv))
        return jnp.exp(nll.sum() / (nv * t * data.valid.shape[0]))

    return LMSteps(init_state, block, evaluate)


def make_lm(cfg: LMConfig) -> Model:
    """``Model(init, apply, train)`` of a word-level LM (see :mod:`metalab.models.api`).

    * ``init(key, data) -> params``;
    * ``apply(params, tokens (B, T), key=None) -> logits (B, T, V)`` from a zero state
      (``key``: training-mode regularisation; ``None``: evaluation);
    * ``train(key, data) -> (params, {"loss": (steps,), "val_ppl": (steps // eval_every,)})``.
    """
    steps = make_lm_steps(cfg)
    n_blocks = cfg.steps // cfg.eval_every

    def init(key: Array, data: LMData | None = None) -> dict[str, Any]:
        return init_params(jax.random.split(key)[0], cfg)

    def apply(params: Any, tokens: Array, key: Array | None = None) -> Array:
        return forward(params, zero_carry(cfg, tokens.shape[0]), tokens, cfg, key)[1]

    def train(key: Array, data: LMData) -> tuple[Any, dict[str, Array]]:
        def blk(s: LMState, _: Any) -> tuple[LMState, tuple[Array, Array]]:
            s, losses = steps.block(s, data)
            return s, (steps.evaluate(s.params, data), losses)

        s, (ppl, losses) = jax.lax.scan(blk, steps.init_state(key, data), None, length=n_blocks)
        return s.params, {"loss": losses.reshape(-1), "val_ppl": ppl}

    return Model(init, apply, train)
