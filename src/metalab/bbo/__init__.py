"""metalab.bbo: learned black-box optimisers (LES, LGA, DES) and MetaBBO meta-training.

All optimisers minimise fitness and follow evosax's ``init`` / ``ask`` / ``tell`` API.
See ``docs/bbo.md``.
"""

from metalab.bbo.des import DES, DESParams, DESState
from metalab.bbo.les import LES, LESParams, LESState
from metalab.bbo.lga import LGA, LGAParams, LGAState
from metalab.bbo.weights import evosax_weights, load_weights, save_weights

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
    "load_weights",
    "save_weights",
]
