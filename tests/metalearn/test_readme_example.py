"""The README's metalearn example runs as written, and Leap's initialisation learns new tasks
faster than the random one it started from."""

from __future__ import annotations


def test_readme_metalearn_example_runs(readme_example):
    ns, printed = readme_example("metalearn")
    assert "AUC on new tasks" in printed
    assert ns["auc"](ns["state"].params) < 0.5 * ns["auc"](ns["init"])
