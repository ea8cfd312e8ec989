"""metalab.bbo: learned black-box optimisers (LES, LGA, DES) and MetaBBO meta-training.

All optimisers minimise fitness and subclass evosax's algorithm base classes, so they follow
evosax's ``init`` / ``ask`` / ``tell`` API and return evosax's metrics from every ``tell``.
See ``docs/bbo.md``.
"""

from metalab.bbo.base import init_state, is_population_based
from metalab.bbo.des import DES, DESParams, DESState
from metalab.bbo.les import LES, LESParams, LESState
from metalab.bbo.lga import LGA, LGAParams, LGAState
from metalab.bbo.weights import (
    evosax_weights,
    load_weights,
    n_params,
    save_weights,
    scale_recombination,
)

__all__ = [
    "DES",
    "DESParams",
    "DESState",
    "LES",
    "LESParams",
    "LESState",
    "LGA",
    "LGAParams",
    "LGAState",
    "evosax_weights",
    "init_state",
    "is_population_based",
    "load_weights",
    "n_params",
    "save_weights",
    "scale_recombination",
]
