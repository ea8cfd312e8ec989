"""SpaceGAN: a conditional GAN for spatial data with MIE checkpoint selection.

Reference: K. Klemmer, A. Koshiyama, S. Flennerhag (2019). *Augmenting correlation structures
in spatial data using deep generative models*. arXiv:1905.09796.

For every point ``i`` with features ``x_i``, coordinates ``s_i`` and target ``y_i`` the condition
is ``c_i = [x_i, s_i, (W x)_i, (W y)_i]``: the point's own features and location and its
neighbours' features and targets (spatial lags under row-standardised kNN weights ``W``). A
generator ``G(z, c_i)`` draws a target and a discriminator ``D(y, c_i)`` scores it; both are MLPs
trained with the standard non-saturating GAN losses (both *minimised*)::

    L_D = E[softplus(-D(y_i, c_i))] + E[softplus(D(G(z, c_i), c_i))]
    L_G = E[softplus(-D(G(z, c_i), c_i))]

Checkpoint selection by MIE (Moran's I error): every ``ckpt_every`` steps the generator draws
``n_draws`` target fields; ``MIE = mean_draws sqrt(mean_i (I_i(y) - I_i(y_gen))^2)`` with ``I``
the local Moran's I (:mod:`metalab.models.moran`). The checkpoint with the lowest MIE is kept
(and, for comparison, the one with the lowest RMSE between ``y`` and the mean draw).

Dropping neighbour conditioning (``use_neighbours=False``) zeroes the lag inputs, which is the
same function class as removing them. A mask restricts training to a subset of points (a
cross-validation fold): lags, standardisation and Moran's I then use only masked points.

Approximations: spatial lags (neighbour averages) stand in for the paper's per-neighbour
conditioning vectors; MIE is averaged over draws rather than computed on one draw.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metalab.models.moran import local_moran, moran_error, restrict_weights
from metalab.models.spatial_data import SpatialData, standardise

Array = jax.Array


class MLP(nn.Module):
    """ReLU MLP with a scalar output."""

    hidden: int
    layers: int = 2

    @nn.compact
    def __call__(self, v: Array) -> Array:
        for _ in range(self.layers):
            v = nn.relu(nn.Dense(self.hidden)(v))
        return nn.Dense(1)(v)[..., 0]


class SpaceGANSettings(NamedTuple):
    """Static settings of a SpaceGAN run."""

    hidden: int = 64
    noise_dim: int = 8
    steps: int = 3000
    ckpt_every: int = 100
    lr_g: float = 1e-3
    lr_d: float = 1e-3
    n_draws: int = 20


class SpaceGANState(NamedTuple):
    """Generator/discriminator parameters and optimiser states, plus selected checkpoints."""

    params_g: Any
    params_d: Any
    opt_g: Any
    opt_d: Any
    best_mie: Array
    mie_params: Any
    best_rmse: Array
    rmse_params: Any


class SpaceGANResult(NamedTuple):
    """Final state and per-checkpoint curves ``mie``/``rmse`` ``(n_ckpt,)``."""

    state: SpaceGANState
    mie: Array
    rmse: Array


def make_condition(
    data: SpatialData, w: Array, mask: Array | None = None, use_neighbours: bool | Array = True
) -> tuple[Array, Array]:
    """Condition matrix ``(n, 2 d + 3)`` and standardised target ``(n,)`` (see module docstring).

    Only masked points' targets enter the lags; ``use_neighbours`` may be a traced 0/1 flag.
    """
    m = jnp.ones(data.y.shape[0]) if mask is None else jnp.asarray(mask, jnp.float32)
    wr = restrict_weights(w, m)
    xs, cs = standardise(data.x, m), standardise(data.coords, m)
    ys = standardise(data.y, m)
    nb = jnp.asarray(use_neighbours, jnp.float32)
    lag = jnp.concatenate([wr @ xs, (wr @ (m * ys))[:, None]], axis=-1) * nb
    return jnp.concatenate([xs, cs, lag], axis=-1), ys


def sample(params_g: Any, key: Array, cond: Array, n_draws: int, st: SpaceGANSettings) -> Array:
    """``n_draws`` generated target fields ``(n_draws, n)`` (in standardised units)."""
    gen = MLP(st.hidden)
    z = jax.random.normal(key, (n_draws, cond.shape[0], st.noise_dim))
    c = jnp.broadcast_to(cond, (n_draws,) + cond.shape)
    return gen.apply({"params": params_g}, jnp.concatenate([z, c], -1))


def make_spacegan(st: SpaceGANSettings) -> Callable[..., SpaceGANResult]:
    """Build ``train(key, cond, y, w, mask) -> SpaceGANResult`` (a ``lax.scan``; jit/vmap-able).

    Args of ``train``: ``cond`` ``(n, c)`` and ``y`` ``(n,)`` from :func:`make_condition`, ``w``
    the ``(n, n)`` row-standardised weights, ``mask`` ``(n,)`` 0/1 training points.
    """
    if st.steps < st.ckpt_every or st.ckpt_every < 1:
        raise ValueError(f"need 1 <= ckpt_every={st.ckpt_every} <= steps={st.steps}")
    gen, disc = MLP(st.hidden), MLP(st.hidden)
    tx_g = optax.adam(st.lr_g, b1=0.5)
    tx_d = optax.adam(st.lr_d, b1=0.5)
    n_ckpt = st.steps // st.ckpt_every

    def train(key: Array, cond: Array, y: Array, w: Array, mask: Array) -> SpaceGANResult:
        n, c_dim = cond.shape
        m = jnp.asarray(mask, jnp.float32)
        mean_m = lambda v: (m * v).sum() / m.sum()
        k_g, k_d, k_loop = jax.random.split(key, 3)
        pg = gen.init(k_g, jnp.zeros((1, st.noise_dim + c_dim)))["params"]
        pd = disc.init(k_d, jnp.zeros((1, 1 + c_dim)))["params"]
        i_real = local_moran(y, w, m)

        def d_loss(pd_, fake):
            real_logit = disc.apply({"params": pd_}, jnp.concatenate([y[:, None], cond], -1))
            fake_logit = disc.apply({"params": pd_}, jnp.concatenate([fake[:, None], cond], -1))
            return mean_m(jax.nn.softplus(-real_logit) + jax.nn.softplus(fake_logit))

        def g_loss(pg_, pd_, z):
            fake = gen.apply({"params": pg_}, jnp.concatenate([z, cond], -1))
            logit = disc.apply({"params": pd_}, jnp.concatenate([fake[:, None], cond], -1))
            return mean_m(jax.nn.softplus(-logit))

        def step(s: SpaceGANState, k: Array) -> tuple[SpaceGANState, None]:
            kd, kg = jax.random.split(k)
            z = jax.random.normal(kd, (n, st.noise_dim))
            fake = gen.apply({"params": s.params_g}, jnp.concatenate([z, cond], -1))
            gd = jax.grad(d_loss)(s.params_d, jax.lax.stop_gradient(fake))
            ud, od = tx_d.update(gd, s.opt_d, s.params_d)
            pd_ = optax.apply_updates(s.params_d, ud)
            gg = jax.grad(g_loss)(s.params_g, pd_, jax.random.normal(kg, (n, st.noise_dim)))
            ug, og = tx_g.update(gg, s.opt_g, s.params_g)
            return s._replace(
                params_g=optax.apply_updates(s.params_g, ug), params_d=pd_, opt_g=og, opt_d=od
            ), None

        def block(s: SpaceGANState, k: Array) -> tuple[SpaceGANState, tuple[Array, Array]]:
            k_steps, k_eval = jax.random.split(k)
            s, _ = jax.lax.scan(step, s, jax.random.split(k_steps, st.ckpt_every))
            draws = sample(s.params_g, k_eval, cond, st.n_draws, st)
            mie = moran_error(i_real, draws, w, m)
            rmse = jnp.sqrt(mean_m((draws.mean(0) - y) ** 2))
            better_m, better_r = mie < s.best_mie, rmse < s.best_rmse
            pick = lambda c, a, b: jax.tree_util.tree_map(lambda u, v: jnp.where(c, u, v), a, b)
            s = s._replace(
                best_mie=jnp.minimum(mie, s.best_mie),
                mie_params=pick(better_m, s.params_g, s.mie_params),
                best_rmse=jnp.minimum(rmse, s.best_rmse),
                rmse_params=pick(better_r, s.params_g, s.rmse_params),
            )
            return s, (mie, rmse)

        s0 = SpaceGANState(
            pg, pd, tx_g.init(pg), tx_d.init(pd), jnp.asarray(jnp.inf), pg, jnp.asarray(jnp.inf), pg
        )
        s, (mie, rmse) = jax.lax.scan(block, s0, jax.random.split(k_loop, n_ckpt))
        return SpaceGANResult(s, mie, rmse)

    return train


# --- ensembles: members trained on GAN-augmented targets vs bootstrap bagging --------------


def fit_ensemble(
    key: Array,
    feats: Array,
    targets: Array,
    weights: Array,
    hidden: int = 32,
    steps: int = 500,
    lr: float = 3e-3,
) -> Any:
    """Fit ``M`` MLP regressors, member ``j`` on ``targets[j]`` with per-point ``weights[j]``.

    Minimises the weighted mean squared error ``sum_i w_ji (f_j(feats_i) - t_ji)^2 / sum_i w_ji``
    with Adam (full batch). Bagging passes bootstrap counts as weights and the real targets; the
    SpaceGAN ensemble passes the training mask as weights and generated targets.

    Returns:
      stacked member parameters (leading axis ``M``).
    """
    net = MLP(hidden)
    tx = optax.adam(lr)

    def one(k: Array, t: Array, wt: Array) -> Any:
        p = net.init(k, feats[:1])["params"]

        def loss(p_):
            return (wt * (net.apply({"params": p_}, feats) - t) ** 2).sum() / wt.sum()

        def body(c, _):
            p_, o = c
            g = jax.grad(loss)(p_)
            u, o = tx.update(g, o, p_)
            return (optax.apply_updates(p_, u), o), None

        (p, _), _ = jax.lax.scan(body, (p, tx.init(p)), None, length=steps)
        return p

    keys = jax.random.split(key, targets.shape[0])
    return jax.vmap(one)(keys, targets, weights)


def predict_ensemble(params: Any, feats: Array, hidden: int = 32) -> Array:
    """Mean prediction of the ensemble members ``(n,)``."""
    net = MLP(hidden)
    return jax.vmap(lambda p: net.apply({"params": p}, feats))(params).mean(0)


def bootstrap_weights(key: Array, mask: Array, m: int) -> Array:
    """``(m, n)`` bootstrap counts: each row resamples the masked points with replacement."""
    mask = jnp.asarray(mask, jnp.float32)
    n_in = mask.sum()
    logits = jnp.where(mask > 0, 0.0, -jnp.inf)

    def one(k):
        draws = jax.random.categorical(k, logits, shape=(mask.shape[0],))
        valid = jnp.arange(mask.shape[0]) < n_in  # draw exactly n_in points
        return jnp.zeros(mask.shape[0]).at[draws].add(valid.astype(jnp.float32))

    return jax.vmap(one)(jax.random.split(key, m))
