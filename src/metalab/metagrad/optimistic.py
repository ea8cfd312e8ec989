r"""Optimisation as online meta-learning: fixed rules, meta-learned rules, and optimistic BMG.

Reference: Flennerhag, Zahavy, O'Donoghue, van Hasselt, György, Singh (2023),
*Optimistic Meta-Gradients*, NeurIPS, arXiv:2301.03236.

Every rule here *minimises* a differentiable objective ``f`` over a vector ``x``.

Fixed baselines (step size ``eta``, usually ``1/L``):

* gradient descent: :math:`x_{t+1} = x_t - \eta \nabla f(x_t)`;
* heavy ball (Polyak): :math:`x_{t+1} = x_t - \eta\nabla f(x_t) + \beta (x_t - x_{t-1})`;
* Nesterov (convex schedule): :math:`y_t = x_t + \tfrac{t-1}{t+2}(x_t - x_{t-1})`,
  :math:`x_{t+1} = y_t - \eta \nabla f(y_t)`, the accelerated :math:`O(1/T^2)` method.

Meta-learned update rule. The learner's update has meta-parameters
:math:`w = (a, m)`, a log step-size multiplier and a momentum logit:

.. math::
   x_{t+1} = \varphi(x_t, x_{t-1}; w) = x_t - \tfrac{e^{a}}{L}\nabla f(x_t)
             + \sigma(m)\,(x_t - x_{t-1}).

After each step, ``w`` is updated online by a meta-optimiser (Adam) on a meta-objective of
the one-step map :math:`w \mapsto x_{t+1}(w)`:

* **meta-gradient (MG)**: :math:`h_t(w) = f(x_{t+1}(w))`, i.e. :math:`\nabla_w h_t =
  J_t^\top \nabla f(x_{t+1})` with :math:`J_t = \partial x_{t+1} / \partial w`. The paper shows
  that momentum is a special case of such meta-gradients and that a meta-learned rule can
  speed convergence only up to a constant factor.
* **bootstrapped meta-gradient (BMG)** with an ``L``-step target: roll the *current* rule
  :math:`L-1` steps further from :math:`x_{t+1}` (a prediction of where the learner is going),
  then take one gradient step, and match: :math:`\tilde x = \mathrm{sg}[\hat x_{t+L} -
  \eta_T \nabla f(\hat x_{t+L})]`, :math:`h_t(w) = \tfrac12 \lVert x_{t+1}(w) - \tilde x
  \rVert^2`. With ``L = 1`` the gradient is :math:`\eta_T` times MG's (an exact identity, and
  Adam is invariant to that scale); with ``L >= 2`` the target carries a prediction of future
  updates and gradients, which is the *optimism* the paper identifies as what acceleration
  needs.

A run that diverges (non-finite or exploding objective) is frozen at its last finite iterate
and flagged, so the metrics stay finite and the divergence is reported, not hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from metalab.core.bootstrap import bmg_loss, bootstrap_target, squared_distance

Objective = Callable[[jnp.ndarray], jnp.ndarray]
DIVERGENCE_FACTOR = 1e8  # a run whose suboptimality exceeds this multiple of the start's


class RuleParams(NamedTuple):
    """Meta-parameters of :func:`update_rule` (traced; can be vmapped or meta-learned).

    Attributes:
      log_lr: ``a``; the step size is ``exp(a) / L``.
      momentum_logit: ``m``; the momentum coefficient is ``sigmoid(m)`` in (0, 1).
    """

    log_lr: jnp.ndarray
    momentum_logit: jnp.ndarray


class Trace(NamedTuple):
    """Per-step record of a run: ``subopt[t] = f(x_t) - f*`` for t = 0..T, rule parameters
    (``lr`` in units of 1/L, ``momentum``) in effect at each of the T steps, and ``diverged``."""

    subopt: jnp.ndarray
    lr: jnp.ndarray
    momentum: jnp.ndarray
    diverged: jnp.ndarray


def update_rule(w: RuleParams, x: jnp.ndarray, x_prev: jnp.ndarray, grad: jnp.ndarray, L):
    r""":math:`x - (e^a/L)\,g + \sigma(m)(x - x_{prev})`."""
    return x - jnp.exp(w.log_lr) / L * grad + jax.nn.sigmoid(w.momentum_logit) * (x - x_prev)


def _guard(f_star, f0):
    limit = DIVERGENCE_FACTOR * jnp.maximum(f0 - f_star, 1e-12)

    def ok(fx):
        return jnp.isfinite(fx) & (fx - f_star <= limit)

    return ok


def momentum_family(f: Objective, x0: jnp.ndarray, f_star, lr, beta, gamma, steps: int) -> Trace:
    r"""One compiled form for GD, heavy ball and Nesterov (minimise ``f``).

    .. math:: y_t = x_t + \gamma_t (x_t - x_{t-1}), \quad
              x_{t+1} = y_t - \eta \nabla f(y_t) + (\beta_t - \gamma_t)(x_t - x_{t-1}).

    GD: beta = gamma = 0. Heavy ball: gamma = 0, beta constant. Nesterov: beta = gamma =
    (t-1)/(t+2). ``beta`` and ``gamma`` are (T,) schedules, so the three methods can be vmapped
    through one program.
    """
    g = jax.grad(f)
    f0 = f(x0)
    ok = _guard(f_star, f0)

    def body(carry, inp):
        x, x_prev, dead = carry
        b, c = inp
        d = x - x_prev
        y = x + c * d
        x_new = y - lr * g(y) + (b - c) * d
        fx = f(x_new)
        dead = dead | ~ok(fx)
        x_new = jnp.where(dead, x, x_new)
        x_prev = jnp.where(dead, x_prev, x)
        return (x_new, x_prev, dead), jnp.where(dead, f(x), fx) - f_star

    (_, _, dead), sub = lax.scan(body, (x0, x0, jnp.asarray(False)), (beta, gamma))
    subopt = jnp.concatenate([jnp.reshape(f0 - f_star, (1,)), sub])
    return Trace(subopt, jnp.full(steps, lr), jnp.asarray(beta), dead)


def nesterov_schedule(steps: int, dtype=jnp.float32) -> jnp.ndarray:
    """Nesterov's convex momentum schedule (t-1)/(t+2) for t = 1..T."""
    tt = jnp.arange(1, steps + 1, dtype=dtype)
    return (tt - 1.0) / (tt + 2.0)


