"""The README's metagrad example runs as written, and BMG grows the step size stably."""

from __future__ import annotations


def test_readme_metagrad_example_runs(readme_example):
    ns, printed = readme_example("metagrad")
    assert "step size 0.01 ->" in printed
    lr = float(ns["jnp"].exp(ns["log_lr"]))
    # the bootstrapped target lies further along: the step grows, and stays below 2 / L = 0.2
    assert 0.01 < lr < 0.2
    assert float(ns["f"](ns["x"], None)) < 0.1 * 5.5  # f(x_0) = 5.5
