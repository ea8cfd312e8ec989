r"""Convex test problems with known optima, for the optimisation-as-meta-learning experiments.

All objectives are *minimised*. Each problem is a :class:`ConvexProblem`: a pytree of arrays
(so a batch of problems can be vmapped) plus the smoothness ``L`` and strong convexity ``mu``
constants and the optimal value ``f_star``.

* Quadratic: :math:`f(x) = \tfrac12 x^\top A x - b^\top x` with
  :math:`A = Q\,\mathrm{diag}(\lambda)\,Q^\top`, eigenvalues log-spaced in :math:`[L/\kappa, L]`
  and a random rotation :math:`Q`; :math:`x^\star = A^{-1} b`.
* Logistic regression: :math:`f(x) = \frac1n\sum_i \log(1 + e^{-y_i a_i^\top x})
  + \tfrac{\lambda}{2}\lVert x\rVert^2` with labels :math:`y_i \in \{-1, +1\}`; ``f_star`` by
  Newton's method (quadratically convergent, run to machine precision).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "ConvexProblem",
    "breast_cancer",
    "logistic_problem",
    "logistic_value",
    "quadratic_value",
    "random_quadratic",
]


class ConvexProblem(NamedTuple):
    """A convex objective in one of two families (``kind`` 0 = quadratic, 1 = logistic).

    Attributes:
      A: (d, d) Hessian of the quadratic, or (n, d) design matrix of the logistic problem.
      b: (d,) linear term, or (n,) labels in {-1, +1}.
      reg: L2 regularisation of the logistic problem (0 for quadratics).
      L: smoothness constant (largest Hessian eigenvalue bound).
      mu: strong-convexity constant.
      f_star: optimal value.
      x0: the starting point.
    """

    A: jnp.ndarray
    b: jnp.ndarray
    reg: jnp.ndarray
    L: jnp.ndarray
    mu: jnp.ndarray
    f_star: jnp.ndarray
    x0: jnp.ndarray


def quadratic_value(p: ConvexProblem, x: jnp.ndarray) -> jnp.ndarray:
    return 0.5 * x @ (p.A @ x) - p.b @ x


def logistic_value(p: ConvexProblem, x: jnp.ndarray) -> jnp.ndarray:
    margins = p.b * (p.A @ x)
    return jnp.mean(jax.nn.softplus(-margins)) + 0.5 * p.reg * x @ x


def random_quadratic(key: jax.Array, dim: int, cond: float, L: float = 1.0) -> ConvexProblem:
    """A random ``dim``-dimensional quadratic with condition number ``cond`` (minimise).

    ``x0`` is a standard normal draw; ``b`` is standard normal, so the optimum's components
    along low-curvature directions are large, which is what makes the problem hard for GD.
    """
    if dim < 2:
        raise ValueError(f"dim must be >= 2, got {dim}")
    if not cond >= 1.0:
        raise ValueError(f"cond (condition number) must be >= 1, got {cond}")
    kq, kb, kx = jax.random.split(key, 3)
    q, _ = jnp.linalg.qr(jax.random.normal(kq, (dim, dim)))
    eig = L * jnp.logspace(-jnp.log10(cond), 0.0, dim)
    A = (q * eig) @ q.T
    A = 0.5 * (A + A.T)
    b = jax.random.normal(kb, (dim,))
    x_star = q @ ((q.T @ b) / eig)
    f_star = -0.5 * b @ x_star
    x0 = jax.random.normal(kx, (dim,))
    return ConvexProblem(A, b, jnp.asarray(0.0), jnp.asarray(L), jnp.asarray(L / cond), f_star, x0)


def logistic_problem(
    key: jax.Array,
    features: jnp.ndarray,
    labels: jnp.ndarray,
    reg: float,
    subsample: float = 0.8,
    newton_steps: int = 30,
) -> ConvexProblem:
    """L2-regularised logistic regression on a random subsample of a data set (minimise).

    Args:
      key: selects the subsample (a random ``floor(subsample * n)`` rows) and the start.
      features: (n, d) standardised features (append a column of ones for a bias).
      labels: (n,) labels in {-1, +1}.
      reg: L2 weight lambda > 0 (also the strong-convexity constant).
      subsample: fraction of rows kept, in (0, 1].
      newton_steps: Newton iterations used to compute ``f_star``.
    """
    if reg <= 0:
        raise ValueError(f"reg must be > 0 for a strongly convex problem, got {reg}")
    if not 0.0 < subsample <= 1.0:
        raise ValueError(f"subsample must be in (0, 1], got {subsample}")
    kr, kx = jax.random.split(key)
    n, d = features.shape
    m = max(int(subsample * n), 1)
    rows = jax.random.permutation(kr, n)[:m]
    A, labels = features[rows], labels[rows]
    L = jnp.linalg.eigvalsh(A.T @ A / m)[-1] / 4.0 + reg
    p = ConvexProblem(
        A,
        labels,
        jnp.asarray(reg),
        L,
        jnp.asarray(reg),
        jnp.asarray(0.0),
        0.1 * jax.random.normal(kx, (d,)),
    )

    def newton(x, _):
        g = jax.grad(lambda z: logistic_value(p, z))(x)
        h = jax.hessian(lambda z: logistic_value(p, z))(x)
        return x - jnp.linalg.solve(h, g), None

    x_star, _ = jax.lax.scan(newton, jnp.zeros(d), None, length=newton_steps)
    return p._replace(f_star=logistic_value(p, x_star))


def breast_cancer() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's breast-cancer data (shipped in its wheel): standardised features with a
    bias column, labels in {-1, +1}. Returns float32 arrays ``(569, 31)`` and ``(569,)``."""
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    x = data.data.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    y = np.where(data.target > 0, 1.0, -1.0)
    return x.astype(np.float32), y.astype(np.float32)
