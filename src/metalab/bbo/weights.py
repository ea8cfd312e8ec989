"""Shipped weights for the learned optimisers: ``.npz`` arrays plus a ``.json`` record.

Weights are nested dicts of arrays. On disk, keys are ``/``-joined paths (``lr/hidden/w``) in a
plain ``.npz`` (never a pickle); the JSON record beside it says how they were trained (config,
wall time, meta-fitness curve summary).

``les_from_evosax`` / ``lga_from_evosax`` convert evosax 0.3.2's flax parameter trees
(``LearnedES(...).les_params``, ``LearnedGA(...).lga_params``) to metalab's layout. evosax's
shipped pickles are read through evosax's own trusted-checkpoint loader.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

WEIGHTS_DIR = Path(__file__).parent / "weights"
SHIPPED = {"les": "les_metalab", "les-highd": "les_metalab_highd", "lga": "lga_metalab"}
# ``load_weights("les", num_dims=D)`` (and ``LES(n, D)``'s default) use the high-dimensional
# checkpoint iff D > HIGHD_THRESHOLD: the low-D weights were meta-trained on D <= 96 (and
# evaluated up to D 100), the high-D ones on D 101-1,500. Fixed from the two training ranges.
HIGHD_THRESHOLD = 100


def flatten_dict(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    """``{"a": {"b": x}} -> {"a/b": x}`` with numpy leaves."""
    out: dict[str, np.ndarray] = {}
    for k, v in tree.items():
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten_dict(v, path))
        else:
            out[path] = np.asarray(v)
    return out


def unflatten_dict(flat: dict[str, Any]) -> dict:
    """Inverse of :func:`flatten_dict`; leaves become float32 jax arrays."""
    tree: dict = {}
    for path, v in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = jnp.asarray(v, jnp.float32)
    return tree


def save_weights(path: str | Path, net: dict, record: dict | None = None) -> Path:
    """Write ``net`` to ``path.npz`` and ``record`` to ``path.json``; returns the npz path."""
    path = Path(path).with_suffix("")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path.with_suffix(".npz"), **flatten_dict(net))
    if record is not None:
        path.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    return path.with_suffix(".npz")


def load_weights(name_or_path: str | Path, num_dims: int = 10) -> dict:
    """Load weights by name or path.

    * ``"les"`` / ``"lga"``: metalab's shipped meta-trained weights; for ``"les"`` with
      ``num_dims > HIGHD_THRESHOLD`` (100) the high-dimensional checkpoint
      ``les_metalab_highd`` (meta-trained on D 101-1,500), else ``les_metalab`` (D 2-96);
      ``"les-highd"`` names the high-dimensional one directly;
    * ``"evosax-les"`` / ``"evosax-lga"``: the checkpoint evosax 0.3.2's default
      ``LearnedES`` / ``LearnedGA`` would load for ``num_dims`` (LGA: v7 above D = 50, v4
      otherwise). The LGA weights carry ``sigma_offset = 2`` (evosax's legacy 2023
      mutation-feature contract), which :class:`metalab.bbo.LGA` reads, so no flag is needed;
    * anything else: a path to an ``.npz`` written by :func:`save_weights`.
    """
    key = str(name_or_path)
    if key == "les" and num_dims > HIGHD_THRESHOLD:
        key = "les-highd"
    if key in SHIPPED:
        path = WEIGHTS_DIR / f"{SHIPPED[key]}.npz"
        if not path.exists():
            raise FileNotFoundError(
                f"shipped {key} weights missing at {path}; train them with "
                f"`python -m metalab.bbo.metabbo --optimiser {key}`"
            )
    elif key in ("evosax-les", "evosax-lga"):
        return evosax_weights(key.split("-")[1], num_dims=num_dims)
    else:
        path = Path(key).with_suffix(".npz")
    with np.load(path) as data:
        return unflatten_dict({k: data[k] for k in data.files})


def n_params(net: dict) -> int:
    """Number of trainable numbers in a weights pytree (``sigma_offset`` is a constant)."""
    return int(sum(np.size(v) for k, v in flatten_dict(net).items() if k != "sigma_offset"))


def scale_recombination(net: dict, scale: float) -> dict:
    """LES weights whose recombination logits are ``scale`` times those of ``net``.

    LES recombines with ``w = softmax(A V)``, ``V = F W_v + b_v`` (:mod:`metalab.bbo.les`);
    multiplying ``W_v`` and ``b_v`` by ``scale`` gives ``w' = softmax(scale * A V)``: the same
    ranking of members, a flatter (``scale < 1``) or sharper (``> 1``) weight profile, i.e. an
    inverse temperature. ``b_v`` alone would cancel in the softmax (the attention rows sum to
    one); it is scaled so that ``W_v, b_v`` stay one linear map. The learning-rate network is
    unchanged. ``scale`` may be traced (``jax.vmap`` over scales works); a concrete one must be
    positive and finite.
    """
    if "recomb" not in net or "v" not in net["recomb"]:
        raise ValueError("scale_recombination needs LES weights (net['recomb']['v'])")
    if isinstance(scale, int | float) and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive finite number, got {scale!r}")
    scaled = {k: a * scale for k, a in net["recomb"]["v"].items()}
    return {**net, "recomb": {**net["recomb"], "v": scaled}}


def fold_sigma_offset(net: dict) -> dict:
    """Equivalent LGA weights with ``sigma_offset`` folded into the mutation biases.

    The range-normalised sigma feature is input 4 of the mutation attention; adding a
    constant ``c`` to it adds ``c W[4]`` to the query/key/value biases, so the folded
    weights compute the same function (to float rounding) with offset 0.
    """
    net = {k: v for k, v in net.items()}
    c = net.pop("sigma_offset", None)
    if c is None:
        return net
    att = {k: dict(v) if isinstance(v, dict) else v for k, v in net["mutation"]["att"].items()}
    for proj in ("q", "k", "v"):
        att[proj] = {"w": att[proj]["w"], "b": att[proj]["b"] + c * att[proj]["w"][4]}
    net["mutation"] = {**net["mutation"], "att": att}
    return net


def load_record(name: str) -> dict:
    """The JSON training record beside shipped weights (``"les"``, ``"les-highd"``, ``"lga"``)."""
    return json.loads((WEIGHTS_DIR / f"{SHIPPED[name]}.json").read_text())


def _dense(p: Any) -> dict:
    return {"w": jnp.asarray(p["kernel"]), "b": jnp.asarray(p["bias"])}


def _mha(p: Any) -> dict:
    return {
        "q": _dense(p["query"]),
        "k": _dense(p["key"]),
        "v": _dense(p["value"]),
        "out": _dense(p["out"]),
    }


def les_from_evosax(tree: Any) -> dict:
    """evosax LES flax params -> metalab layout.

    Dense_0/1/2 of the attention are keys/queries/values; of the MLP hidden/mean/std.
    """
    rw = tree["recomb_weights"]["params"]
    lr = tree["lrate_modulation"]["params"]
    return {
        "recomb": {
            "k": _dense(rw["Dense_0"]),
            "q": _dense(rw["Dense_1"]),
            "v": _dense(rw["Dense_2"]),
        },
        "lr": {
            "hidden": _dense(lr["Dense_0"]),
            "mean": _dense(lr["Dense_1"]),
            "std": _dense(lr["Dense_2"]),
        },
    }


def lga_from_evosax(tree: Any) -> dict:
    """evosax LGA flax params -> metalab layout."""
    sa = tree["sampling"]["params"]
    se = tree["selection"]["params"]
    mu = tree["mutation"]["params"]
    return {
        "sampling": {"att": _mha(sa["MultiHeadSelfAttention_0"]), "logit": _dense(sa["Dense_0"])},
        "selection": {
            "cross": _mha(se["MultiHeadCrossAttention_0"]),
            "q": _dense(se["Dense_0"]),
            "k": _dense(se["Dense_1"]),
        },
        "mutation": {"att": _mha(mu["MultiHeadSelfAttention_0"]), "log_var": _dense(mu["Dense_0"])},
    }


def evosax_weights(name: str, num_dims: int = 10) -> dict:
    """evosax 0.3.2's default shipped weights for ``"les"`` or ``"lga"`` in metalab's layout.

    For LGA evosax picks its v7 checkpoint when D > 50 and v4 otherwise; ``num_dims`` selects
    the same one, and the result carries ``sigma_offset = 2``: evosax's default LGA uses the
    *legacy* mutation-feature encoding (see :class:`metalab.bbo.lga.LGA`).
    """
    from evosax.algorithms import LearnedES, LearnedGA

    if name == "les":
        return les_from_evosax(LearnedES(2, jnp.zeros(num_dims)).les_params)
    if name == "lga":
        net = lga_from_evosax(LearnedGA(2, jnp.zeros(num_dims)).lga_params)
        return {**net, "sigma_offset": jnp.float32(2.0)}
    raise ValueError(f"name must be 'les' or 'lga', got {name!r}")
