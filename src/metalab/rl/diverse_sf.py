"""Diverse Successive Policies: add near-optimal policies one at a time, diverse in SF space.

Zahavy, O'Donoghue, Barreto, Mnih, Flennerhag, Singh (2021). "Discovering Diverse Nearly
Optimal Policies with Successor Features", arXiv:2106.00669.

Policy 0 maximises the extrinsic reward. Policy ``k >= 1`` is trained against the *frozen*
set ``{pi_0 .. pi_{k-1}}`` (normalised SFs ``psi_j``, occupancies ``d_j``) to maximise a
diversity reward subject to ``v_e(pi_k) >= alpha v*``, through the same sigmoid-bounded
Lagrangian as DOMiNO (:mod:`metalab.rl.domino`): ``r = lambda r_e + (1 - lambda) r_d``,
``lambda = sigmoid(mu)``, ``mu`` minimising ``sigmoid(mu) (v_e - alpha v*)``. Diversity rewards
(all maximised, all held fixed inside a policy-improvement step):

* ``"sf"`` — explicit SF correlation (the paper's proposal): ``r_d(s) = -phi(s) . psi_j*``,
  ``j* = argmax_{j<k} psi_k . psi_j``, i.e. minimise the largest correlation with the set;
* ``"robust"`` — the worst-case reward of the set (SMP, Zahavy et al. 2021):
  ``w* = argmin_{||w||_2 <= 1} max_{j<k} psi_j . w = -c / ||c||`` with ``c`` the min-norm point
  of the convex hull of ``{psi_j}``; ``r_d(s) = phi(s) . w*``;
* ``"discriminator"`` — DIAYN-style ``r_d(s) = log q(k|s) - log(1/(k+1))`` with the
  Bayes-optimal state discriminator ``q(k|s) = d_k(s) / sum_{j<=k} d_j(s)`` (exact occupancies,
  smoothed by ``eps``): an idealised discriminator;
* ``"learned_discriminator"`` — the same reward with a *learned* discriminator, as in the paper:
  a softmax-linear classifier ``q_W(j|s) = softmax_j(W [phi(s), 1])`` over the skills of the set
  and the new policy, trained online (Adam, ``disc_lr``, one step per policy step) on the
  cross-entropy ``-(1/(m+1)) sum_j sum_s d_j(s) log q_W(j|s)`` (the occupancies weight the
  states, as samples from each skill would). It sees only the features ``phi``, so with
  low-dimensional features it cannot separate every state.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from metalab.rl import domino as dm
from metalab.rl import successor_features as sf
from metalab.rl.exact import TabularMDP

REWARDS = ("sf", "robust", "discriminator", "learned_discriminator")


class DiverseSFParams(NamedTuple):
    """Traced hyperparameters: optimality ratio, step sizes (Adam for ``mu``), discriminator
    smoothing and the clip of ``mu`` (see :class:`metalab.rl.domino.DominoParams`)."""

    alpha: jnp.ndarray
    policy_lr: jnp.ndarray
    multiplier_lr: jnp.ndarray
    eps: jnp.ndarray
    mu_clip: jnp.ndarray | float = 5.0
    disc_lr: jnp.ndarray | float = 0.05


class DiverseSFState(NamedTuple):
    """The growing set: ``logits[n, S, A]``, SFs ``psi[n, d]``, occupancies ``occ[n, S]``,
    extrinsic values ``value[n]`` and ``mask[n]`` (1 for policies already in the set)."""

    logits: jnp.ndarray
    psi: jnp.ndarray
    occ: jnp.ndarray
    value: jnp.ndarray
    mask: jnp.ndarray


def min_norm_point(points: jnp.ndarray, mask: jnp.ndarray, iters: int = 200) -> jnp.ndarray:
    """Min-norm point of the convex hull of the masked rows of ``points`` (Frank-Wolfe).

    Minimises ``||a^T points||^2`` over the simplex restricted to ``mask``; exact line search.
    """
    mask = mask.astype(points.dtype)
    a0 = mask / jnp.maximum(mask.sum(), 1.0)

    def body(_, a):
        c = a @ points
        grad = points @ c
        j = jnp.argmin(jnp.where(mask > 0, grad, jnp.inf))
        d = points[j] - c
        t = jnp.clip(-(c @ d) / jnp.maximum(d @ d, 1e-12), 0.0, 1.0)
        return (1 - t) * a + t * jax.nn.one_hot(j, points.shape[0], dtype=points.dtype)

    a = jax.lax.fori_loop(0, iters, body, a0)
    return a @ points


def robust_weights(psi_set: jnp.ndarray, mask: jnp.ndarray, iters: int = 200) -> jnp.ndarray:
    """Worst-case reward of a set: ``argmin_{||w|| <= 1} max_j psi_j . w = -c / ||c||``."""
    c = min_norm_point(psi_set, mask, iters)
    return -c / jnp.maximum(jnp.linalg.norm(c), 1e-12)


def sf_correlation_reward(psi_k, psi_set, mask, phi) -> jnp.ndarray:
    """``r_d(s) = -phi(s) . psi_j*`` with ``j*`` the set member most correlated with ``psi_k``."""
    corr = jnp.where(mask > 0, psi_set @ jax.lax.stop_gradient(psi_k), -jnp.inf)
    return -phi @ psi_set[jnp.argmax(corr)]


def discriminator_reward(occ_k, occ_set, mask, eps) -> jnp.ndarray:
    """``r_d = log q(k|s) + log(m + 1)`` with the smoothed Bayes discriminator

    ``q(k|s) = (d_k + eps) / (d_k + sum_{j in set} d_j + (m + 1) eps)``.

    ``m`` is the number of set members; ``q`` is the Bayes-optimal discriminator over states
    under a uniform prior on the ``m + 1`` skills.
    """
    occ_k = jax.lax.stop_gradient(occ_k)
    m = jnp.sum(mask)
    tot = occ_k + mask @ occ_set
    return jnp.log(occ_k + eps) - jnp.log(tot + (m + 1) * eps) + jnp.log(m + 1)


def discriminator_logits(W: jnp.ndarray, phi: jnp.ndarray, present: jnp.ndarray) -> jnp.ndarray:
    """``[S, n]`` log-probabilities ``log q_W(j|s)`` of a softmax-linear discriminator on
    ``[phi(s), 1]`` over the skills with ``present[j] = 1`` (absent skills get ``-inf``)."""
    feats = jnp.concatenate([phi, jnp.ones((phi.shape[0], 1), phi.dtype)], axis=1)
    z = feats @ W.T
    z = jnp.where(present[None, :] > 0, z, -1e9)
    return jax.nn.log_softmax(z, axis=-1)


def discriminator_loss(W, phi, occ_all: jnp.ndarray, present: jnp.ndarray) -> jnp.ndarray:
    """Cross-entropy ``-(1/m') sum_j present_j sum_s occ_j(s) log q_W(j|s)`` (minimised)."""
    logq = discriminator_logits(W, phi, present)  # [S, n]
    ll = jnp.sum(occ_all * logq.T, axis=1)  # [n]
    return -jnp.sum(present * ll) / jnp.maximum(jnp.sum(present), 1.0)


def learned_discriminator_reward(W, phi, present, k) -> jnp.ndarray:
    """``r_d(s) = log q_W(k|s) + log m'`` with ``m'`` the number of present skills."""
    logq = discriminator_logits(jax.lax.stop_gradient(W), phi, present)
    return logq[:, k] + jnp.log(jnp.sum(present))


def diversity_reward(kind: str, psi_k, occ_k, state: DiverseSFState, phi, eps, w_robust=None):
    """Dispatch on ``kind`` in :data:`REWARDS`; returns the state reward ``[S]``."""
    if kind == "sf":
        return sf_correlation_reward(psi_k, state.psi, state.mask, phi)
    if kind == "robust":
        w = robust_weights(state.psi, state.mask) if w_robust is None else w_robust
        return phi @ w
    if kind == "discriminator":
        return discriminator_reward(occ_k, state.occ, state.mask, eps)
    raise ValueError(f"reward must be one of {REWARDS}; got {kind!r}")


def train_policy(
    key: jax.Array,
    mdp: TabularMDP,
    state: DiverseSFState,
    params: DiverseSFParams,
    v_target,
    kind: str | None,
    steps: int,
    init_scale: float = 1.0,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Train one new policy against the frozen set (``kind=None``: extrinsic reward only).

    Natural policy gradient steps on ``lambda r_e + (1 - lambda) r_d`` with the multiplier
    (and, for ``"learned_discriminator"``, the discriminator) updated simultaneously. The new
    policy is member ``k = sum(state.mask)``. Returns the final logits ``[S, A]`` and the
    ``lambda`` trace.
    """
    S, A = mdp.P.shape[:2]
    n = state.mask.shape[0]
    logits0 = init_scale * jax.random.normal(key, (S, A))
    w_robust = robust_weights(state.psi, state.mask) if kind == "robust" else None
    k = jnp.sum(state.mask).astype(jnp.int32)
    present = state.mask.at[k].set(1.0)

    mopt = dm.multiplier_optimizer(params.multiplier_lr)
    dopt = optax.adam(params.disc_lr)
    W0 = jnp.zeros((n, mdp.phi.shape[1] + 1))

    def body(carry, _):
        logits, mu, mstate, W, dstate = carry
        pi = sf.softmax_policy(logits)
        occ = sf.state_occupancy(mdp.P, pi, mdp.d0, mdp.gamma)
        psi = occ @ mdp.phi
        v = occ @ sf.policy_reward(mdp.r, pi)
        if kind == "learned_discriminator":
            occ_all = state.occ.at[k].set(jax.lax.stop_gradient(occ))
            gW = jax.grad(discriminator_loss)(W, mdp.phi, occ_all, present)
            uW, dstate = dopt.update(gW, dstate)
            W = W + uW
        if kind is None:
            lam, reward = jnp.ones(()), mdp.r
        else:
            lam = jax.nn.sigmoid(mu)
            if kind == "learned_discriminator":
                r_d = learned_discriminator_reward(W, mdp.phi, present, k)
            else:
                r_d = diversity_reward(kind, psi, occ, state, mdp.phi, params.eps, w_robust)
            reward = lam * mdp.r + (1.0 - lam) * r_d
        g = sf.natural_direction(mdp.P, logits, jax.lax.stop_gradient(reward), mdp.gamma)
        gmu = jax.grad(dm.multiplier_loss)(mu, v, v_target, params.alpha)
        umu, mstate = mopt.update(gmu, mstate)
        mu = jnp.clip(mu + umu, -params.mu_clip, params.mu_clip)
        return (logits + params.policy_lr * g, mu, mstate, W, dstate), lam

    mu0 = jnp.zeros(())
    init = (logits0, mu0, mopt.init(mu0), W0, dopt.init(W0))
    (logits, *_), lam_t = jax.lax.scan(body, init, None, steps)
    return logits, lam_t


def add_policy(state: DiverseSFState, mdp: TabularMDP, k, logits: jnp.ndarray) -> DiverseSFState:
    """Insert ``logits`` as member ``k`` of the set (SFs, occupancy and value computed exactly)."""
    pi = sf.softmax_policy(logits)
    occ = sf.state_occupancy(mdp.P, pi, mdp.d0, mdp.gamma)
    return DiverseSFState(
        state.logits.at[k].set(logits),
        state.psi.at[k].set(occ @ mdp.phi),
        state.occ.at[k].set(occ),
        state.value.at[k].set(occ @ sf.policy_reward(mdp.r, pi)),
        state.mask.at[k].set(1.0),
    )


def make_train(n_policies: int, steps: int, kind: str, init_scale: float = 1.0):
    """``train(key, mdp, params, v_target) -> DiverseSFState``: policy 0 on ``r_e``, then
    ``n_policies - 1`` successive diverse policies (an outer ``lax.scan`` over members)."""
    if kind not in REWARDS:
        raise ValueError(f"reward must be one of {REWARDS}; got {kind!r}")
    if n_policies < 2:
        raise ValueError(f"n_policies must be >= 2; got {n_policies}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1; got {steps}")

    def train(key: jax.Array, mdp: TabularMDP, params: DiverseSFParams, v_target):
        S, A = mdp.P.shape[:2]
        d = mdp.phi.shape[1]
        n = n_policies
        empty = DiverseSFState(
            jnp.zeros((n, S, A)), jnp.zeros((n, d)), jnp.zeros((n, S)), jnp.zeros(n), jnp.zeros(n)
        )
        keys = jax.random.split(key, n)
        logits0, _ = train_policy(keys[0], mdp, empty, params, v_target, None, steps, init_scale)
        state = add_policy(empty, mdp, 0, logits0)

        def body(st, inp):
            k, kk = inp
            logits, lam_t = train_policy(kk, mdp, st, params, v_target, kind, steps, init_scale)
            return add_policy(st, mdp, k, logits), lam_t[-1]

        state, lam_final = jax.lax.scan(body, state, (jnp.arange(1, n), keys[1:]))
        return state, lam_final

    return train


def count_distinct_near_optimal(
    psi: jnp.ndarray, value: jnp.ndarray, v_star, alpha, threshold, tol: float = 0.0
) -> jnp.ndarray:
    """Greedy count, in order of addition, of policies with ``v >= (alpha - tol) v*`` whose SF
    distance to every previously counted policy is at least ``threshold``."""
    n = psi.shape[0]
    ok = value >= (alpha - tol) * v_star

    def body(counted, i):
        dist = jnp.linalg.norm(psi - psi[i], axis=1)
        far = jnp.all(jnp.where(counted > 0, dist >= threshold, True))
        take = ok[i] & far
        return counted.at[i].set(take.astype(psi.dtype)), None

    counted, _ = jax.lax.scan(body, jnp.zeros(n, psi.dtype), jnp.arange(n))
    return jnp.sum(counted)
