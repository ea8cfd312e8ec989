"""SpaceGAN: a conditional GAN for spatial data, conditioned on the neighbourhood, with MIE
checkpoint selection: ``make_spacegan(settings) -> Model(init, apply, train)``.

Reference: K. Klemmer, A. Koshiyama, S. Flennerhag (2019). *Augmenting correlation structures
in spatial data using deep generative models*. arXiv:1905.09796.

The paper conditions each point "on feature vectors of its spatial neighbours" rather than on
its own coordinates. Here the condition of point ``i`` is (:func:`neighbour_condition`)::

    c_i = [ (x_j, y_j) for the k nearest training points j != i, nearest first,
            mean_j x_j, mean_j y_j ]                 (per-neighbour vectors and spatial lags)

with features ``x`` and target ``y`` standardised on the training points. The point's own
features, coordinates and target are *not* in its condition, so the generator cannot memorise
its target from an identifier of the point. A point outside the training mask (a held-out fold)
is conditioned on its nearest training points, which is how a held-out criterion is computed.
:func:`coordinate_condition` builds the "mere spatial coordinates" baseline the paper argues
against (``c_i = s_i``, zero-padded to the same width).

A generator ``G(z, c_i)`` draws a target and a discriminator ``D(y, c_i)`` scores it; both are
MLPs trained with the non-saturating GAN losses (both *minimised*), over training points only::

    L_D = E[softplus(-D(y_i, c_i))] + E[softplus(D(G(z, c_i), c_i))]
    L_G = E[softplus(-D(G(z, c_i), c_i))]

Checkpoint selection by MIE (Moran's I error): every ``ckpt_every`` steps the generator draws
``n_draws`` target fields; ``MIE = mean_draws sqrt(mean_i (I_i(y) - I_i(y_gen))^2)`` over the
training points, ``I`` the local Moran's I (:mod:`metalab.models.moran`). The checkpoint with
the lowest MIE is returned (the lowest-RMSE and the last ones are kept for comparison).

Approximation: MIE is averaged over draws rather than computed on one draw.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metalab.models.api import Model
from metalab.models.moran import local_moran, moran_error
from metalab.models.spatial_data import standardise

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


class SpatialTask(NamedTuple):
    """One SpaceGAN problem: condition ``cond`` ``(n, c)``, standardised target ``y`` ``(n,)``,
    row-standardised weights ``w`` ``(n, n)`` (for Moran's I) and the 0/1 training ``mask``."""

    cond: Array
    y: Array
    w: Array
    mask: Array


def nearest_masked(coords: Array, mask: Array, k: int) -> Array:
    """Indices ``(n, k)`` of each point's ``k`` nearest masked points other than itself
    (nearest first; ties by index). Needs at least ``k + 1`` masked points."""
    coords = jnp.asarray(coords, jnp.float32)
    n = coords.shape[0]
    d2 = jnp.sum((coords[:, None] - coords[None]) ** 2, -1)
    d2 = jnp.where(jnp.eye(n, dtype=bool) | (jnp.asarray(mask)[None] <= 0), jnp.inf, d2)
    return jnp.argsort(d2, axis=1, stable=True)[:, :k]


def neighbour_condition(
    x: Array, coords: Array, y: Array, mask: Array, k: int
) -> tuple[Array, Array]:
    """Neighbourhood condition ``(n, k (d + 1) + d + 1)`` and standardised target ``(n,)``.

    Row ``i``: the standardised features and target of the ``k`` nearest training points
    (``mask``) other than ``i``, nearest first, then their means (spatial lags). Standardisation
    uses the training points' mean and std only.
    """
    m = jnp.asarray(mask, jnp.float32)
    xs, ys = standardise(x, m), standardise(y, m)
    idx = nearest_masked(coords, m, k)
    nb = jnp.concatenate([xs[idx], ys[idx][..., None]], -1)  # (n, k, d + 1)
    return jnp.concatenate([nb.reshape(nb.shape[0], -1), nb.mean(1)], -1), ys


def coordinate_condition(coords: Array, mask: Array, width: int) -> Array:
    """The coordinates-only baseline condition ``[s_i, 0, ...]`` of ``width`` columns."""
    cs = standardise(coords, jnp.asarray(mask, jnp.float32))
    if width < cs.shape[1]:
        raise ValueError(f"width={width} < {cs.shape[1]} coordinate columns")
    return jnp.concatenate([cs, jnp.zeros((cs.shape[0], width - cs.shape[1]))], -1)


def sample(params_g: Any, key: Array, cond: Array, n_draws: int, st: SpaceGANSettings) -> Array:
    """``n_draws`` generated target fields ``(n_draws, n)`` (in standardised units)."""
    gen = MLP(st.hidden)
    z = jax.random.normal(key, (n_draws, cond.shape[0], st.noise_dim))
    c = jnp.broadcast_to(cond, (n_draws,) + cond.shape)
    return gen.apply({"params": params_g}, jnp.concatenate([z, c], -1))


def make_spacegan(st: SpaceGANSettings) -> Model:
    """``Model(init, apply, train)`` of SpaceGAN (see :mod:`metalab.models.api`).

    * ``init(key, task) -> generator params``;
    * ``apply(params_g, task, key) -> one generated target field (n,)`` (standardised units);
    * ``train(key, task) -> (MIE-selected generator params, info)`` with ``info``: ``"mie"``
      and ``"rmse"`` curves ``(n_ckpt,)``, ``"rmse_params"`` (lowest-RMSE checkpoint) and
      ``"last_params"``. A ``lax.scan``; jit- and vmap-compatible.
    """
    if st.steps < st.ckpt_every or st.ckpt_every < 1:
        raise ValueError(f"need 1 <= ckpt_every={st.ckpt_every} <= steps={st.steps}")
    gen, disc = MLP(st.hidden), MLP(st.hidden)
    tx_g = optax.adam(st.lr_g, b1=0.5)
    tx_d = optax.adam(st.lr_d, b1=0.5)
    n_ckpt = st.steps // st.ckpt_every

    def init(key: Array, task: SpatialTask) -> Any:
        k_g = jax.random.split(key, 3)[0]
        return gen.init(k_g, jnp.zeros((1, st.noise_dim + task.cond.shape[1])))["params"]

    def apply(params_g: Any, task: SpatialTask, key: Array) -> Array:
        return sample(params_g, key, task.cond, 1, st)[0]

    def train(key: Array, task: SpatialTask) -> tuple[Any, dict[str, Any]]:
        res = train_result(key, task.cond, task.y, task.w, task.mask)
        info = {
            "mie": res.mie,
            "rmse": res.rmse,
            "rmse_params": res.state.rmse_params,
            "last_params": res.state.params_g,
        }
        return res.state.mie_params, info

    def train_result(key: Array, cond: Array, y: Array, w: Array, mask: Array) -> SpaceGANResult:
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

    return Model(init, apply, train)


def masked_mie(
    params_g: Any,
    key: Array,
    task: SpatialTask,
    eval_mask: Array,
    n_draws: int,
    st: SpaceGANSettings,
) -> Array:
    """MIE of ``n_draws`` generated fields against the real target on ``eval_mask``'s points
    (weights restricted to them): with a held-out mask, a criterion that training and checkpoint
    selection never saw."""
    draws = sample(params_g, key, task.cond, n_draws, st)
    return moran_error(local_moran(task.y, task.w, eval_mask), draws, task.w, eval_mask)


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
