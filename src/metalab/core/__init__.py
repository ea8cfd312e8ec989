"""metalab.core: shared mechanisms named for what they do (never for a paper).

* :mod:`metalab.core.pytree` — tree helpers (optax.tree_utils plus stacking/indexing/finiteness).
* :mod:`metalab.core.inner_loop` — differentiable inner loops (``lax.scan``, truncation).
* :mod:`metalab.core.bootstrap` — bootstrapped targets and matching functions.
* :mod:`metalab.core.stats` — summaries, confidence intervals, tests, ANOVA.
* :mod:`metalab.core.checks` — declared rules and the toolkit every verdict is built from.
"""

# Submodules are imported on use (``from metalab.core import checks``), keeping import light.
__all__ = ["bootstrap", "checks", "inner_loop", "pytree", "stats"]