def gradient_descent(f: Objective, x0: jnp.ndarray, f_star, lr, steps: int) -> Trace:
    """Plain gradient descent with step size ``lr`` (minimise ``f``)."""
    z = jnp.zeros(steps)
    return momentum_family(f, x0, f_star, lr, z, z, steps)


def heavy_ball(f: Objective, x0: jnp.ndarray, f_star, lr, momentum, steps: int) -> Trace:
    """Polyak's heavy ball: ``x - lr*grad f(x) + momentum*(x - x_prev)`` (minimise ``f``)."""
    return momentum_family(f, x0, f_star, lr, jnp.full(steps, momentum), jnp.zeros(steps), steps)


def heavy_ball_tuned(L, mu) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Polyak's optimal heavy-ball constants for an (L, mu) quadratic: (step, momentum)."""
    sl, sm = jnp.sqrt(L), jnp.sqrt(mu)
    return 4.0 / (sl + sm) ** 2, ((sl - sm) / (sl + sm)) ** 2


def nesterov(f: Objective, x0: jnp.ndarray, f_star, lr, steps: int) -> Trace:
    """Nesterov's accelerated gradient with the convex schedule (t-1)/(t+2) (minimise ``f``)."""
    s = nesterov_schedule(steps, x0.dtype)
    return momentum_family(f, x0, f_star, lr, s, s, steps)


class MetaLearnerState(NamedTuple):
    """State of :func:`meta_learned`: iterates, rule parameters and the meta-optimiser."""

    x: jnp.ndarray
    x_prev: jnp.ndarray
    w: RuleParams
    opt_state: optax.OptState
    dead: jnp.ndarray


def meta_gradient(
    f: Objective,
    w: RuleParams,
    x: jnp.ndarray,
    x_prev: jnp.ndarray,
    L,
    bootstrap_steps: int,
    target_lr=None,
    use_target=True,
) -> RuleParams:
    """The meta-gradient of the one-step rule at ``w``.

    Args:
      f: the objective (minimised).
      w: current rule parameters.
      x, x_prev: current and previous iterate.
      L: smoothness constant (the rule's step is ``exp(a)/L``).
      bootstrap_steps: 0 for the plain meta-gradient of ``f(x_{t+1}(w))``; ``L_b >= 1`` for
        BMG with ``L_b - 1`` look-ahead steps of the current rule and one gradient step.
      target_lr: the target's gradient step (default ``1/L``).
      use_target: with ``bootstrap_steps >= 1``, a traced boolean choosing BMG (True) or the
        plain meta-gradient (False), so both share one compiled program (vmap over it).

    Returns:
      ``d h_t / d w`` as a :class:`RuleParams`.
    """
    g = jax.grad(f)
    gx = g(x)

    def x_next(wi):
        return update_rule(wi, x, x_prev, gx, L)

    if bootstrap_steps == 0:
        return jax.grad(lambda wi: f(x_next(wi)))(w)
    eta = 1.0 / L if target_lr is None else target_lr

    def look_ahead(state, _):
        xi, xpi = state
        return update_rule(w, xi, xpi, g(xi), L), xi

    target = bootstrap_target(
        look_ahead,
        (x_next(w), x),
        bootstrap_steps - 1,
        final_fn=lambda s: s[0] - eta * g(s[0]),
    )
    bmg = jax.grad(lambda wi: bmg_loss(x_next(wi), target, squared_distance))(w)
    if use_target is True:
        return bmg
    plain = jax.grad(lambda wi: f(x_next(wi)))(w)
    return jax.tree.map(lambda a, b: jnp.where(use_target, a, b), bmg, plain)


