r"""Task families for gradient-based meta-learning (pure JAX, keyed by PRNG, vmappable).

Every sampler returns a :class:`Task`: a ``support`` batch (what the inner loop trains on)
and a ``query`` batch (held-out examples of the same task), each an ``(x, y)`` pair with a
leading example axis. Samplers take a key and *static* sizes, so ``jax.vmap`` over keys
draws a batch of tasks and ``lax.scan`` can draw them inside a meta-training loop.

Families:

* :func:`sinusoid_task` — K-shot sinusoid regression (Finn et al., 2017):
  :math:`y = A \sin(x - \varphi)`, :math:`A \sim U[0.1, 5]`, :math:`\varphi \sim U[0, \pi]`,
  :math:`x \sim U[-5, 5]`.
* :func:`long_horizon_task` — regression onto a random sum of sinusoids
  :math:`y = \sum_j a_j \sin(\omega_j x + \varphi_j)`; with a small inner step size an MLP
  needs 50–200 gradient steps to fit one, the regime of Leap and Warp-Leap.
* :func:`sample_digits_task` — N-way K-shot classification on scikit-learn's 8x8 digits
  (shipped with the wheel, no download). Each task is an "alphabet": one random affine warp
  (rotation, anisotropic scale, shear, translation) applied to all its images, N classes drawn
  from the split, and a random assignment of classes to labels 0..N-1. Classes *and* warps are
  split disjointly between meta-train and meta-test; a validation split (meta-train classes
  under a third, disjoint pool of warps) is disjoint from meta-test for hyper-parameter
  selection (:func:`make_digits_family`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

SPLITS = ("train", "val", "test")

__all__ = [
    "SPLITS",
    "DigitsFamily",
    "Task",
    "check_digits_task",
    "long_horizon_task",
    "make_digits_family",
    "random_affine",
    "sample_digits_task",
    "sample_tasks",
    "sinusoid_task",
    "warp_images",
]


class Task(NamedTuple):
    """One task: ``support = (x, y)`` to adapt on, ``query = (x, y)`` to evaluate on."""

    support: tuple[jnp.ndarray, jnp.ndarray]
    query: tuple[jnp.ndarray, jnp.ndarray]


def _check_count(name: str, value: int, lo: int = 1) -> int:
    if not isinstance(value, int | np.integer) or int(value) < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def sample_tasks(sampler, key: jax.Array, num_tasks: int) -> Task:
    """Draw ``num_tasks`` tasks by vmapping ``sampler(key) -> Task`` over split keys."""
    _check_count("num_tasks", num_tasks)
    return jax.vmap(sampler)(jax.random.split(key, num_tasks))


# --------------------------------------------------------------------------------------------
# Regression families


def sinusoid_task(
    key: jax.Array,
    num_support: int = 10,
    num_query: int = 10,
    amplitude: tuple[float, float] = (0.1, 5.0),
    phase: tuple[float, float] = (0.0, math.pi),
    x_range: tuple[float, float] = (-5.0, 5.0),
) -> Task:
    """Sample one sinusoid regression task (Finn et al., 2017).

    Args:
      key: PRNG key.
      num_support, num_query: points in the support / query sets (K-shot: ``num_support=K``).
      amplitude, phase, x_range: uniform ranges of A, phi and x.

    Returns:
      A :class:`Task` with ``x`` of shape ``(n, 1)`` and ``y`` of shape ``(n, 1)``.
    """
    n_s = _check_count("num_support", num_support)
    n_q = _check_count("num_query", num_query)
    k_a, k_p, k_x = jax.random.split(key, 3)
    amp = jax.random.uniform(k_a, (), minval=amplitude[0], maxval=amplitude[1])
    ph = jax.random.uniform(k_p, (), minval=phase[0], maxval=phase[1])
    x = jax.random.uniform(k_x, (n_s + n_q, 1), minval=x_range[0], maxval=x_range[1])
    y = amp * jnp.sin(x - ph)
    return Task((x[:n_s], y[:n_s]), (x[n_s:], y[n_s:]))


def long_horizon_task(
    key: jax.Array,
    num_support: int = 50,
    num_query: int = 50,
    num_components: int = 3,
    amplitude: tuple[float, float] = (0.2, 2.0),
    frequency: tuple[float, float] = (0.5, 2.0),
    x_range: tuple[float, float] = (-5.0, 5.0),
) -> Task:
    r"""Sample a long-horizon regression task: a random sum of ``num_components`` sinusoids.

    :math:`y = \sum_{j} a_j \sin(\omega_j x + \varphi_j)` with :math:`a_j \sim U[amplitude]`,
    :math:`\omega_j \sim U[frequency]`, :math:`\varphi_j \sim U[0, 2\pi]`, :math:`x \sim
    U[x\_range]`. Higher frequencies and several components make the target hard enough
    that fitting it takes on the order of a hundred SGD steps.

    Returns:
      A :class:`Task` with ``x`` and ``y`` of shape ``(n, 1)``.
    """
    n_s = _check_count("num_support", num_support)
    n_q = _check_count("num_query", num_query)
    j = _check_count("num_components", num_components)
    k_a, k_w, k_p, k_x = jax.random.split(key, 4)
    a = jax.random.uniform(k_a, (j,), minval=amplitude[0], maxval=amplitude[1])
    w = jax.random.uniform(k_w, (j,), minval=frequency[0], maxval=frequency[1])
    p = jax.random.uniform(k_p, (j,), minval=0.0, maxval=2 * math.pi)
    x = jax.random.uniform(k_x, (n_s + n_q, 1), minval=x_range[0], maxval=x_range[1])
    y = jnp.sum(a * jnp.sin(x * w + p), axis=-1, keepdims=True)
    return Task((x[:n_s], y[:n_s]), (x[n_s:], y[n_s:]))


# --------------------------------------------------------------------------------------------
# Few-shot digits with affine "alphabets"


class DigitsFamily(NamedTuple):
    """Arrays that define the digits task family (a pytree; close over it in jitted code).

    The warped images are computed once when the family is built, so drawing a task is a
    gather (cheap to compile and to run).

    Attributes:
      train_images: ``(W_train, C_train, n_per_class, 64)`` meta-train images in [0, 1]:
        every meta-train class under every meta-train warp (every class truncated to the
        smallest class size so that the array is rectangular).
      val_images: ``(W_val, C_train, n_per_class, 64)`` meta-train classes under the
        validation warps (for selection; disjoint from meta-test classes and warps).
      test_images: ``(W_test, C_test, n_per_class, 64)`` the same for meta-test.
      train_classes, test_classes: ``(C_train,)`` / ``(C_test,)`` disjoint digit classes.
      train_warps, val_warps, test_warps: ``(W, 2, 3)`` three disjoint pools of affine maps
        from output pixel coordinates to input coordinates (centred), each an "alphabet".
    """

    train_images: jnp.ndarray
    val_images: jnp.ndarray
    test_images: jnp.ndarray
    train_classes: jnp.ndarray
    test_classes: jnp.ndarray
    train_warps: jnp.ndarray
    val_warps: jnp.ndarray
    test_warps: jnp.ndarray

    def images(self, split: str) -> jnp.ndarray:
        """The image bank of ``split``."""
        return {"train": self.train_images, "val": self.val_images, "test": self.test_images}[split]

    @property
    def per_class(self) -> int:
        return int(self.train_images.shape[2])


def random_affine(
    key: jax.Array,
    num: int,
    rotation: float = math.pi / 4,
    scale: tuple[float, float] = (0.8, 1.2),
    shear: float = 0.3,
    translation: float = 1.0,
) -> jnp.ndarray:
    """``num`` random inverse affine maps ``(num, 2, 3)`` (rotation in [-rotation, rotation])."""
    k_r, k_s, k_h, k_t = jax.random.split(key, 4)
    th = jax.random.uniform(k_r, (num,), minval=-rotation, maxval=rotation)
    s = jax.random.uniform(k_s, (num, 2), minval=scale[0], maxval=scale[1])
    h = jax.random.uniform(k_h, (num,), minval=-shear, maxval=shear)
    t = jax.random.uniform(k_t, (num, 2), minval=-translation, maxval=translation)
    c, sn = jnp.cos(th), jnp.sin(th)
    rot = jnp.stack([jnp.stack([c, -sn], -1), jnp.stack([sn, c], -1)], -2)
    shape = jnp.stack(
        [jnp.stack([s[:, 0], h * s[:, 1]], -1), jnp.stack([jnp.zeros_like(h), s[:, 1]], -1)], -2
    )
    fwd = rot @ shape
    inv = jnp.linalg.inv(fwd)
    # src = inv @ (dst - t): store [inv | -inv t]
    off = -jnp.einsum("nij,nj->ni", inv, t)
    return jnp.concatenate([inv, off[..., None]], axis=-1)


def make_digits_family(
    train_classes: Sequence[int] = (0, 1, 2, 3, 4),
    test_classes: Sequence[int] = (5, 6, 7, 8, 9),
    num_train_warps: int = 20,
    num_test_warps: int = 20,
    warp_seed: int = 0,
    num_val_warps: int = 4,
    rotation: float = math.pi / 4,
) -> DigitsFamily:
    """Load scikit-learn's digits and build disjoint meta-train / meta-test splits.

    Args:
      train_classes, test_classes: disjoint subsets of 0..9.
      num_train_warps, num_test_warps: sizes of the two disjoint pools of affine "alphabets"
        (drawn once from ``warp_seed``; the first ``num_train_warps`` go to meta-train).
      num_val_warps: size of the validation pool (drawn after the other two, so adding it
        leaves the train and test pools unchanged).
      warp_seed: seed of the warp pool (fixed across experiment seeds by default so that the
        task family, not the pool, is the object of study).
      rotation: maximum absolute rotation of a warp, radians.

    Returns:
      A :class:`DigitsFamily`.
    """
    from sklearn.datasets import load_digits

    tr, te = tuple(int(c) for c in train_classes), tuple(int(c) for c in test_classes)
    for name, cl in (("train_classes", tr), ("test_classes", te)):
        if not cl or any(c < 0 or c > 9 for c in cl) or len(set(cl)) != len(cl):
            raise ValueError(f"{name} must be distinct digits in 0..9, got {cl}")
    if set(tr) & set(te):
        raise ValueError(f"train_classes and test_classes overlap: {sorted(set(tr) & set(te))}")
    _check_count("num_train_warps", num_train_warps)
    _check_count("num_test_warps", num_test_warps)
    _check_count("num_val_warps", num_val_warps)
    d = load_digits()
    counts = np.bincount(d.target, minlength=10)
    n = int(counts.min())
    imgs = np.stack([d.images[d.target == c][:n] for c in range(10)]).astype(np.float32) / 16.0
    with jax.ensure_compile_time_eval():
        warps = random_affine(
            jax.random.PRNGKey(warp_seed),
            num_train_warps + num_test_warps + num_val_warps,
            rotation=rotation,
        )
    n_tt = num_train_warps + num_test_warps
    warp_all = jax.jit(jax.vmap(warp_images, in_axes=(None, 0)))

    def warped(classes, ws):
        out = warp_all(jnp.asarray(imgs[list(classes)]), ws)  # (W, C, n, 8, 8)
        return out.reshape(out.shape[:3] + (64,))

    # The family is data, not part of any traced computation: evaluate it eagerly even when
    # called while a jit trace is under way (callers cache it, and must not cache tracers).
    with jax.ensure_compile_time_eval():
        return DigitsFamily(
            train_images=warped(tr, warps[:num_train_warps]),
            val_images=warped(tr, warps[n_tt:]),
            test_images=warped(te, warps[num_train_warps:n_tt]),
            train_classes=jnp.asarray(tr, jnp.int32),
            test_classes=jnp.asarray(te, jnp.int32),
            train_warps=warps[:num_train_warps],
            val_warps=warps[n_tt:],
            test_warps=warps[num_train_warps:n_tt],
        )


def warp_images(images: jnp.ndarray, affine: jnp.ndarray) -> jnp.ndarray:
    """Apply one inverse affine map ``(2, 3)`` to a stack of ``(..., H, W)`` images (bilinear)."""
    h, w = images.shape[-2:]
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing="ij")
    dst = jnp.stack([yy.ravel(), xx.ravel()])  # (2, HW)
    src = affine[:, :2] @ dst + affine[:, 2:]
    coords = [src[0].reshape(h, w) + cy, src[1].reshape(h, w) + cx]
    flat = images.reshape((-1, h, w))
    out = jax.vmap(
        lambda im: jax.scipy.ndimage.map_coordinates(im, coords, order=1, mode="constant")
    )(flat)
    return out.reshape(images.shape)


def check_digits_task(
    family: DigitsFamily, split: str, num_ways: int, num_shots: int, num_query: int
) -> None:
    """Raise a clear ValueError if a digits task cannot be drawn (static check)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    n_cls = int((family.test_classes if split == "test" else family.train_classes).shape[0])
    if not isinstance(num_ways, int | np.integer) or not 1 <= num_ways <= n_cls:
        raise ValueError(
            f"num_ways must be an integer in 1..{n_cls} (classes in the {split} split), "
            f"got {num_ways!r}"
        )
    _check_count("num_shots", num_shots)
    _check_count("num_query", num_query)
    if num_shots + num_query > family.per_class:
        raise ValueError(
            f"num_shots + num_query = {num_shots + num_query} exceeds the {family.per_class} "
            f"images each digit class has; allowed: num_shots + num_query <= {family.per_class}"
        )


