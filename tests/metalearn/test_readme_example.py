"""The README's metalearn example runs as written, and Leap's initialisation learns new tasks
faster than the random one it started from."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_metalearn_example_runs():
    m = re.search(r"<!-- example: metalearn -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert m, "README lost its metalearn example"
    ns: dict = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(m.group(1), "README.md:metalearn", "exec"), ns)
    assert "AUC on new tasks" in out.getvalue()
    assert ns["auc"](ns["state"].params) < 0.5 * ns["auc"](ns["init"])
