r"""Optimisation as online meta-learning: fixed rules, meta-learned rules, and optimism via BMG.

Reference: Flennerhag, Zahavy, O'Donoghue, van Hasselt, György, Singh (2023),
*Optimistic Meta-Gradients*, NeurIPS, arXiv:2301.03236.

Every rule here *minimises* a differentiable objective ``f`` over a vector ``x``.

Fixed baselines (step size ``eta``, usually ``1/L``):

* gradient descent: :math:`x_{t+1} = x_t - \eta \nabla f(x_t)`;
* heavy ball (Polyak): :math:`x_{t+1} = x_t - \eta\nabla f(x_t) + \beta (x_t - x_{t-1})`;
* Nesterov (convex schedule): :math:`y_t = x_t + \tfrac{t-1}{t+2}(x_t - x_{t-1})`,
  :math:`x_{t+1} = y_t - \eta \nabla f(y_t)`, the accelerated :math:`O(1/T^2)` method.

Meta-learned update rule (the paper's single-task setting, as we read it; it builds on
Joulani et al. 2020's optimistic FTRL with iterate averaging). The learner's update rule has
meta-parameters :math:`w \in \mathbb R^d` and moves the iterate towards them with averaging
weights :math:`\alpha_t = t`, :math:`A_t = \sum_{s\le t}\alpha_s`:

.. math::
   x_t(w) = x_{t-1} + \tfrac{\alpha_t}{A_t}\,(w - x_{t-1}),

the meta-objective of step ``t`` is :math:`h_t(w) = f(x_t(w))` (a one-step meta-horizon) and
its meta-gradient :math:`\nabla h_t(w_t) = \tfrac{\alpha_t}{A_t}\nabla f(x_t)`. The
meta-learner is FTRL with an AdaGrad-norm regulariser on the linearised meta-losses
:math:`\hat g_t = A_t \nabla h_t(w_t) = \alpha_t \nabla f(x_t)`,

.. math::
   w_t = w_0 - \eta_t\Big(\sum_{s<t}\hat g_s + \tilde g_t\Big), \qquad
   \eta_t = \frac{D}{\sqrt{\lVert\hat g_0\rVert^2 + \sum_{s<t}\lVert\hat g_s - \tilde g_s\rVert^2}},

* **MG** (no optimism): :math:`\tilde g_t = 0`. The paper's claim 2: this converges faster
  than GD by at most a constant factor, not at the accelerated rate;
* **optimistic MG via BMG**: :math:`\tilde g_t` is a hint of the *next* meta-gradient, the
  meta-gradient at the point the learner reaches if the meta-parameters stay,
  :math:`\tilde x_t = x_t(w_{t-1})`. It is computed as BMG computes it: the bootstrapped target
  :math:`z = \mathrm{sg}[\tilde x_t - c\nabla f(\tilde x_t)]` matched by
  :math:`\tfrac12\lVert x_t(w) - z\rVert^2`, whose gradient at :math:`w_{t-1}` divided by
  ``c`` equals :math:`\nabla h_t` evaluated at :math:`\tilde x_t` (tested). Claim 3: this
  optimism gives acceleration.

``D`` is set by the traced :class:`FTRLParams` as ``D = scale * ||g_0|| / L``, i.e. the first
meta-step is ``scale / L`` (a step of the stable size of gradient descent); AdaGrad then
shrinks it as the prediction errors accumulate. :math:`w_0 = x_0`.

A run that diverges (non-finite or exploding objective) is frozen at its last finite iterate
and flagged, so the metrics stay finite and the divergence is reported, not hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from optax import tree_utils as otu

from metalab.core.bootstrap import squared_distance
from metalab.metagrad.bmg import MetaGradient, matching_loss
from metalab.metagrad.problems import ConvexProblem

__all__ = [
    "FTRLParams",
    "FTRLState",
    "MetaOptConfig",
    "Trace",
    "averaging_meta_gradient",
    "bmg_hint",
    "displacement_meta_learning",
    "gradient_descent",
    "heavy_ball",
    "heavy_ball_tuned",
    "iterations_to",
    "make_train",
    "momentum_family",
    "nesterov",
    "nesterov_schedule",
]

Objective = Callable[[jnp.ndarray], jnp.ndarray]
DIVERGENCE_FACTOR = 1e8  # a run whose suboptimality exceeds this multiple of the start's


class Trace(NamedTuple):
    """Per-step record of a run: ``subopt[t] = f(x_t) - f*`` for t = 0..T, the step in effect
    at each of the T steps (``lr``: the fixed rules' step; the meta-learner's FTRL step
    ``eta_t`` times ``L``), ``momentum`` (the fixed rules' beta; zeros for the meta-learner)
    and ``diverged``."""

    subopt: jnp.ndarray
    lr: jnp.ndarray
    momentum: jnp.ndarray
    diverged: jnp.ndarray


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


class FTRLParams(NamedTuple):
    """Traced hyper-parameter of the meta-learner: ``scale`` (first meta-step ``scale / L``)."""

    scale: jnp.ndarray


@dataclass(frozen=True)
class MetaOptConfig:
    """Static choices: ``optimistic`` (use BMG's next-gradient hint), ``steps`` (T),
    ``target_step`` (``c`` of the BMG target, in units of 1/L; the hint does not depend on it
    beyond rounding)."""

    optimistic: bool = True
    steps: int = 1000
    target_step: float = 1.0

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.target_step <= 0:
            raise ValueError(f"target_step must be > 0, got {self.target_step}")


class FTRLState(NamedTuple):
    """Meta-learner state: iterate ``x``, meta-parameters ``w`` (and their start ``w0``), sum of
    scaled meta-gradients ``G``, sum of squared prediction errors ``V`` (initialised at
    ``||g_0||^2``), next step ``t`` (1-based), ``dead`` (diverged)."""

    x: jnp.ndarray
    w: jnp.ndarray
    w0: jnp.ndarray
    G: jnp.ndarray
    V: jnp.ndarray
    t: jnp.ndarray
    dead: jnp.ndarray


def _averaged(w, x_prev, gamma):
    return x_prev + gamma * (w - x_prev)


def averaging_meta_gradient(f: Objective) -> MetaGradient:
    """The meta-gradient of the averaging rule: ``meta_loss(w, x_prev, gamma) = f(x_t(w))``
    with ``x_t(w) = x_prev + gamma (w - x_prev)``; ``meta_grad`` returns ``(loss, d/dw)``."""

    def meta_loss(w, x_prev, gamma):
        return f(_averaged(w, x_prev, gamma))

    return MetaGradient(meta_loss, jax.value_and_grad(meta_loss))


def bmg_hint(f: Objective, target_step) -> Callable:
    r"""``hint(w_prev, x_prev, gamma)``: the optimistic hint through a BMG target.

    Look ahead with the unchanged meta-parameters, :math:`\tilde x = x_t(w_{t-1})`; bootstrap
    the target :math:`z = \mathrm{sg}[\tilde x - c\nabla f(\tilde x)]`; return the gradient of
    :math:`\tfrac12\lVert x_t(w) - z\rVert^2` at :math:`w_{t-1}` divided by ``c``.
    """

    def hint(w_prev, x_prev, gamma):
        x_tilde = lax.stop_gradient(_averaged(w_prev, x_prev, gamma))
        target = x_tilde - target_step * jax.grad(f)(x_tilde)
        g = jax.grad(lambda w: matching_loss(_averaged(w, x_prev, gamma), target, squared_distance))
        return g(w_prev) / target_step

    return hint


def _guard(f_star, f0):
    limit = DIVERGENCE_FACTOR * jnp.maximum(f0 - f_star, 1e-12)

    def ok(fx):
        return jnp.isfinite(fx) & (fx - f_star <= limit)

    return ok


def _ftrl_step(cfg: MetaOptConfig, f, mg: MetaGradient, hint_fn, ok, D, s: FTRLState, _):
    t = s.t
    A_t = 0.5 * t * (t + 1.0)
    gamma = t / A_t
    h = A_t * hint_fn(s.w, s.x, gamma) if cfg.optimistic else jnp.zeros_like(s.w)
    eta = D / jnp.sqrt(s.V)
    w_new = s.w0 - eta * (s.G + h)
    fx, mgrad = mg.meta_grad(w_new, s.x, gamma)
    g_hat = A_t * mgrad
    dead = s.dead | ~ok(fx)
    keep = partial(jnp.where, dead)
    nxt = FTRLState(
        x=keep(s.x, _averaged(w_new, s.x, gamma)),
        w=keep(s.w, w_new),
        w0=s.w0,
        G=keep(s.G, s.G + g_hat),
        V=keep(s.V, s.V + otu.tree_norm(g_hat - h, squared=True)),
        t=t + 1.0,
        dead=dead,
    )
    return nxt, (jnp.where(dead, f(s.x), fx), eta)


def make_train(
    config: MetaOptConfig, value_fn: Callable[[ConvexProblem, jnp.ndarray], jnp.ndarray]
) -> Callable[[ConvexProblem, FTRLParams], Trace]:
    """``train(problem, FTRLParams(scale)) -> Trace``: the meta-learned rule on one problem.

    ``value_fn(problem, x)`` is the objective (minimised); ``problem`` supplies ``x0``,
    ``f_star`` and ``L`` and is a pytree, so ``jax.vmap(train)`` runs a batch of problems
    (and a grid of ``scale``).
    """

    def train(problem: ConvexProblem, params: FTRLParams) -> Trace:
        f = partial(value_fn, problem)
        mg = averaging_meta_gradient(f)
        hint_fn = bmg_hint(f, config.target_step / problem.L)
        x0 = problem.x0
        f0 = f(x0)
        g0 = jax.grad(f)(x0)
        D = params.scale * jnp.sqrt(g0 @ g0) / problem.L
        s0 = FTRLState(x0, x0, x0, jnp.zeros_like(x0), g0 @ g0, jnp.ones(()), jnp.asarray(False))
        step = partial(_ftrl_step, config, f, mg, hint_fn, _guard(problem.f_star, f0), D)
        last, (fx, eta) = lax.scan(step, s0, None, length=config.steps)
        subopt = jnp.concatenate([jnp.reshape(f0, (1,)), fx]) - problem.f_star
        return Trace(subopt, eta * problem.L, jnp.zeros(config.steps), last.dead)

    return train


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