def sample_digits_task(
    family: DigitsFamily,
    key: jax.Array,
    *,
    split: str = "train",
    num_ways: int = 5,
    num_shots: int = 5,
    num_query: int = 10,
    num_warps: int | jnp.ndarray | None = None,
) -> Task:
    """Sample an N-way K-shot digits task with a random alphabet (affine warp) of the split.

    Args:
      family: from :func:`make_digits_family`.
      key: PRNG key.
      split: ``"train"`` (meta-train classes and warps), ``"val"`` (meta-train classes,
        validation warps) or ``"test"`` (meta-test classes and warps).
      num_ways: N classes per task, 1..(classes in split).
      num_shots: K support images per class.
      num_query: query images per class (disjoint from the support images).
      num_warps: draw the alphabet among the first ``num_warps`` warps of the split's pool
        only (may be traced, e.g. vmapped over pool sizes); None uses the whole pool.

    Returns:
      A :class:`Task`; ``x`` is ``(N * n, 64)`` float32, ``y`` is ``(N * n,)`` int32 labels
      in 0..N-1, class-major order.
    """
    check_digits_task(family, split, num_ways, num_shots, num_query)
    images = family.images(split)
    n_cls, per = images.shape[1], num_shots + num_query
    # One uniform draw feeds every choice (each jax.random call adds to compile time).
    u = jax.random.uniform(key, (n_cls + 1 + num_ways * family.per_class,))
    chosen = jnp.argsort(u[:n_cls])[:num_ways]  # label i <- class chosen[i]: random order
    n_w = images.shape[0] if num_warps is None else jnp.clip(num_warps, 1, images.shape[0])
    w = jnp.minimum(jnp.floor(u[n_cls] * n_w).astype(jnp.int32), n_w - 1)
    idx = jnp.argsort(u[n_cls + 1 :].reshape(num_ways, family.per_class), axis=-1)[:, :per]
    imgs = images[w, chosen[:, None], idx]  # (N, per, 64)
    labels = jnp.broadcast_to(jnp.arange(num_ways, dtype=jnp.int32)[:, None], (num_ways, per))
    xs, ys = imgs[:, :num_shots], labels[:, :num_shots]
    xq, yq = imgs[:, num_shots:], labels[:, num_shots:]
    return Task(
        (xs.reshape(-1, xs.shape[-1]), ys.reshape(-1)),
        (xq.reshape(-1, xq.shape[-1]), yq.reshape(-1)),
    )
