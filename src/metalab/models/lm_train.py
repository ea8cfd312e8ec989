"""Word-level language-model training: truncated BPTT over a batchified stream, as ``lax.scan``.

The training stream is cut into ``batch_size`` contiguous rows (:func:`batchify`); step ``s``
trains on columns ``[p * bptt, (p + 1) * bptt)`` with ``p = s mod n_segments``, carrying the
recurrent state across segments (gradients truncated at segment boundaries, state reset at the
start of each epoch). The loss is the mean next-word cross-entropy (minimised); perplexity is
``exp`` of the mean cross-entropy over a whole split.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from metalab.models.adaptive import WordLM
from metalab.models.lm_data import batchify

Array = jax.Array


class LMTrainState(NamedTuple):
    """Training state: parameters, optimiser state, recurrent carry, step counter."""

    params: Any
    opt_state: Any
    carry: Any
    step: Array


class LMTrainer(NamedTuple):
    """Pure functions of one model/data/optimiser setting (all jit- and vmap-compatible).

    ``init(key) -> LMTrainState``; ``train(state, n_steps) -> (state, losses (n_steps,))`` with
    ``n_steps`` static; ``evaluate(params) -> perplexity`` on the validation stream;
    ``train_and_eval(key, n_evals, every) -> (state, ppl curve (n_evals,), losses)``.
    """

    init: Callable[[Array], LMTrainState]
    train: Callable[[LMTrainState, int], tuple[LMTrainState, Array]]
    evaluate: Callable[[Any], Array]
    train_and_eval: Callable[[Array, int, int], tuple[LMTrainState, Array, Array]]


def token_nll(logits: Array, target: Array) -> Array:
    """Cross-entropy ``-log softmax(logits)[target]`` of one position (minimised)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, target)


def make_lm_trainer(
    model: WordLM,
    train_ids: Any,
    valid_ids: Any,
    batch_size: int = 32,
    bptt: int = 35,
    learning_rate: float = 3e-3,
    clip: float = 0.5,
    eval_batch: int = 16,
) -> LMTrainer:
    """Build the training and evaluation functions of a word-level LM.

    Args:
      model: a :class:`WordLM`.
      train_ids, valid_ids: 1-d int id streams.
      batch_size, bptt: rows of the batchified stream and truncation length.
      learning_rate, clip: Adam step size and global-norm gradient clipping.
      eval_batch: rows used to evaluate the validation stream.

    Returns:
      an :class:`LMTrainer`.
    """
    if bptt < 1 or batch_size < 1:
        raise ValueError(f"bptt={bptt} and batch_size={batch_size} must be >= 1")
    data = batchify(train_ids, batch_size)
    vdata = batchify(valid_ids, eval_batch)
    n_seg = (data.shape[1] - 1) // bptt
    nv_seg = (vdata.shape[1] - 1) // bptt
    if n_seg < 1 or nv_seg < 1:
        raise ValueError("streams are too short for one bptt segment; lower bptt or batch_size")
    tx = optax.chain(optax.clip_by_global_norm(clip), optax.adam(learning_rate))

    def segment(arr: Array, p: Array, b: int) -> tuple[Array, Array]:
        x = jax.lax.dynamic_slice(arr, (0, p * bptt), (b, bptt))
        y = jax.lax.dynamic_slice(arr, (0, p * bptt + 1), (b, bptt))
        return x, y

    def init(key: Array) -> LMTrainState:
        carry = model.initial_carry(batch_size)
        params = model.init(key, carry, data[:, :bptt])["params"]
        return LMTrainState(params, tx.init(params), carry, jnp.zeros((), jnp.int32))

    def loss_fn(params: Any, carry: Any, x: Array, y: Array) -> tuple[Array, Any]:
        carry, logits = model.apply({"params": params}, carry, x)
        return token_nll(logits, y).mean(), carry

    def one_step(state: LMTrainState, _: Any) -> tuple[LMTrainState, Array]:
        p = state.step % n_seg
        carry = jax.tree_util.tree_map(lambda c: jnp.where(p == 0, 0.0, c), state.carry)
        x, y = segment(data, p, batch_size)
        (loss, carry), g = jax.value_and_grad(loss_fn, has_aux=True)(state.params, carry, x, y)
        updates, opt_state = tx.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        carry = jax.lax.stop_gradient(carry)
        return LMTrainState(params, opt_state, carry, state.step + 1), loss

    def train(state: LMTrainState, n_steps: int) -> tuple[LMTrainState, Array]:
        return jax.lax.scan(one_step, state, None, length=n_steps)

    def evaluate(params: Any) -> Array:
        def body(carry: Any, p: Array) -> tuple[Any, Array]:
            x, y = segment(vdata, p, eval_batch)
            carry, logits = model.apply({"params": params}, carry, x)
            return carry, token_nll(logits, y).sum()

        _, nll = jax.lax.scan(body, model.initial_carry(eval_batch), jnp.arange(nv_seg))
        return jnp.exp(nll.sum() / (nv_seg * bptt * eval_batch))

    def train_and_eval(key: Array, n_evals: int, every: int) -> tuple[LMTrainState, Array, Array]:
        def block(state: LMTrainState, _: Any) -> tuple[LMTrainState, tuple[Array, Array]]:
            state, losses = train(state, every)
            return state, (evaluate(state.params), losses)

        state, (ppl, losses) = jax.lax.scan(block, init(key), None, length=n_evals)
        return state, ppl, losses.reshape(-1)

    return LMTrainer(init, train, evaluate, train_and_eval)
