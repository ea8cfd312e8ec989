"""The README's metagrad example runs as written, and BMG grows the step size stably."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metagrad_example_runs():
    text = README.read_text()
    m = re.search(r"<!-- example: metagrad -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its metagrad example"
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(m.group(1), "README.md:metagrad", "exec"), ns)
    assert "step size 0.01 ->" in out.getvalue()
    lr = float(ns["jnp"].exp(ns["log_lr"]))
    # the bootstrapped target lies further along: the step grows, and stays below 2 / L = 0.2
    assert 0.01 < lr < 0.2
    assert float(ns["f"](ns["x"], None)) < 0.1 * 5.5  # f(x_0) = 5.5
