r"""A meta-gradient actor-critic whose whole lifetime is one ``lax.scan``.

Meta-parameters :math:`\phi` produce the actor-critic hyperparameters through
``hyper_fn(phi, context) -> ACHyper`` (a constant map for plain meta-gradients, a learned
function of context features for contextual meta-gradients). Each meta-step (Xu et al. 2018's
online scheme):

1. with :math:`\eta = h_\phi(c)` fixed, apply ``K`` actor-critic updates
   :math:`\theta_{k+1} = \theta_k - \alpha\nabla\mathcal L(\theta_k; \tau_k, \eta)`, collecting
   :math:`\tau_{k+1}` with :math:`\theta_{k+1}` (``tau_0`` is carried from the previous step);
2. compute the meta-loss on :math:`\tau_K` (standard: ``L = 0``; BMG: ``L >= 1``, see
   :func:`metalab.metagrad.bmg.meta_gradient`) by differentiating through the ``K`` updates,
   and take one Adam step on :math:`\phi` (minimising the meta-loss; the meta-gradient is
   clipped to global norm 1, and a step whose update is not finite is skipped and counted,
   ``optax.apply_if_finite``);
3. update the context statistics.

``mode="fixed"`` skips step 2 (a fixed-hyperparameter baseline with identical data flow).

Protocol: ``train = make_train(config, env, net, hyper_fn, phase_fn)``, then
``train(key, MetaACParams(phi0, mask)) -> metrics``. ``MetaACParams`` is traced, so
``jax.vmap`` runs seeds, initial meta-parameters or context masks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metalab.core.pytree import tree_all_finite
from metalab.metagrad import bmg
from metalab.rl import actor_critic as ac

__all__ = [
    "CONTEXT_NAMES",
    "NUM_CONTEXT",
    "ContextState",
    "MetaACConfig",
    "MetaACParams",
    "MetaACState",
    "context_features",
    "make_train",
]

PyTree = Any
NUM_CONTEXT = 6
CONTEXT_NAMES = ("bias", "reward_fast", "reward_change", "td_abs", "entropy", "phase")
HyperFn = Callable[[PyTree, jnp.ndarray], ac.ACHyper]


@dataclass(frozen=True)
class MetaACConfig:
    """Static configuration of the meta-gradient actor-critic lifetime.

    Attributes:
      num_envs: parallel environments E.
      rollout_len: steps T per rollout (n of the n-step return).
      num_meta_steps: meta-updates in the lifetime (env steps = num_meta_steps*K*T*E).
      inner_steps: K actor-critic updates per meta-update.
      num_bootstrap: L; 0 = standard meta-gradient, >= 1 = BMG.
      match: "kl" (policies on the rollout's states) or "l2" (parameters).
      target_step: step size of BMG's final target gradient step.
      meta_lr: Adam step size on phi.
      mode: "meta" (learn phi) or "fixed" (phi frozen: a baseline).
      fast_rate, slow_rate: EMA rates of the reward context features (per meta-step).
    """

    num_envs: int = 4
    rollout_len: int = 8
    num_meta_steps: int = 100
    inner_steps: int = 1
    num_bootstrap: int = 0
    match: str = "kl"
    target_step: float = 1.0
    meta_lr: float = 1e-2
    mode: str = "meta"
    fast_rate: float = 0.3
    slow_rate: float = 0.03

    def __post_init__(self):
        for f in ("num_envs", "rollout_len", "num_meta_steps", "inner_steps"):
            if int(getattr(self, f)) < 1:
                raise ValueError(f"MetaACConfig.{f} must be >= 1, got {getattr(self, f)}")
        if self.mode not in ("meta", "fixed"):
            raise ValueError(f"MetaACConfig.mode must be 'meta' or 'fixed', got {self.mode!r}")
        bmg.check_bmg_args(self.num_bootstrap, self.match, self.target_step)


class MetaACParams(NamedTuple):
    """Traced inputs of a lifetime: initial meta-parameters ``phi`` (any pytree ``hyper_fn``
    accepts) and the context ``mask`` ([NUM_CONTEXT]; 0 switches a feature off)."""

    phi: PyTree
    mask: jnp.ndarray


class ContextState(NamedTuple):
    """Running statistics behind the context features."""

    r_fast: jnp.ndarray
    r_slow: jnp.ndarray
    td_abs: jnp.ndarray
    entropy: jnp.ndarray


class MetaACState(NamedTuple):
    """Carry of the lifetime scan."""

    params: PyTree
    rollout: ac.Rollout
    env_state: Any
    obs: jnp.ndarray
    phi: PyTree
    opt_state: Any
    ctx: ContextState


class _Setup(NamedTuple):
    """Everything static of one lifetime (built once by :func:`make_train`)."""

    cfg: MetaACConfig
    env: ac.EnvFns
    net: ac.ACNet
    hyper_fn: HyperFn
    phase_fn: Callable[[Any], jnp.ndarray] | None
    opt: optax.GradientTransformation
    mg: bmg.MetaGradient


def context_features(ctx: ContextState, phase: jnp.ndarray) -> jnp.ndarray:
    """The 6 context features (``CONTEXT_NAMES``), each roughly O(1).

    Non-finite statistics (a diverged learner) are mapped to finite values so that a masked
    feature stays exactly zero.
    """
    feats = jnp.stack(
        [
            jnp.ones(()),
            jnp.clip(10.0 * ctx.r_fast, -3.0, 3.0),
            jnp.clip(10.0 * (ctx.r_fast - ctx.r_slow), -3.0, 3.0),
            jnp.clip(ctx.td_abs, 0.0, 3.0),
            ctx.entropy,
            phase,
        ]
    )
    return jnp.nan_to_num(feats, nan=0.0, posinf=3.0, neginf=-3.0)


def _phase(setup: _Setup, env_state) -> jnp.ndarray:
    if setup.phase_fn is None:
        return jnp.zeros(())
    return setup.phase_fn(jax.tree.map(lambda a: a[0], env_state))


def _meta_step(setup: _Setup, mask: jnp.ndarray, st: MetaACState, k):
    cfg, apply_fn = setup.cfg, setup.net.apply
    c = context_features(st.ctx, _phase(setup, st.env_state)) * mask
    hyper = setup.hyper_fn(st.phi, c)

    def inner(carry, kk):
        p, ro, es, o = carry
        p2 = ac.ac_update(p, hyper, ro, apply_fn)
        ro2, es2, o2 = ac.collect(kk, p2, setup.env, es, o, apply_fn, cfg.rollout_len)
        return (p2, ro2, es2, o2), ro

    (p_k, ro_k, es, o), used = lax.scan(
        inner,
        (st.params, st.rollout, st.env_state, st.obs),
        jax.random.split(k, cfg.inner_steps),
    )
    if cfg.mode == "meta":
        # batches carry the (stopped) hyper-parameters the outer objective uses
        hyper_sg = lax.stop_gradient(hyper)
        hyper_k = jax.tree.map(lambda h: jnp.broadcast_to(h, (cfg.inner_steps,)), hyper_sg)
        loss, g = setup.mg.meta_grad((st.phi, c), st.params, (used, hyper_k), (ro_k, hyper_sg))
        upd, opt_state = setup.opt.update(g[0], st.opt_state, st.phi)
        phi = optax.apply_updates(st.phi, upd)
        skipped = 1.0 - opt_state.last_finite.astype(jnp.float32)
        loss = jnp.where(jnp.isfinite(loss), loss, 0.0)
    else:
        loss, phi, opt_state, skipped = jnp.zeros(()), st.phi, st.opt_state, jnp.zeros(())
    terms = ac.ac_terms(p_k, hyper, ro_k, apply_fn)
    r = jnp.mean(used.rewards)
    ctx = ContextState(
        r_fast=st.ctx.r_fast + cfg.fast_rate * (r - st.ctx.r_fast),
        r_slow=st.ctx.r_slow + cfg.slow_rate * (r - st.ctx.r_slow),
        td_abs=st.ctx.td_abs + cfg.fast_rate * (jnp.mean(jnp.abs(terms["adv"])) - st.ctx.td_abs),
        entropy=terms["entropy"] / jnp.log(setup.net.num_actions),
    )
    out = {
        "reward": r,
        "entropy_weight": hyper.entropy,
        "lr": hyper.lr,
        "policy_entropy": terms["entropy"],
        "meta_loss": loss,
        "nonfinite_meta_grad": skipped,
        "params_finite": tree_all_finite(p_k).astype(jnp.float32),
    }
    return MetaACState(p_k, ro_k, es, o, phi, opt_state, ctx), out


def make_train(
    config: MetaACConfig,
    env: ac.EnvFns,
    net: ac.ACNet,
    hyper_fn: HyperFn,
    phase_fn: Callable[[Any], jnp.ndarray] | None = None,
) -> Callable[[jax.Array, MetaACParams], dict]:
    """``train(key, MetaACParams(phi0, mask)) -> metrics`` for one lifetime (one ``lax.scan``).

    Args:
      config: static configuration.
      env: the environment functions.
      net: the actor-critic network.
      hyper_fn: ``(phi, context[6]) -> ACHyper``.
      phase_fn: ``env_state -> scalar`` feature in [0, 1] (e.g. time since the last change
        over the period); zeros if None. Applied to environment 0 of the batch.

    Returns ``train`` whose metrics are per meta-step curves: ``reward`` (mean reward per env
    step over the K rollouts), ``entropy_weight``, ``lr``, ``policy_entropy``, ``meta_loss``,
    ``nonfinite_meta_grad`` (1 where the meta-update was not finite and was skipped),
    ``params_finite`` (0 once the learner's parameters have diverged).
    """
    apply_fn = net.apply

    def update_fn(p, phi_ctx, x):
        phi, c = phi_ctx
        return ac.ac_update(p, hyper_fn(phi, c), x[0], apply_fn)

    def objective_fn(p, x):
        ro, hyper_sg = x
        return ac.meta_objective(p, hyper_sg, ro, apply_fn)

    def project_fn(p, x):
        return apply_fn(p, x[0].obs[:-1])[0]

    mg = bmg.meta_gradient(
        update_fn,
        objective_fn,
        num_bootstrap=config.num_bootstrap,
        match=config.match,
        target_step=config.target_step,
        project_fn=project_fn,
    )
    opt = optax.apply_if_finite(
        optax.chain(optax.clip_by_global_norm(1.0), optax.adam(config.meta_lr)), 2**30
    )
    setup = _Setup(config, env, net, hyper_fn, phase_fn, opt, mg)

    def train(key: jax.Array, params: MetaACParams) -> dict:
        k_init, k_first, k_run = jax.random.split(key, 3)
        s0 = ac.init(k_init, env, net, config.num_envs)
        ro0, es0, o0 = ac.collect(
            k_first, s0.params, env, s0.env_state, s0.obs, apply_fn, config.rollout_len
        )
        ctx0 = ContextState(*(jnp.zeros(()) for _ in range(4)))
        state = MetaACState(s0.params, ro0, es0, o0, params.phi, opt.init(params.phi), ctx0)
        step = partial(_meta_step, setup, params.mask)
        _, metrics = lax.scan(step, state, jax.random.split(k_run, config.num_meta_steps))
        return metrics

    return train
