"""metalab.rl.envs: pure-JAX environments and tabular MDP families.

Tabular families return :class:`metalab.rl.exact.TabularMDP` (``garnet.make_garnet``,
``cmdp.random_cmdp``, ``diversity_grid.diversity_grid``); sampled environments follow gymnax's
``reset(key, params)`` / ``step(key, state, action, params)`` (``two_colours.TwoColours``,
``diversity_grid.grid_env``). Import modules by name, e.g.
``from metalab.rl.envs import two_colours``.
"""

from metalab.rl.envs import cmdp, diversity_grid, garnet, two_colours

__all__ = ["cmdp", "diversity_grid", "garnet", "two_colours"]
