"""aLSTM cell, adaptive feed-forward layer, LM data readers and training loop."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.models.adaptive import (
    AdaptiveDense,
    ALSTMCell,
    WordLM,
    adaptive_lstm_step,
    count_params,
    unit_scales,
)
from metalab.models.lm_data import (
    batchify,
    oracle_perplexity,
    read_ptb,
    read_wikitext2,
    synthetic_topic_corpus,
)
from metalab.models.lm_train import make_lm_trainer

D_IN, H, B = 5, 7, 3


def _flax_lstm():
    cell = nn.LSTMCell(H)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, D_IN))
    c0 = jax.random.normal(jax.random.PRNGKey(2), (B, H))
    h0 = jax.random.normal(jax.random.PRNGKey(3), (B, H))
    variables = cell.init(jax.random.PRNGKey(4), (c0, h0), x)
    p = jax.tree_util.tree_map(lambda a: a + 0.1, variables["params"])  # non-zero biases
    w_x = jnp.concatenate([p[g]["kernel"] for g in ("ii", "if", "ig", "io")], axis=-1)
    w_h = jnp.concatenate([p[g]["kernel"] for g in ("hi", "hf", "hg", "ho")], axis=-1)
    b = jnp.concatenate([p[g]["bias"] for g in ("hi", "hf", "hg", "ho")], axis=-1)
    return cell, {"params": p}, (c0, h0), x, (w_x, w_h, b)


def test_adaptive_step_with_unit_scales_equals_flax_lstm():
    cell, variables, carry, x, (w_x, w_h, b) = _flax_lstm()
    (c_ref, h_ref), _ = cell.apply(variables, carry, x)
    step = jax.jit(adaptive_lstm_step)
    (c, h), out = step(w_x, w_h, b, carry, x, unit_scales(D_IN, H, (B,)))
    np.testing.assert_allclose(c, c_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, h_ref, rtol=1e-5, atol=1e-6)
    # non-unit scalings change the result: the test can tell them apart
    s = unit_scales(D_IN, H, (B,))._replace(out_h=jnp.full((B, 4 * H), 1.5))
    (_, h2), _ = step(w_x, w_h, b, carry, x, s)
    assert float(jnp.abs(h2 - h_ref).max()) > 1e-3


def test_scaling_is_per_unit_rescaling_of_weights():
    cell, variables, carry, x, (w_x, w_h, b) = _flax_lstm()
    k = jax.random.split(jax.random.PRNGKey(9), 5)
    s = unit_scales(D_IN, H)._replace(
        in_x=1 + 0.3 * jax.random.normal(k[0], (D_IN,)),
        out_x=1 + 0.3 * jax.random.normal(k[1], (4 * H,)),
        in_h=1 + 0.3 * jax.random.normal(k[2], (H,)),
        out_h=1 + 0.3 * jax.random.normal(k[3], (4 * H,)),
        bias=1 + 0.3 * jax.random.normal(k[4], (4 * H,)),
    )
    (c, h), _ = adaptive_lstm_step(w_x, w_h, b, carry, x, s)
    # the same step is a plain LSTM with weights D(pi) W D(tau) and bias beta * b
    w_x2 = s.in_x[:, None] * w_x * s.out_x[None]
    w_h2 = s.in_h[:, None] * w_h * s.out_h[None]
    (c2, h2), _ = adaptive_lstm_step(w_x2, w_h2, s.bias * b, carry, x, unit_scales(D_IN, H))
    np.testing.assert_allclose(h, h2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(c, c2, rtol=1e-5, atol=1e-6)


def test_alstm_cell_at_init_equals_its_plain_lstm_and_vmaps():
    cell = ALSTMCell(H, 3)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, D_IN))
    carry = cell.initialize_carry(jax.random.PRNGKey(0), x.shape)
    carry = (carry[0] + 0.2, carry[1] - 0.3, carry[2], carry[3] + 0.1)
    params = cell.init(jax.random.PRNGKey(2), carry, x)["params"]
    new, out = jax.jit(cell.apply)({"params": params}, carry, x)
    b = params["b"] + 0.0
    (c_ref, h_ref), _ = adaptive_lstm_step(
        params["w_x"], params["w_h"], b, carry[:2], x, unit_scales(D_IN, H)
    )
    np.testing.assert_allclose(out, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new[0], c_ref, rtol=1e-5, atol=1e-6)
    # once the projection is non-zero the policy modulates the cell
    p2 = dict(params)
    p2["projection"] = {
        "kernel": params["projection"]["kernel"] + 0.5,
        "bias": params["projection"]["bias"],
    }
    _, out2 = cell.apply({"params": p2}, carry, x)
    assert float(jnp.abs(out2 - h_ref).max()) > 1e-3
    # vmap over a leading axis gives the same as the batched call
    outs = jax.vmap(lambda c, xx: cell.apply({"params": p2}, c, xx)[1])(
        jax.tree_util.tree_map(lambda a: a[:, None], carry), x[:, None]
    )
    np.testing.assert_allclose(outs[:, 0], out2, rtol=1e-5, atol=1e-6)


def test_adaptive_dense_reduces_to_dense():
    layer = AdaptiveDense(4)
    x = jax.random.normal(jax.random.PRNGKey(0), (B, D_IN))
    z = jax.random.normal(jax.random.PRNGKey(1), (B, 2))
    p = layer.init(jax.random.PRNGKey(2), x, z)["params"]
    p = {**p, "bias": p["bias"] + 0.7}
    y = layer.apply({"params": p}, x, z)
    y_ref = nn.Dense(4).apply({"params": {"kernel": p["kernel"], "bias": p["bias"]}}, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    # a context-dependent scaling: y = tau * ((pi * x) W) + beta * b
    proj = {
        "kernel": jnp.ones_like(p["projection"]["kernel"]) * 0.1,
        "bias": p["projection"]["bias"],
    }
    y2 = layer.apply({"params": {**p, "projection": proj}}, x, z)
    s = 1 + 0.1 * z.sum(-1, keepdims=True)
    np.testing.assert_allclose(
        y2, s * ((s * x) @ p["kernel"]) + s * p["bias"], rtol=1e-5, atol=1e-5
    )


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def test_read_ptb_fixture(tmp_path):
    _write(tmp_path / "ptb.train.txt", [" the cat sat ", " the <unk> ran"])
    _write(tmp_path / "ptb.valid.txt", [" the dog sat"])
    _write(tmp_path / "ptb.test.txt", [" cat"])
    c = read_ptb(tmp_path)
    assert c.vocab == ("the", "cat", "sat", "<eos>", "<unk>", "ran")
    np.testing.assert_array_equal(c.train, [0, 1, 2, 3, 0, 4, 5, 3])
    np.testing.assert_array_equal(c.valid, [0, 4, 2, 3])  # "dog" -> <unk>
    np.testing.assert_array_equal(c.test, [1, 3])
    assert c.train.dtype == np.int32


def test_read_wikitext2_fixture(tmp_path):
    train = [" = Title = ", "", " a b <unk> a ", ""]
    _write(tmp_path / "wiki.train.tokens", train)
    _write(tmp_path / "wiki.valid.tokens", ["", " b z"])
    _write(tmp_path / "wiki.test.tokens", [" a"])
    c = read_wikitext2(tmp_path)
    assert c.vocab[:3] == ("=", "Title", "<eos>")
    assert len(c.train) == 3 + 1 + 1 + 4 + 1 + 1  # every line, blank ones too, ends in <eos>
    eos = c.vocab.index("<eos>")
    np.testing.assert_array_equal(c.valid, [eos, c.vocab.index("b"), c.vocab.index("<unk>"), eos])
    c2 = read_wikitext2(tmp_path, skip_empty=True)
    assert len(c2.train) == 4 + 5


def test_reader_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ptb.train.txt"):
        read_ptb(tmp_path)
    _write(tmp_path / "ptb.train.txt", ["a b"])
    _write(tmp_path / "ptb.valid.txt", ["c"])
    _write(tmp_path / "ptb.test.txt", ["a"])
    with pytest.raises(ValueError, match="'c'"):
        read_ptb(tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        batchify(np.arange(3), 4)


def test_synthetic_corpus_and_oracle():
    ids, spec = synthetic_topic_corpus(0, 3000, vocab=12, n_topics=3, mean_doc_len=20)
    assert ids.shape == (3000,) and ids.min() >= 0 and ids.max() < 12
    np.testing.assert_allclose(spec.transitions[:, :, 1:].sum(-1), 1.0, rtol=1e-9)
    assert 0.02 < np.mean(ids == 0) < 0.09  # one <eos> per document of mean length 20
    # the oracle is better than the empirical unigram model
    uni = np.bincount(ids, minlength=12) / ids.size
    assert oracle_perplexity(ids, spec) < np.exp(-np.mean(np.log(uni[ids])))


def test_lm_training_loop_learns_and_vmaps():
    ids, _ = synthetic_topic_corpus(0, 4000, vocab=10, n_topics=2, mean_doc_len=20)
    model = WordLM(10, 8, 8, "alstm", 4)
    tr = make_lm_trainer(model, ids[:3000], ids[3000:], batch_size=4, bptt=10, learning_rate=1e-2)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    run = jax.jit(jax.vmap(lambda k: tr.train_and_eval(k, 3, 20)))
    state, ppl, losses = run(keys)
    assert ppl.shape == (2, 3) and losses.shape == (2, 60)
    assert np.all(np.isfinite(ppl))
    assert float(ppl[:, -1].mean()) < 10.0  # better than uniform over 10 words
    assert float(losses[:, -10:].mean()) < float(losses[:, :10].mean())
    assert count_params(jax.tree_util.tree_map(lambda a: a[0], state.params)) > 0
