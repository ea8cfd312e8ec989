"""The README's metalearn example runs as written (and its meta-training lowers the loss)."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metalearn_example_runs():
    text = README.read_text()
    m = re.search(r"<!-- example: metalearn -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its metalearn example"
    code = m.group(1)
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md:metalearn", "exec"), ns)
    first = float(
        ns["learner"].update(
            ns["learner"].init(ns["mlp_init"](ns["jax"].random.PRNGKey(0), (1, 40, 40, 1)), None),
            None,
            ns["tasks"],
        )[1]["loss"]
    )
    assert "loss after 20 inner steps" in out.getvalue()
    # 100 Leap meta-steps leave a better initialisation than the random one on the same tasks
    assert float(ns["info"]["loss"]) < first
