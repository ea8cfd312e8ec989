"""The README's models example runs as written and the LM it trains beats the uniform model."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_models_example_runs():
    m = re.search(r"<!-- example: models -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert m, "README lost its models example"
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(m.group(1), "README.md:models", "exec"), ns)
    assert "validation perplexity" in out.getvalue()
    assert ns["logits"].shape == (ns["data"].valid.shape[0], 10, 16)
    assert np.all(np.asarray(ns["info"]["val_ppl"][:, -1]) < 16.0)  # better than uniform
