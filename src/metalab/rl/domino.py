"""DOMiNO: diversity optimisation maintaining near-optimality (tabular, exact, all at once).

Zahavy, Schroecker, Behbahani, Baumli, Flennerhag, Hou, Singh (2022). "Discovering Policies with
DOMiNO: Diversity Optimization Maintaining Near Optimality", arXiv:2205.13521.

A set of ``n`` policies ``pi_i`` (here a latent-conditioned tabular policy: one logit table per
latent ``z = i``) with normalised successor features ``psi_i = sum_s d_i(s) phi(s)`` solves

    max  diversity(psi_1..psi_n)   s.t.   v_e(pi_i) >= alpha v*_e   for every i,

through a Lagrangian whose multipliers are bounded by a sigmoid, ``lambda_i = sigmoid(mu_i)``.
Policy ``i`` maximises the mixed reward

    r_i(s) = lambda_i r_e(s) + (1 - lambda_i) r_d^i(s),

and the multiplier minimises ``sigmoid(mu_i) (v_e(pi_i) - alpha v*)`` (so ``lambda_i`` grows
while the constraint is violated and shrinks while it holds). Latent 0 maximises ``r_e`` only
and its value is the estimate of ``v*`` (the paper's choice); the experiment checks against the
exact ``v*``. Diversity rewards (``j*`` = nearest other policy in SF space,
``l_i = ||psi_i - psi_j*||``):

    repulsive:        r_d^i(s) = phi(s) . (psi_i - psi_j*)                 (gradient of l_i^2 / 2)
    Van der Waals:    r_d^i(s) = (1 - (l_i / l0)^3) phi(s) . (psi_i - psi_j*)

The VdW reward repels below the target distance ``l0`` and attracts above it. All SFs inside a
reward are held fixed (a stop-gradient): the reward is optimised by policy improvement, not
differentiated through. Every value here is maximised except the multiplier loss (minimised).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metalab.rl import successor_features as sf
from metalab.rl.exact import TabularMDP

DIVERSITY = ("vdw", "repulsive")
MIXING = ("lagrange", "fixed", "none")
DIRECTIONS = ("npg", "pg")


class DominoParams(NamedTuple):
    """Traced hyperparameters.

    Attributes:
      alpha: optimality ratio in (0, 1]. l0: VdW target distance (> 0).
      policy_lr, multiplier_lr: step sizes (the multiplier uses Adam, as in the paper).
      fixed_lambda: the extrinsic weight used when ``mixing == "fixed"`` (a baseline with no
        constraint).
      mu_clip: ``mu`` is clipped to ``[-mu_clip, mu_clip]`` so that ``sigmoid`` never
        saturates (``lambda`` in ``[sigmoid(-mu_clip), sigmoid(mu_clip)]``).
    """

    alpha: jnp.ndarray
    l0: jnp.ndarray
    policy_lr: jnp.ndarray
    multiplier_lr: jnp.ndarray
    fixed_lambda: jnp.ndarray
    mu_clip: jnp.ndarray | float = 5.0


class DominoState(NamedTuple):
    """``logits[n, S, A]`` (latent-conditioned table), ``mu[n]`` and optimiser states."""

    logits: jnp.ndarray
    mu: jnp.ndarray
    policy_opt: optax.OptState
    multiplier_opt: optax.OptState


def nearest_neighbours(psi: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """For each row ``psi_i`` of ``[n, d]``, the index and distance of its nearest other row."""
    if psi.ndim != 2 or psi.shape[0] < 2:
        raise ValueError(f"psi must have shape [n >= 2, d]; got {psi.shape}")
    d2 = jnp.sum((psi[:, None, :] - psi[None, :, :]) ** 2, axis=-1)
    d2 = d2 + jnp.diag(jnp.full(psi.shape[0], jnp.inf))
    j = jnp.argmin(d2, axis=1)
    return j, jnp.sqrt(jnp.take_along_axis(d2, j[:, None], axis=1)[:, 0])


def pairwise_distances(psi: jnp.ndarray) -> jnp.ndarray:
    """``[n, n]`` Euclidean distances between SF rows."""
    return jnp.sqrt(jnp.maximum(jnp.sum((psi[:, None] - psi[None]) ** 2, axis=-1), 0.0))


def repulsive_reward(psi: jnp.ndarray, phi: jnp.ndarray) -> jnp.ndarray:
    """``r_d[i, s] = phi(s) . (psi_i - psi_j*)``: ``[n, S]`` (SFs held fixed)."""
    psi = jax.lax.stop_gradient(psi)
    j, _ = nearest_neighbours(psi)
    return (psi - psi[j]) @ phi.T


def van_der_waals_reward(psi: jnp.ndarray, phi: jnp.ndarray, l0) -> jnp.ndarray:
    """``r_d[i, s] = (1 - (l_i / l0)^3) phi(s) . (psi_i - psi_j*)``: ``[n, S]``."""
    psi = jax.lax.stop_gradient(psi)
    j, dist = nearest_neighbours(psi)
    return ((1.0 - (dist / l0) ** 3)[:, None] * (psi - psi[j])) @ phi.T


def diversity_reward(psi: jnp.ndarray, phi: jnp.ndarray, kind: str, l0=1.0) -> jnp.ndarray:
    """Dispatch on ``kind`` in ``("vdw", "repulsive")``."""
    if kind == "vdw":
        return van_der_waals_reward(psi, phi, l0)
    if kind == "repulsive":
        return repulsive_reward(psi, phi)
    raise ValueError(f"diversity must be one of {DIVERSITY}; got {kind!r}")


def multiplier_loss(mu: jnp.ndarray, v_e: jnp.ndarray, v_target, alpha) -> jnp.ndarray:
    """``sum_i sigmoid(mu_i) (v_e,i - alpha v_target)`` — minimised by the multipliers.

    Its gradient ``sigmoid'(mu_i) (v_e,i - alpha v*)`` is negative while the constraint is
    violated, so gradient descent raises ``lambda_i = sigmoid(mu_i)`` toward the extrinsic
    reward; ``lambda`` stays in (0, 1) by construction.
    """
    gap = jax.lax.stop_gradient(v_e - alpha * v_target)
    return jnp.sum(jax.nn.sigmoid(mu) * gap)


def multiplier_optimizer(lr) -> optax.GradientTransformation:
    """Adam on ``mu`` (its normalised steps do not vanish where ``sigmoid'`` is small)."""
    return optax.adam(lr)


def mixed_reward(lam: jnp.ndarray, r_e: jnp.ndarray, r_d: jnp.ndarray) -> jnp.ndarray:
    """``r_i = lambda_i r_e + (1 - lambda_i) r_d^i``: ``lam[n]``, ``r_e[S]``, ``r_d[n, S]``."""
    return lam[:, None] * r_e[None, :] + (1.0 - lam[:, None]) * r_d


def improvement_direction(
    mdp: TabularMDP, logits: jnp.ndarray, rewards: jnp.ndarray, direction: str
) -> jnp.ndarray:
    """Ascent directions for ``n`` policies, each on its own state reward: ``[n, S, A]``."""
    if direction == "npg":
        f = lambda th, r: sf.natural_direction(mdp.P, th, r, mdp.gamma)
    elif direction == "pg":
        f = lambda th, r: sf.policy_gradient(mdp.P, th, r, mdp.d0, mdp.gamma)
    else:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")
    return jax.vmap(f)(logits, jax.lax.stop_gradient(rewards))


def evaluate(mdp: TabularMDP, logits: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Normalised SFs ``[n, d]`` and extrinsic values ``[n]`` of the ``n`` softmax policies."""
    pis = sf.softmax_policy(logits)
    psi = jax.vmap(lambda p: sf.expected_successor_features(mdp.P, p, mdp.phi, mdp.d0, mdp.gamma))(
        pis
    )
    v = jax.vmap(lambda p: sf.normalised_value(mdp.P, p, mdp.r, mdp.d0, mdp.gamma))(pis)
    return psi, v


def init(
    key: jax.Array,
    mdp: TabularMDP,
    n_policies: int,
    params: DominoParams,
    init_scale: float = 1.0,
    mu_init: float = 0.0,
) -> DominoState:
    """Random logits ``init_scale * N(0, 1)`` per latent, ``mu = mu_init`` (0: ``lambda = 1/2``).

    A negative ``mu_init`` starts with the diversity reward in charge and lets the multipliers
    rise only where the constraint is violated: the linear diversity rewards vanish between
    identical SFs, so policies that all collapse on the optimum first cannot separate later.
    """
    if n_policies < 2:
        raise ValueError(f"n_policies must be >= 2; got {n_policies}")
    S, A = mdp.P.shape[:2]
    logits = init_scale * jax.random.normal(key, (n_policies, S, A))
    mu = jnp.full(n_policies, mu_init, dtype=jnp.float32)
    return DominoState(
        logits,
        mu,
        optax.sgd(params.policy_lr).init(logits),
        multiplier_optimizer(params.multiplier_lr).init(mu),
    )


def update(
    state: DominoState,
    mdp: TabularMDP,
    params: DominoParams,
    diversity: str = "vdw",
    mixing: str = "lagrange",
    direction: str = "npg",
    v_target=None,
) -> tuple[DominoState, dict[str, jnp.ndarray]]:
    """One simultaneous step of all policies and multipliers.

    ``mixing``: ``"lagrange"`` (DOMiNO), ``"fixed"`` (``lambda_i = fixed_lambda``, no
    constraint) or ``"none"`` (every policy maximises ``r_e`` alone: independent seeds).
    If ``v_target`` is None (the paper's choice), latent 0 maximises ``r_e`` alone and its
    value is the target ``v*``; otherwise ``v_target`` (e.g. the exact optimum) is the target
    and every latent, latent 0 included, seeks diversity. Returns the new state and
    ``{"psi", "value", "lambda"}`` at the pre-update iterate.
    """
    if mixing not in MIXING:
        raise ValueError(f"mixing must be one of {MIXING}; got {mixing!r}")
    psi, v_e = evaluate(mdp, state.logits)
    n = psi.shape[0]
    r_d = diversity_reward(psi, mdp.phi, diversity, params.l0)
    if mixing == "lagrange":
        lam = jax.nn.sigmoid(state.mu)
    elif mixing == "fixed":
        lam = jnp.full(n, params.fixed_lambda)
    else:
        lam = jnp.ones(n)
    if v_target is None:
        lam = lam.at[0].set(1.0)
        v_target = v_e[0]
    rewards = mixed_reward(lam, mdp.r, r_d)
    g = improvement_direction(mdp, state.logits, rewards, direction)
    popt, mopt = optax.sgd(params.policy_lr), multiplier_optimizer(params.multiplier_lr)
    u, policy_opt = popt.update(-g, state.policy_opt)  # optax descends: negate the ascent
    gmu = jax.grad(multiplier_loss)(state.mu, v_e, v_target, params.alpha)
    umu, multiplier_opt = mopt.update(gmu, state.multiplier_opt)
    mu = jnp.clip(state.mu + umu, -params.mu_clip, params.mu_clip)
    new = DominoState(state.logits + u, mu, policy_opt, multiplier_opt)
    return new, {"psi": psi, "value": v_e, "lambda": lam}


def make_train(
    n_policies: int,
    steps: int,
    diversity: str = "vdw",
    mixing: str = "lagrange",
    direction: str = "npg",
    init_scale: float = 1.0,
    mu_init: float = 0.0,
):
    """``train(key, mdp, params, v_target=None) -> (final DominoState, per-step info)``.

    One ``lax.scan`` over ``steps`` calls of :func:`update`.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")
    for name, val, allowed in (
        ("diversity", diversity, DIVERSITY),
        ("mixing", mixing, MIXING),
        ("direction", direction, DIRECTIONS),
    ):
        if val not in allowed:
            raise ValueError(f"{name} must be one of {allowed}; got {val!r}")

    def train(key: jax.Array, mdp: TabularMDP, params: DominoParams, v_target=None):
        state = init(key, mdp, n_policies, params, init_scale, mu_init)

        def body(s, _):
            return update(s, mdp, params, diversity, mixing, direction, v_target)

        return jax.lax.scan(body, state, None, steps)

    return train
