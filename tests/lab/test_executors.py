"""Seed chunking, keys and the NaN locator used by the executors."""

import jax
import numpy as np

from metalab.core.pytree import first_nonfinite
from metalab.lab.executors import chunk_seeds, default_chunk, seed_keys


def test_default_chunk_balances_and_respects_cap():
    assert default_chunk(8) == 8
    assert default_chunk(10) == 5  # two equal calls rather than 8 + a padded 2
    assert default_chunk(8, cap=2) == 2
    assert default_chunk(3, cap=2) == 2
    assert chunk_seeds([0, 1, 2, 3, 4], 2) == [[0, 1], [2, 3], [4]]


def test_seed_key_is_independent_of_chunking():
    keys = seed_keys([3, 5])
    np.testing.assert_array_equal(keys[1], jax.random.PRNGKey(5))


def test_first_nonfinite_reports_metric_and_step():
    m = {"a/x": np.arange(5.0), "b/y": np.array([0.0, 1.0, np.inf, np.nan]), "c": np.float64(1)}
    assert first_nonfinite(m) == ("b/y", 2)
    assert first_nonfinite({"s": np.float32(np.nan)}) == ("s", 0)
    assert first_nonfinite({"i": np.arange(3)}) is None
