"""The README's models example runs as written and the LM it trains beats the uniform model."""

from __future__ import annotations

import numpy as np


def test_readme_models_example_runs(readme_example):
    ns, printed = readme_example("models")
    assert "validation perplexity" in printed
    assert ns["logits"].shape == (ns["data"].valid.shape[0], 10, 16)
    assert np.all(np.asarray(ns["info"]["val_ppl"][:, -1]) < 16.0)  # better than uniform
