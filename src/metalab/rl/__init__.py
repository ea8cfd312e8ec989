"""metalab.rl: environments, agents and one module per method (see docs/diversity-constraints.md).

The tabular-MDP type and exact evaluation shared by every tabular method live in
:mod:`metalab.rl.exact`; method modules (``domino``, ``diverse_sf``, ``reload``, ``tdu``, ...)
are imported by name, e.g. ``from metalab.rl import reload``.
"""

from metalab.rl import exact
from metalab.rl.exact import TabularMDP

__all__ = ["TabularMDP", "exact"]