def meta_learned(
    f: Objective,
    x0: jnp.ndarray,
    f_star,
    L,
    steps: int,
    meta_lr,
    bootstrap_steps: int = 0,
    init: RuleParams | None = None,
    target_lr=None,
    use_target=True,
) -> Trace:
    """Optimise ``f`` with the update rule whose parameters are meta-learned online.

    Args:
      f: objective to minimise; ``x0`` start; ``f_star`` its optimal value (for the trace).
      L: smoothness constant.
      steps: number of optimisation steps T.
      meta_lr: Adam learning rate of the meta-parameters (may be traced).
      bootstrap_steps: 0 = meta-gradient (MG); 1 = BMG with a one-gradient-step target (equal
        to MG up to scale); >= 2 = optimistic BMG with look-ahead.
      init: initial rule parameters (default: step 1/L, momentum sigmoid(-3) ~ 0.05).
      target_lr: BMG target step (default 1/L).
      use_target: traced switch between BMG and MG (see :func:`meta_gradient`).

    Returns:
      A :class:`Trace` with the learned step size (in units of 1/L) and momentum per step.
    """
    if bootstrap_steps < 0:
        raise ValueError(f"bootstrap_steps must be >= 0, got {bootstrap_steps}")
    w0 = init or RuleParams(jnp.asarray(0.0), jnp.asarray(-3.0))
    opt = optax.adam(meta_lr)
    g = jax.grad(f)
    f0 = f(x0)
    ok = _guard(f_star, f0)

    def body(s: MetaLearnerState, _):
        x_new = update_rule(s.w, s.x, s.x_prev, g(s.x), L)
        mg = meta_gradient(f, s.w, s.x, s.x_prev, L, bootstrap_steps, target_lr, use_target)
        upd, opt_state = opt.update(mg, s.opt_state, s.w)
        w_new = optax.apply_updates(s.w, upd)
        fx = f(x_new)
        dead = s.dead | ~ok(fx) | ~jnp.all(jnp.isfinite(jnp.stack(list(w_new))))
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(dead, b, a), new, old)
        nxt = MetaLearnerState(
            keep(x_new, s.x),
            keep(s.x, s.x_prev),
            keep(w_new, s.w),
            keep(opt_state, s.opt_state),
            dead,
        )
        rec = (
            jnp.where(dead, f(s.x), fx) - f_star,
            jnp.exp(s.w.log_lr),
            jax.nn.sigmoid(s.w.momentum_logit),
        )
        return nxt, rec

    s0 = MetaLearnerState(x0, x0, w0, opt.init(w0), jnp.asarray(False))
    last, (sub, lr, mom) = lax.scan(body, s0, None, length=steps)
    subopt = jnp.concatenate([jnp.reshape(f0 - f_star, (1,)), sub])
    return Trace(subopt, lr, mom, last.dead)


def iterations_to(subopt: jnp.ndarray, tol) -> jnp.ndarray:
    """First t with ``subopt[t] <= tol * subopt[0]``; ``len(subopt)`` if never (censored)."""
    hit = subopt <= tol * subopt[0]
    return jnp.where(hit.any(), jnp.argmax(hit), subopt.shape[0])


def displacement_meta_learning(
    f: Objective, x0: jnp.ndarray, meta_lr, decay, steps: int
) -> jnp.ndarray:
    r"""The paper's observation that momentum is a meta-gradient method, executable.

    Let the update rule's meta-parameter be the displacement itself, :math:`x_{t+1} = x_t +
    w_t`, and learn it online by gradient descent with decay on :math:`h_t(w) = f(x_t + w)`:
    :math:`w_{t+1} = \rho\, w_t - \beta \nabla_w h_t(w_t) = \rho\, w_t - \beta \nabla f(x_{t+1})`.
    Substituting gives :math:`x_{t+2} = x_{t+1} - \beta \nabla f(x_{t+1}) + \rho (x_{t+1} -
    x_t)`: Polyak's heavy ball with step ``meta_lr`` and momentum ``decay``.

    Returns the iterates :math:`x_0, \dots, x_T` (shape (T+1, d)); with :math:`w_0 = 0`,
    :math:`x_1 = x_0` and the heavy-ball sequence starts from there.
    """

    def body(carry, _):
        x, w = carry
        x_new = x + w
        meta_grad = jax.grad(lambda wi: f(x + wi))(w)
        return (x_new, decay * w - meta_lr * meta_grad), x_new

    _, xs = lax.scan(body, (x0, jnp.zeros_like(x0)), None, length=steps)
    return jnp.concatenate([x0[None], xs])
