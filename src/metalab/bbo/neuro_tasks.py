"""Neural-network training tasks for MetaBBO: small MLP classifiers on synthetic data.

Why these exist: LES meta-trained on BBOB alone (even at D 101-1,500) shrinks its search scale
faster than neuroevolution wants (on les-neuroevolution's digits MLP, sigma 0.1 -> 0.012 in 200
generations while OpenAI-ES keeps 0.1; docs/bbo.md). The LES paper meta-trains on BBOB only;
adding network-shaped tasks to the meta-training distribution is metalab's extension, and it
is said so wherever the resulting checkpoint is used.

A task of size ``(d_in, hidden, classes)``: an MLP ``d_in -> hidden (tanh) -> classes`` with
``D = d_in * hidden + hidden + hidden * classes + classes`` parameters, flattened in the order
``W1 (d_in, hidden), b1, W2 (hidden, classes), b2``. Fitness is the full-batch softmax
cross-entropy on ``n`` synthetic examples (minimised; no optimum is known, so the "regret"
reported beside it is the same cross-entropy). The data come from a latent Gaussian mixture:

* latent class centres ``mu_j ~ sep * N(0, I_r)`` with ``r ~ U{3..8}``, ``sep ~ U[0.5, 2]``;
* ``z = mu_y + N(0, I_r)``, ``x = A z + 0.5 * N(0, I_{d_in})`` with ``A ~ N(0, 1 / r)``;
* each task scales its inputs either to zero mean and unit variance per feature, or to
  ``[0, 1]`` per feature (min-max), with probability 1/2 each.

With ``n_test > 0`` a held-out split of ``n_test`` further examples is drawn from the same
mixture and scaled with the training split's statistics (MetaBBO's ``neuro_score="heldout"``
scores the final mean's cross-entropy on it, :func:`heldout_cross_entropy`).

The initial mean is a fresh LeCun-normal initialisation (``W ~ N(0, 1 / fan_in)``, ``b = 0``)
and ``sigma0`` is log-uniform in ``sigma_range``. None of this uses a real dataset: the
evaluation tasks (sklearn's digits, breast cancer) stay held out.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

MAX_LATENT = 8


class NeuroTask(NamedTuple):
    """One sampled MLP classification task (the architecture is static, outside)."""

    x: jax.Array  # (n, d_in) inputs
    y: jax.Array  # (n,) integer labels
    mean0: jax.Array  # (D,) initial weights (flattened)
    sigma0: jax.Array  # () initial search scale
    x_test: jax.Array  # (n_test, d_in) held-out inputs (n_test may be 0)
    y_test: jax.Array  # (n_test,) held-out labels


def n_mlp_params(d_in: int, hidden: int, classes: int) -> int:
    """Number of parameters ``D`` of the ``d_in -> hidden -> classes`` MLP."""
    return d_in * hidden + hidden + hidden * classes + classes


def check_neuro_size(size: tuple[int, ...]) -> None:
    """Raise a clear error for a malformed ``(d_in, hidden, classes, N, T, K)`` size."""
    if len(size) != 6:
        raise ValueError(f"neuro size {size}: need (d_in, hidden, classes, N, T, K)")
    d_in, hidden, classes, n, t, k = size
    if min(d_in, hidden, t, k) < 1 or classes < 2 or n < 2:
        raise ValueError(
            f"neuro size {size}: need d_in, hidden, T, K >= 1, classes >= 2 and N >= 2"
        )


def mlp_logits(theta: jax.Array, x: jax.Array, d_in: int, hidden: int, classes: int) -> jax.Array:
    """Logits of the flattened MLP ``theta (D,)`` on inputs ``x (n, d_in)``."""
    i = 0
    w1 = theta[i : i + d_in * hidden].reshape(d_in, hidden)
    i += d_in * hidden
    b1 = theta[i : i + hidden]
    i += hidden
    w2 = theta[i : i + hidden * classes].reshape(hidden, classes)
    i += hidden * classes
    b2 = theta[i : i + classes]
    return jnp.tanh(x @ w1 + b1) @ w2 + b2


def cross_entropy(theta: jax.Array, task: NeuroTask, d_in: int, hidden: int, classes: int):
    """Full-batch softmax cross-entropy of one weight vector (what the optimiser minimises)."""
    logits = mlp_logits(theta, task.x, d_in, hidden, classes)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, task.y))


def heldout_cross_entropy(
    theta: jax.Array, task: NeuroTask, d_in: int, hidden: int, classes: int
) -> jax.Array:
    """Softmax cross-entropy of one weight vector on the task's held-out split."""
    logits = mlp_logits(theta, task.x_test, d_in, hidden, classes)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, task.y_test))


def sample_neuro_task(
    key: jax.Array,
    d_in: int,
    hidden: int,
    classes: int,
    n_examples: int = 256,
    sigma_range: tuple[float, float] = (0.03, 0.3),
    n_test: int = 0,
) -> NeuroTask:
    """Sample data, initial weights and ``sigma0`` for one task (see the module docstring).

    The training split and the initial weights do not depend on ``n_test``: the held-out split
    is drawn from keys of its own.
    """
    if not 0 < sigma_range[0] <= sigma_range[1]:
        raise ValueError(f"sigma_range must satisfy 0 < lo <= hi, got {sigma_range}")
    if n_examples < 2 or n_test < 0:
        raise ValueError(f"need n_examples >= 2 and n_test >= 0, got {n_examples}, {n_test}")
    kr, ks, kc, ky, kz, ka, kn, kscale, kw1, kw2, ksig = jax.random.split(key, 11)
    r = jax.random.randint(kr, (), 3, MAX_LATENT + 1)
    latent_mask = jnp.arange(MAX_LATENT) < r
    sep = jax.random.uniform(ks, (), minval=0.5, maxval=2.0)
    centres = sep * jax.random.normal(kc, (classes, MAX_LATENT)) * latent_mask
    a = jax.random.normal(ka, (MAX_LATENT, d_in)) / jnp.sqrt(r)

    def draw(ky, kz, kn, n):
        y = jax.random.randint(ky, (n,), 0, classes)
        z = (centres[y] + jax.random.normal(kz, (n, MAX_LATENT))) * latent_mask
        return z @ a + 0.5 * jax.random.normal(kn, (n, d_in)), y

    x, y = draw(ky, kz, kn, n_examples)
    x_test, y_test = draw(*jax.random.split(jax.random.fold_in(key, 1), 3), n_test)
    mu, sd, lo, hi = x.mean(0), x.std(0) + 1e-6, x.min(0), x.max(0) - x.min(0) + 1e-6
    standardise = jax.random.bernoulli(kscale)

    def scale(v):  # the training split's statistics, applied to both splits
        return jnp.where(standardise, (v - mu) / sd, (v - lo) / hi)

    x, x_test = scale(x), scale(x_test)
    w1 = jax.random.normal(kw1, (d_in, hidden)) / jnp.sqrt(d_in)
    w2 = jax.random.normal(kw2, (hidden, classes)) / jnp.sqrt(hidden)
    mean0 = jnp.concatenate([w1.ravel(), jnp.zeros(hidden), w2.ravel(), jnp.zeros(classes)])
    log_lo, log_hi = jnp.log(sigma_range[0]), jnp.log(sigma_range[1])
    sigma0 = jnp.exp(jax.random.uniform(ksig, (), minval=log_lo, maxval=log_hi))
    return NeuroTask(x=x, y=y, mean0=mean0, sigma0=sigma0, x_test=x_test, y_test=y_test)
