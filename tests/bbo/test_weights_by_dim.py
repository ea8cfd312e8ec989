"""Shipped LES checkpoint chosen by dimension: low-D weights up to D 100, high-D above."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from metalab.bbo import LES, load_weights
from metalab.bbo.weights import HIGHD_THRESHOLD, WEIGHTS_DIR, load_record


def _flat(net: dict) -> np.ndarray:
    return np.asarray(ravel_pytree(net)[0])


def test_checkpoint_switches_above_d_100():
    low = _flat(load_weights(WEIGHTS_DIR / "les_metalab.npz"))
    high = _flat(load_weights(WEIGHTS_DIR / "les_metalab_highd.npz"))
    assert HIGHD_THRESHOLD == 100 and low.shape == high.shape == (246,)
    assert not np.allclose(low, high)
    np.testing.assert_array_equal(_flat(load_weights("les")), low)  # default num_dims 10
    np.testing.assert_array_equal(_flat(load_weights("les", num_dims=100)), low)
    np.testing.assert_array_equal(_flat(load_weights("les", num_dims=101)), high)
    np.testing.assert_array_equal(_flat(load_weights("les-highd")), high)
    np.testing.assert_array_equal(_flat(LES(8, 100).weights), low)
    np.testing.assert_array_equal(_flat(LES(8, 101).weights), high)
    # a pytree solution counts its leaves' sizes: 60 + 60 > 100
    np.testing.assert_array_equal(_flat(LES(8, [jnp.zeros(60), jnp.zeros(60)]).weights), high)
    rec = load_record("les-highd")
    assert min(s[0] for s in rec["config"]["sizes"]) > HIGHD_THRESHOLD
    assert rec["generations_completed"] >= 1 and rec["wall_time_s"] > 0


def test_high_d_les_jits_and_vmaps_over_weights():
    n, d = 8, 150
    es = LES(n, d)
    params = es.default_params

    @jax.jit
    def run(net, key):
        p = params.replace(net=net)
        s = es.init(key, jnp.ones(d), p)
        for k in jax.random.split(key, 3):
            x, s = es.ask(k, s, p)
            s, _ = es.tell(k, x, jnp.sum(x**2, axis=1), s, p)
        return s.mean

    nets = jax.tree.map(lambda a: jnp.stack([a, 0.9 * a]), es.weights)
    means = jax.vmap(run, in_axes=(0, None))(nets, jax.random.PRNGKey(0))
    assert means.shape == (2, d) and bool(jnp.all(jnp.isfinite(means)))
    np.testing.assert_allclose(means[0], run(es.weights, jax.random.PRNGKey(0)), atol=1e-4)
