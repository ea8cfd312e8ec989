r"""Contextual meta-gradients (Luketina et al. 2022, "Meta-Gradients in Non-Stationary
Environments", CoLLAs, arXiv:2209.06159).

Instead of meta-learning constant hyperparameters, meta-learn a *function* of context features
:math:`c_t` that carry information about the agent's performance and about changes in the
environment:

.. math::
   \beta_t = \beta_{\max}\,\sigma(w_\beta^\top (m \odot c_t)), \qquad
   \alpha_t = \alpha_{\max}\,\sigma(w_\alpha^\top (m \odot c_t)),

with :math:`\phi = (w_\beta, w_\alpha)` learned by meta-gradients (standard, or BMG) through the
actor-critic update (:mod:`metalab.metagrad.meta_ac`), and a mask :math:`m` choosing which
features the learner sees. The features (``meta_ac.CONTEXT_NAMES``) are: a bias, a fast
exponential average of the reward, the difference between fast and slow averages (a change
signal), the mean absolute TD error, the normalised policy entropy, and the time since the last
scheduled change as a fraction of the period.

Context levels (masks): ``"none"`` (bias only: a plain meta-gradient, constant but learned
hyperparameters), ``"performance"`` (+ reward and change signal), ``"full"`` (everything).
The fixed-hyperparameter baseline is :func:`metalab.metagrad.meta_ac.make_train` with
``mode="fixed"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from metalab.metagrad.meta_ac import CONTEXT_NAMES, NUM_CONTEXT
from metalab.rl.actor_critic import ACHyper

__all__ = ["CONTEXT_LEVELS", "context_mask", "init_phi", "make_hyper_fn", "recovery_return"]

CONTEXT_LEVELS = {
    "none": ("bias",),
    "performance": ("bias", "reward_fast", "reward_change"),
    "full": CONTEXT_NAMES,
}


def context_mask(level: str) -> jnp.ndarray:
    """The [NUM_CONTEXT] 0/1 mask of a context level (``"none"``, ``"performance"``, ``"full"``)."""
    if level not in CONTEXT_LEVELS:
        raise ValueError(f"context level must be one of {tuple(CONTEXT_LEVELS)}, got {level!r}")
    on = set(CONTEXT_LEVELS[level])
    return jnp.array([1.0 if n in on else 0.0 for n in CONTEXT_NAMES], jnp.float32)


def _logit(x: float) -> float:
    return float(np.log(x / (1.0 - x)))


def init_phi(entropy: float, lr: float, entropy_max: float, lr_max: float) -> dict:
    """Weights that output exactly ``(entropy, lr)`` for any context (only the bias is non-zero)."""
    for name, v, vmax in (("entropy", entropy, entropy_max), ("lr", lr, lr_max)):
        if not 0.0 < v < vmax:
            raise ValueError(f"{name}={v} must be in (0, {name}_max={vmax})")
    w = np.zeros((2, NUM_CONTEXT), np.float32)
    w[0, 0] = _logit(entropy / entropy_max)
    w[1, 0] = _logit(lr / lr_max)
    return {"w": jnp.asarray(w)}


def make_hyper_fn(base: ACHyper, entropy_max: float, lr_max: float):
    """``hyper_fn(phi, context) -> ACHyper``: entropy weight and step size as functions of context.

    ``context`` arrives already masked (``meta_ac`` multiplies by the mask). Discount and value
    weight stay at ``base``.
    """

    def hyper_fn(phi, ctx):
        z = phi["w"] @ ctx
        return base._replace(
            entropy=entropy_max * jax.nn.sigmoid(z[0]),
            lr=lr_max * jax.nn.sigmoid(z[1]),
        )

    return hyper_fn


def recovery_return(reward: jnp.ndarray, change_every: int, window: int) -> jnp.ndarray:
    """Mean reward over the ``window`` meta-steps after each change (changes every
    ``change_every`` meta-steps, the first at ``change_every``): higher = faster recovery."""
    T = reward.shape[0]
    starts = np.arange(change_every, T - window + 1, change_every)
    if starts.size == 0:
        raise ValueError(
            f"no change with a full window: T={T}, change_every={change_every}, window={window}"
        )
    idx = starts[:, None] + np.arange(window)[None, :]
    return jnp.mean(reward[idx])
