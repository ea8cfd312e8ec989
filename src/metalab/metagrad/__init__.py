"""metalab.metagrad: online meta-gradients.

One protocol (see ``docs/metagrad-rl.md``): a meta-gradient method is a factory that fixes its
hyper-parameters and returns pure functions, a :class:`MetaGradient` ``(meta_loss,
meta_grad)``; a whole run is ``make_train(config, ...) -> train(...)``, one ``lax.scan``,
whose traced hyper-parameters are a ``*Params`` pytree (static choices: a frozen ``*Config``).

* :mod:`~metalab.metagrad.bmg` — standard meta-gradient and bootstrapped meta-gradients (BMG);
* :mod:`~metalab.metagrad.meta_ac` — a meta-gradient actor-critic lifetime;
* :mod:`~metalab.metagrad.contextual` — meta-parameters as functions of context features;
* :mod:`~metalab.metagrad.bmg_epsilon` — BMG for an epsilon-greedy Q-learner's epsilon;
* :mod:`~metalab.metagrad.optimistic` — optimisation as meta-learning, optimistic FTRL via BMG;
* :mod:`~metalab.metagrad.accelerated_pg` — optimistic / adaptive policy optimisation;
* :mod:`~metalab.metagrad.problems` — convex test problems with known optima.
"""

from metalab.metagrad import (
    accelerated_pg,
    bmg,
    bmg_epsilon,
    contextual,
    meta_ac,
    optimistic,
    problems,
)
from metalab.metagrad.bmg import MetaGradient, meta_gradient

__all__ = [
    "MetaGradient",
    "accelerated_pg",
    "bmg",
    "bmg_epsilon",
    "contextual",
    "meta_ac",
    "meta_gradient",
    "optimistic",
    "problems",
]
