"""Bootstrapped DQN with randomised prior functions (and its TDU variant), fully jitted.

References:
  Osband, Blundell, Pritzel & Van Roy (2016), "Deep Exploration via Bootstrapped DQN".
  Osband, Aslanides & Cassirer (2018), "Randomized Prior Functions for Deep RL".
  bsuite 0.3.6 ``baselines/jax/boot_dqn`` (the settings of :class:`BootDQNConfig`'s defaults).
  Flennerhag et al. (2020), "Temporal Difference Uncertainties as a Signal for Exploration"
  (``num_explorers > 0``; see :mod:`metalab.rl.tdu`).

Agent. ``K`` members ``Q_k(s, a) = f_{theta_k}(s, a) + s_p * p_k(s, a)`` where ``p_k`` is a
fixed random network (the prior, never trained; precomputed here as a table over the discrete
inputs) and ``s_p`` the prior scale. Every member is trained on the same replay minibatch with
its own bootstrap mask ``m_k ~ Bernoulli(mask_prob)`` and reward noise ``z_k ~ N(0, 1)``:

    delta_k = r + noise_scale * z_k + gamma_t * max_a' Qbar_k(s', a') - Q_k(s, a),
    L(theta) = sum_k mean_batch( m_k * delta_k^2 )        (minimised, Adam per member),

where ``Qbar_k`` uses target parameters copied from ``theta_k`` every ``target_update_period``
SGD steps. With TDU, explorers' ``delta_k`` get ``+ beta * sg(sigma)`` (see ``tdu``). Acting:
one member sampled uniformly per episode, greedy with random tie-breaking, plus
``epsilon``-greedy dithering (``K = 1``, ``prior_scale = 0``, ``epsilon > 0`` is plain
epsilon-greedy DQN).

Everything (ensemble over members with ``vmap``, the replay buffer, acting, learning) is pure
JAX; :func:`make_deep_sea_train` returns ``train(key)``: one ``lax.scan`` over episodes, each
a ``lax.scan`` over the ``N`` steps of a Deep Sea episode, vmappable over seeds.

Differences from bsuite's agent, all deliberate: the first layer is a lookup on the integer
cell index (identical function, see :mod:`metalab.rl.ensemble_nets`); target parameters start
equal to the online ones (bsuite initialises them independently, including a different prior,
until the first copy); the member for the next episode is sampled at episode start.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import rlax

from metalab.rl import ensemble_nets, replay, tdu
from metalab.rl.envs import deep_sea


class BootDQNConfig(NamedTuple):
    """Static agent settings (defaults: bsuite's ``boot_dqn.default_agent``)."""

    num_ensemble: int = 20
    hidden: tuple[int, ...] = (50, 50)
    prior_scale: float = 5.0
    batch_size: int = 128
    discount: float = 0.99
    replay_capacity: int = 10_000
    min_replay_size: int = 128
    sgd_period: int = 1
    target_update_period: int = 4
    learning_rate: float = 1e-3
    mask_prob: float = 1.0
    noise_scale: float = 0.0
    epsilon: float = 0.0
    num_explorers: int = 0
    beta: float = 0.0
    sparse_first_layer: bool = False  # lazy-Adam rows; params["w0"] is then cell-major
    target_table: bool | None = None
    row_bucket: int = 8  # sparse step compiled for multiples of this many distinct cells
    seed_axis: str | None = None  # vmap axis name over seeds: one row width for all (pmax)

    def validate(self) -> BootDQNConfig:
        """Raise a ValueError naming the first bad field; return self."""
        ints = ("num_ensemble", "batch_size", "replay_capacity", "sgd_period", "row_bucket")
        for name in (*ints, "target_update_period"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"BootDQNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.min_replay_size < 1 or self.min_replay_size > self.replay_capacity:
            raise ValueError(
                "BootDQNConfig.min_replay_size must be in [1, replay_capacity], got "
                f"{self.min_replay_size}"
            )
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"BootDQNConfig.hidden must be non-empty widths >= 1: {self.hidden}")
        checks = {
            "discount": 0.0 <= self.discount <= 1.0,
            "mask_prob": 0.0 < self.mask_prob <= 1.0,
            "epsilon": 0.0 <= self.epsilon <= 1.0,
            "prior_scale": self.prior_scale >= 0.0,
            "noise_scale": self.noise_scale >= 0.0,
            "learning_rate": self.learning_rate > 0.0,
            "beta": self.beta >= 0.0,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"BootDQNConfig.{name} is out of range: {getattr(self, name)}")
        tdu.explorer_mask(self.num_ensemble, self.num_explorers)  # validates the split
        return self

    def uses_target_table(self, num_cells: int) -> bool:
        """Whether target values are read from a table recomputed at each target copy.

        ``target_table=None`` (auto) uses the table when computing it once per copy (``n + 1``
        rows) costs less than the target forward passes between copies (``2 x batch x period``
        rows, the factor 2 measured: XLA's fused gather-forward-max runs ~2x slower per row
        than the table's plain matmuls).
        """
        if self.target_table is not None:
            return bool(self.target_table)
        rows_between_copies = self.batch_size * self.target_update_period * self.sgd_period
        return num_cells + 1 <= 2 * rows_between_copies


class Transition(NamedTuple):
    """One stored transition; cells are integer observations (see ``deep_sea.cell_index``)."""

    cell_tm1: jax.Array
    a_tm1: jax.Array
    r_t: jax.Array
    discount_t: jax.Array
    cell_t: jax.Array
    mask_t: jax.Array  # [K] bootstrap mask ([0] when mask_prob = 1: all ones)
    noise_t: jax.Array  # [K] reward noise ([0] when noise_scale = 0)


def _mask_width(config: BootDQNConfig) -> int:
    # The all-ones mask (mask_prob = 1, bsuite's default) and zero noise are not stored.
    return config.num_ensemble if config.mask_prob < 1.0 else 0


def _noise_width(config: BootDQNConfig) -> int:
    return config.num_ensemble if config.noise_scale > 0.0 else 0


def _draw_mask(key: jax.Array, config: BootDQNConfig) -> jax.Array:
    w = _mask_width(config)
    return jax.random.bernoulli(key, config.mask_prob, (w,)).astype(jnp.float32)


def _draw_noise(key: jax.Array, config: BootDQNConfig) -> jax.Array:
    return jax.random.normal(key, (_noise_width(config),))


class RowAdamState(NamedTuple):
    """Adam moments of the first-layer table for the sparse (lazy) update.

    ``moments [C, 2, K, H]`` holds both moments cell-major: the rows of a minibatch's cells are
    then one gather and one scatter of contiguous ``2 x K x H`` blocks (member-major took one
    strided ``H``-slice per member and cell: a scan of the lazy update alone at bsuite's shapes
    ran 0.70 ms per step member-major, 0.40 ms with this layout). The table itself is
    cell-major too (``params["w0"] [C, K, H]`` with ``sparse_first_layer``, see
    :func:`member_major`). ``mu`` and ``nu`` give the moments member-major, ``[K, C, H]``.
    """

    moments: jax.Array
    count: jax.Array

    @property
    def mu(self) -> jax.Array:
        return jnp.swapaxes(self.moments[:, 0], 0, 1)

    @property
    def nu(self) -> jax.Array:
        return jnp.swapaxes(self.moments[:, 1], 0, 1)


class BootDQNState(NamedTuple):
    """Agent state: online/target parameters ``[K, ...]``, Adam state, prior table, replay.

    With ``sparse_first_layer`` the first-layer table ``params["w0"]`` is stored cell-major,
    ``[C, K, H]`` instead of ``[K, C, H]``: the lazy update reads and writes a minibatch's rows
    as contiguous ``K x H`` blocks (the member-major scatter, ``K`` strided ``H``-slices per
    cell, took ~50 us per step at bsuite's agent, the cell-major one ~20 us).
    :func:`member_major` gives the usual layout (for :func:`loss_fn`, :func:`ensemble_q`, ...).

    With a target table (:meth:`BootDQNConfig.uses_target_table`) the target network is only
    ever read through the table, so ``target_params`` is ``None`` (no parameter copy at each
    target update: ~14 us per step at bsuite's agent) and ``target_table`` holds its values.
    """

    params: Any
    target_params: Any  # None when target_table is used
    opt_state: Any
    prior_table: jax.Array  # [K, num_cells + 1, A], prior outputs (unscaled)
    replay: replay.ReplayState
    env_steps: jax.Array
    sgd_steps: jax.Array
    head: jax.Array
    target_table: jax.Array | None = None  # [K, n + 1, A] target Q incl. prior, or None


def _optimizer(config: BootDQNConfig) -> optax.GradientTransformation:
    # Adam is elementwise, so one Adam over the stacked ensemble equals one Adam per member.
    return optax.adam(config.learning_rate)


_B1, _B2, _EPS = 0.9, 0.999, 1e-8  # optax.adam's defaults


def _rest(params: Any) -> Any:
    return {k: v for k, v in params.items() if k != "w0"}


def _init_opt(params: Any, config: BootDQNConfig) -> Any:
    if not config.sparse_first_layer:
        return _optimizer(config).init(params)
    c, k, h = params["w0"].shape  # cell-major
    rows = RowAdamState(jnp.zeros((c, 2, k, h), params["w0"].dtype), jnp.zeros((), jnp.int32))
    return (_optimizer(config).init(_rest(params)), rows)


def init(key: jax.Array, config: BootDQNConfig, num_cells: int, num_actions: int) -> BootDQNState:
    """A fresh agent for inputs ``0..num_cells`` (``num_cells`` = null input) and A actions."""
    config.validate()
    k_net, k_prior = jax.random.split(key)
    params = ensemble_nets.init_ensemble(
        k_net, config.num_ensemble, num_cells, config.hidden, num_actions
    )
    priors = ensemble_nets.init_ensemble(
        k_prior, config.num_ensemble, num_cells, config.hidden, num_actions
    )
    prior_table = jax.vmap(lambda p: ensemble_nets.output_table(p, num_cells))(priors)
    if config.sparse_first_layer:  # cell-major first layer (see BootDQNState)
        params = {**params, "w0": jnp.swapaxes(params["w0"], 0, 1)}
    example = Transition(
        jnp.int32(0),
        jnp.int32(0),
        jnp.float32(0),
        jnp.float32(0),
        jnp.int32(0),
        jnp.zeros((_mask_width(config),), jnp.float32),
        jnp.zeros((_noise_width(config),), jnp.float32),
    )
    use_table, sparse = config.uses_target_table(num_cells), config.sparse_first_layer
    return BootDQNState(
        target_table=(
            target_q_table(params, prior_table, config.prior_scale, None, sparse)
            if use_table
            else None
        ),
        params=params,
        target_params=None if use_table else params,
        opt_state=_init_opt(params, config),
        prior_table=prior_table,
        replay=replay.init(example, config.replay_capacity),
        env_steps=jnp.zeros((), jnp.int32),
        sgd_steps=jnp.zeros((), jnp.int32),
        head=jnp.zeros((), jnp.int32),
    )


def member_major(params: Any, config: BootDQNConfig) -> Any:
    """``params`` with the first-layer table member-major, ``[K, C, H]`` (the layout of the
    dense agent and of :mod:`metalab.rl.ensemble_nets`), whatever ``config``'s layout."""
    if not config.sparse_first_layer:
        return params
    return {**params, "w0": jnp.swapaxes(params["w0"], 0, 1)}


def member_q(params: Any, prior_table: jax.Array, prior_scale: float, cell: jax.Array):
    """``Q_k(cell, .) = f_k(cell) + prior_scale * p_k(cell)`` for one member's slices."""
    return ensemble_nets.apply_lookup_mlp(params, cell) + prior_scale * prior_table[cell]


def ensemble_q(
    params: Any,
    prior_table: jax.Array,
    prior_scale: float,
    cells: jax.Array,
    net_cells: jax.Array | None = None,
):
    """``[K, B, A]`` action values of every member at cells ``[B]``.

    ``net_cells`` (optional) are the rows of ``params["w0"]`` to read instead of ``cells``
    (the sparse update passes a gathered sub-table and indices into it); the prior is always
    read at ``cells``.
    """
    net_cells = cells if net_cells is None else net_cells

    def per_member(p, t):
        f = lambda c, nc: ensemble_nets.apply_lookup_mlp(p, nc) + prior_scale * t[c]
        return jax.vmap(f)(cells, net_cells)

    return jax.vmap(per_member)(params, prior_table)


def target_q_table(
    params: Any,
    prior_table: jax.Array,
    prior_scale: float,
    cells: np.ndarray | None = None,
    cell_major: bool = False,
) -> jax.Array:
    """``[K, n + 1, A]``: every member's ``Q_k`` at every input (the null input included).

    ``cells`` (optional, static): only the inputs that can ever be queried (e.g. Deep Sea's
    reachable cells, :func:`metalab.rl.envs.deep_sea.reachable_cells`); other rows hold only
    the prior term. ``cell_major``: ``params["w0"]`` is ``[C, K, H]`` (``sparse_first_layer``);
    its rows at ``cells`` are gathered as contiguous blocks, then the layers run as in
    :func:`metalab.rl.ensemble_nets.full_table`.
    """
    if not cell_major:
        net = jax.vmap(lambda p: ensemble_nets.full_table(p, cells))(params)
        return net + prior_scale * prior_table
    w0 = params["w0"]
    c, k, hid = w0.shape
    rows = np.arange(c + 1) if cells is None else np.asarray(cells)
    # the rows gathered straight into [K, R, H] from the [C K, H] view (static flat indices
    # cell * K + k; the null input, cell C, is out of range and reads zeros). Gathering
    # [R, K, H] and transposing ran ~2x slower (XLA fused them into one strided loop).
    flat = np.where(rows[None] < c, rows[None] * k + np.arange(k)[:, None], c * k)
    h = w0.reshape(c * k, hid).at[flat].get(mode="fill", fill_value=0.0)
    h = h + params["b0"][:, None]
    for i in range(1, ensemble_nets.num_layers(params)):
        h = jax.nn.relu(h)
        h = jnp.einsum("krh,khj->krj", h, params[f"w{i}"]) + params[f"b{i}"][:, None]
    if cells is not None:
        h = jnp.zeros((k, c + 1, h.shape[-1]), h.dtype).at[:, rows].set(h)
    return h + prior_scale * prior_table


def begin_episode(key: jax.Array, state: BootDQNState, config: BootDQNConfig) -> BootDQNState:
    """Sample the acting member uniformly from the whole ensemble (Thompson-style)."""
    return state._replace(head=jax.random.randint(key, (), 0, config.num_ensemble))


def act(key: jax.Array, state: BootDQNState, cell: jax.Array, config: BootDQNConfig):
    """Greedy action of the acting member (ties broken uniformly), epsilon-greedy dithered."""
    k_eps, k_rand, k_tie = jax.random.split(key, 3)
    q = ensemble_nets.apply_member(
        state.params, state.head, cell, cell_major=config.sparse_first_layer
    )
    q = q + config.prior_scale * state.prior_table[state.head, cell]
    best = q == q.max()
    greedy = jax.random.categorical(k_tie, jnp.where(best, 0.0, -jnp.inf))
    if config.epsilon == 0.0:  # static: no dithering draws (the keys are independent)
        return greedy
    random_a = jax.random.randint(k_rand, (), 0, q.shape[-1])
    return jnp.where(jax.random.uniform(k_eps) < config.epsilon, random_a, greedy)


def td_errors(
    params: Any,
    target_params: Any,
    prior_table: jax.Array,
    batch: Transition,
    config,
    net_cells: jax.Array | None = None,
    target_table: jax.Array | None = None,
) -> jax.Array:
    """``[K, B]`` TD errors ``r + s_z z_k + gamma_t max Qbar_k(s') - Q_k(s, a)`` (rlax).

    ``net_cells``: see :func:`ensemble_q` (rows of ``params["w0"]`` for ``batch.cell_tm1``).
    ``target_table``: optional ``[K, n + 1, A]`` target values (:func:`target_q_table` of
    ``target_params``), read instead of running the target network.
    """
    q_tm1 = ensemble_q(params, prior_table, config.prior_scale, batch.cell_tm1, net_cells)
    if target_table is None:
        q_t = ensemble_q(target_params, prior_table, config.prior_scale, batch.cell_t)
    else:
        q_t = target_table[:, batch.cell_t]
    r_kt = jnp.broadcast_to(batch.r_t[None], (config.num_ensemble, batch.r_t.shape[0]))
    if config.noise_scale > 0.0:
        r_kt = r_kt + config.noise_scale * batch.noise_t.T  # [K, B]
    disc = config.discount * batch.discount_t
    per_transition = jax.vmap(rlax.q_learning, in_axes=(0, 0, 0, 0, 0))
    return jax.vmap(per_transition, in_axes=(0, None, 0, None, 0))(
        q_tm1, batch.a_tm1, r_kt, disc, q_t
    )


def loss_fn(
    params: Any,
    target_params: Any,
    prior_table: jax.Array,
    batch: Transition,
    config,
    beta: jax.Array | float | None = None,
    net_cells: jax.Array | None = None,
    target_table: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """``sum_k mean_b m_kb delta~_kb^2`` (to minimise) and the mean TDU bonus ``sigma``.

    ``beta`` (traced, optional) overrides ``config.beta``: TDU with ``beta = 0`` is exactly
    bootstrapped DQN, so both agents can share one compiled program (vmap over ``beta``).
    ``net_cells``, ``target_table``: see :func:`td_errors`.
    """
    delta = td_errors(params, target_params, prior_table, batch, config, net_cells, target_table)
    sigma_mean = jnp.zeros(())
    if config.num_explorers > 0:
        is_x = tdu.explorer_mask(config.num_ensemble, config.num_explorers)
        delta, sigma = tdu.tdu_td_errors(delta, is_x, config.beta if beta is None else beta)
        sigma_mean = sigma.mean()
    sq = delta**2 if config.mask_prob >= 1.0 else batch.mask_t.T * delta**2
    loss = jnp.sum(jnp.mean(sq, axis=1))
    return loss, sigma_mean


def learn_schedule(env_step: jax.Array, config: BootDQNConfig) -> tuple[jax.Array, jax.Array]:
    """Whether env step ``s`` (1-based, after storing its transition) takes an SGD step, and
    the SGD-step count after it: learning happens iff ``s >= min_replay_size`` (the replay
    then holds ``min(s, capacity) >= min_replay_size`` items) and ``s % sgd_period == 0``.
    """
    m, p = config.min_replay_size, config.sgd_period
    learn = (env_step >= m) & (env_step % p == 0)
    sgd_steps = jnp.where(env_step >= m, env_step // p - (m - 1) // p, 0)
    return learn, sgd_steps


def _sgd(state: BootDQNState, batch: Transition, config: BootDQNConfig, beta=None):
    if config.sparse_first_layer:
        return _sgd_sparse(state, batch, config, beta)
    grads, sigma = jax.grad(loss_fn, has_aux=True)(
        state.params,
        state.target_params,
        state.prior_table,
        batch,
        config,
        beta,
        None,
        state.target_table,
    )
    upd, opt_state = _optimizer(config).update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, upd), opt_state, sigma


# Two of a layer's three products, for ``a [K, B, H]``, ``w [K, H, J]``, ``dh [K, B, J]``.
# When J is narrow (the output layer: J = the number of actions) the weight gradient (a
# contraction over the batch into [K, H, J]) and the input gradient (a contraction over J) are
# written as multiply + reduce: XLA-CPU runs such batched dots as naive loops (profiled at
# bsuite's agent: the output layer's weight gradient alone took ~475 us of a ~1.9 ms SGD step,
# more than a 50x50 layer). The forward product ``"kbh,khj->kbj"`` stays a dot: there the
# multiply + reduce was slower (97 vs 77 us standalone at K 20, B 128, H 50, J 2).
_NARROW = 8


def _wgrad(a: jax.Array, dh: jax.Array) -> jax.Array:
    if dh.shape[-1] <= _NARROW:  # one multiply + reduce per output (XLA made one
        # reduce-window of the [K, B, H, J] product: 59 vs 34 us standalone at J = 2)
        cols = [jnp.sum(a * dh[..., j : j + 1], axis=1) for j in range(dh.shape[-1])]
        return jnp.stack(cols, axis=-1)
    return jnp.einsum("kbh,kbj->khj", a, dh)


def _bwd(dh: jax.Array, w: jax.Array) -> jax.Array:
    if dh.shape[-1] <= _NARROW:
        return jnp.sum(dh[:, :, None] * w[:, None], axis=-1)
    return jnp.einsum("kbj,khj->kbh", dh, w)


def fused_grads(
    rest: Any,
    rows: jax.Array,
    net_cells: jax.Array,
    batch: Transition,
    prior_table: jax.Array,
    q_t: jax.Array,
    config: BootDQNConfig,
    beta: jax.Array | float | None = None,
) -> tuple[tuple[Any, jax.Array], jax.Array]:
    """Hand-written backward pass of :func:`loss_fn` for the lookup-MLP ensemble.

    The same gradients as ``jax.grad(loss_fn)`` (tested). The hidden layers run on the ``U``
    distinct first-layer rows of the minibatch, not on its ``B`` samples: a sample's hidden
    activations depend only on its cell, so the forward pass, the weight gradients and the
    input gradients are computed once per distinct cell, and the samples meet only at the
    output (``q[:, b] = out[:, net_cells[b]]``; the backward pass sums the samples' output
    gradients into their cell's row, which is exactly how the dense gradient sums duplicates).
    Each hidden layer is the three batched matmuls the maths needs, over ``U`` rows.

    Args:
      rest: every parameter but ``w0`` (``b0, w1, b1, ...``), stacked ``[K, ...]``.
      rows: ``[K, U, H]`` first-layer rows (distinct cells; padding rows are allowed: no
        sample points at them, so their gradient is zero); ``net_cells [B]`` index them per
        sample.
      batch: the minibatch (``cell_tm1`` indexes the prior table).
      prior_table: ``[K, n + 1, A]``; q_t: ``[K, B, A]`` target values at ``cell_t``.
      config, beta: as :func:`loss_fn`.

    Returns:
      ``((grads of rest, grads of rows), mean sigma)``; the rows' gradient is cell-major,
      ``[U, K, H]`` (its ``[u]`` is the gradient of ``rows[:, u]``), the layout of the lazy
      Adam moments.
    """
    num_layers = len(rest) // 2 + 1
    pre = [rows + rest["b0"][:, None]]  # [K, U, H0] layer-0 pre-activations
    acts = []
    h = pre[0]
    for i in range(1, num_layers):
        a = jax.nn.relu(h)
        acts.append(a)
        h = jnp.einsum("kbh,khj->kbj", a, rest[f"w{i}"]) + rest[f"b{i}"][:, None]
        pre.append(h)
    q = h[:, net_cells] + config.prior_scale * prior_table[:, batch.cell_tm1]  # [K, B, A]
    one_hot = jax.nn.one_hot(batch.a_tm1, q.shape[-1], dtype=q.dtype)  # [B, A]
    q_sa = jnp.sum(q * one_hot, axis=-1)
    r_kt = jnp.broadcast_to(batch.r_t[None], q_sa.shape)
    if config.noise_scale > 0.0:
        r_kt = r_kt + config.noise_scale * batch.noise_t.T
    delta = r_kt + config.discount * batch.discount_t * jnp.max(q_t, axis=-1) - q_sa
    sigma_mean = jnp.zeros(())
    if config.num_explorers > 0:
        is_x = tdu.explorer_mask(config.num_ensemble, config.num_explorers)
        delta, sigma = tdu.tdu_td_errors(delta, is_x, config.beta if beta is None else beta)
        sigma_mean = sigma.mean()
    w = 1.0 if config.mask_prob >= 1.0 else batch.mask_t.T
    g_qsa = -2.0 * w * delta / delta.shape[1]  # d loss / d q_sa  [K, B]
    # d loss / d (last pre-activation) per distinct row: the samples' [K, A] blocks summed
    # into their row, cell-major (one contiguous block per sample)
    g_q = jnp.swapaxes(g_qsa[..., None] * one_hot, 0, 1)  # [B, K, A]
    dh = jnp.zeros((rows.shape[1], *g_q.shape[1:]), g_q.dtype).at[net_cells].add(g_q)
    dh = jnp.swapaxes(dh, 0, 1)  # [K, U, A]
    grads = {}
    for i in range(num_layers - 1, 0, -1):
        grads[f"w{i}"] = _wgrad(acts[i - 1], dh)
        grads[f"b{i}"] = dh.sum(axis=1)
        dh = _bwd(dh, rest[f"w{i}"]) * (pre[i - 1] > 0)
    grads["b0"] = dh.sum(axis=1)
    return (grads, jnp.swapaxes(dh, 0, 1)), sigma_mean


def _sgd_sparse(state: BootDQNState, batch: Transition, config: BootDQNConfig, beta=None):
    """One SGD step that reads and writes only the first-layer rows of the minibatch's cells.

    The cells ``c_b`` of a minibatch are shared by all members, so the rows ``U = unique(c)``
    (at most ``B``, padded with an out-of-range index that gathers zeros and is dropped on
    write) are gathered once from the cell-major table into ``[W, K, H]`` (``W >= U``, below;
    fed to :func:`fused_grads` as ``[K, W, H]``); the loss is differentiated
    with respect to that sub-table (duplicates' gradients sum, as in the dense gradient), and
    Adam updates those rows' moments and parameters only (lazy Adam, as TF's ``LazyAdam``: rows
    outside the minibatch keep their moments and do not move; bias correction uses the global
    step count). Every other parameter uses optax's dense Adam. Rows with a zero gradient are
    where this differs from dense Adam: there, dense Adam keeps moving a row by its decaying
    momentum ``m_hat / (sqrt(v_hat) + eps)``.

    Work per step scales with the number ``U`` of distinct cells, not with ``B``: the hidden
    layers run on the ``U`` rows (:func:`fused_grads`), and the step is compiled for the
    widths ``row_bucket, 2 row_bucket, ..., B`` with ``lax.switch`` picking the smallest width
    that holds ``U`` (at bsuite's settings on Deep Sea 20, ``U`` is 40-95 of 128). The result
    does not depend on the width (padding rows carry no gradient and are dropped on write).
    Under ``vmap`` with a batched minibatch, ``lax.switch`` becomes a select that runs every
    width: set ``row_bucket = batch_size`` there (one width), or name the vmapped axis
    (``jax.vmap(..., axis_name=config.seed_axis)``): the width is then the widest any seed
    needs (``lax.pmax`` over that axis, an unbatched index), so the switch stays one real
    branch for all seeds.
    """
    rest_opt, rows_opt = state.opt_state
    w0 = state.params["w0"]  # [C, K, H], cell-major
    num_rows, batch_size = w0.shape[0], batch.cell_tm1.shape[0]
    uniq, inv = jnp.unique(
        batch.cell_tm1, size=batch_size, fill_value=num_rows, return_inverse=True
    )
    inv = inv.reshape(batch.cell_tm1.shape)
    if state.target_table is None:
        target = member_major(state.target_params, config)
        q_t = ensemble_q(target, state.prior_table, config.prior_scale, batch.cell_t)
    else:
        q_t = state.target_table[:, batch.cell_t]
    rest = _rest(state.params)
    count = rows_opt.count + 1
    c = count.astype(jnp.float32)

    def rows_step(width: int):
        # distinct cells sort first (the fill value is the largest), so with at most `width`
        # of them, the first `width` entries of `uniq` hold them all
        def branch(_):
            u = uniq[:width]
            rows_c = w0.at[u].get(mode="fill", fill_value=0.0)  # [W, K, H]
            rows = jnp.swapaxes(rows_c, 0, 1)  # [K, W, H]
            (g_rest, g_rows), sigma = fused_grads(
                rest, rows, inv, batch, state.prior_table, q_t, config, beta
            )
            mom = rows_opt.moments.at[u].get(mode="fill", fill_value=0.0)  # [W, 2, K, H]
            mu = _B1 * mom[:, 0] + (1 - _B1) * g_rows
            nu = _B2 * mom[:, 1] + (1 - _B2) * g_rows**2
            m_hat, v_hat = mu / (1 - _B1**c), nu / (1 - _B2**c)
            step = config.learning_rate * m_hat / (jnp.sqrt(v_hat) + _EPS)  # [W, K, H]
            new_rows = rows_c - step
            pad = ((0, batch_size - width), (0, 0), (0, 0))
            return (
                g_rest,
                jnp.pad(new_rows, pad),
                jnp.pad(jnp.stack([mu, nu], 1), pad + pad[-1:]),
                sigma,
            )

        return branch

    widths = _row_widths(batch_size, config.row_bucket)
    n_unique = jnp.sum(uniq < num_rows)
    which = jnp.searchsorted(jnp.asarray(widths), n_unique)  # smallest width >= n_unique
    if config.seed_axis is not None:  # vmapped seeds: the widest any of them needs
        which = jax.lax.pmax(which, config.seed_axis)
    g_rest, new_rows, new_mom, sigma = jax.lax.switch(which, [rows_step(wd) for wd in widths], None)
    upd, rest_opt = _optimizer(config).update(g_rest, rest_opt, rest)
    rest = optax.apply_updates(rest, upd)
    # padding entries of `uniq` are out of range: dropped on write
    params = {**rest, "w0": w0.at[uniq].set(new_rows, mode="drop")}
    moments = rows_opt.moments.at[uniq].set(new_mom, mode="drop")
    return params, (rest_opt, RowAdamState(moments, count)), sigma


def _row_widths(batch_size: int, bucket: int) -> tuple[int, ...]:
    """Static row counts the sparse SGD step is compiled for: multiples of ``bucket`` up to
    the batch size (``bucket >= batch_size``: one width, no branching)."""
    return tuple(range(bucket, batch_size, bucket)) + (batch_size,)


def update(
    key: jax.Array,
    state: BootDQNState,
    cell_tm1: jax.Array,
    a_tm1: jax.Array,
    r_t: jax.Array,
    discount_t: jax.Array,
    cell_t: jax.Array,
    config: BootDQNConfig,
    env_step: jax.Array | None = None,
    beta: jax.Array | float | None = None,
    table_cells: np.ndarray | None = None,
) -> tuple[BootDQNState, jax.Array]:
    """Store a transition; if the replay holds ``min_replay_size`` items (and on the SGD
    period) take one Adam step of every member on a shared minibatch; copy the target
    parameters whenever the SGD-step count is a multiple of ``target_update_period`` (bsuite's
    rule, which also copies at every step before learning starts; with a target table, the
    table of the copied parameters' values is recomputed instead).

    Args:
      key: PRNG key (bootstrap mask, reward noise, minibatch).
      state: agent state.
      cell_tm1, a_tm1, r_t, discount_t, cell_t: the transition (``discount_t`` is the
        environment's, 0 at termination; ``config.discount`` multiplies it).
      config: agent settings.
      env_step: optional 1-based count of environment steps including this one. When it is
        not batched (e.g. derived from ``lax.scan`` indices while seeds are vmapped) learning
        and target copies are real ``lax.cond`` branches instead of selects. Defaults to the
        state's own counter.
      beta: optional traced TDU weight overriding ``config.beta``.
      table_cells: optional static array of the only inputs ``cell_t`` can take; the target
        table is then recomputed at those rows only (see :func:`target_q_table`).

    Returns:
      ``(new_state, sigma)``: ``sigma`` is the minibatch-mean TDU bonus (0 without explorers
      or when no SGD step was taken).
    """
    k_mask, k_noise, k_sample = jax.random.split(key, 3)
    tr = Transition(
        jnp.asarray(cell_tm1, jnp.int32),
        jnp.asarray(a_tm1, jnp.int32),
        jnp.asarray(r_t, jnp.float32),
        jnp.asarray(discount_t, jnp.float32),
        jnp.asarray(cell_t, jnp.int32),
        _draw_mask(k_mask, config),
        _draw_noise(k_noise, config),
    )
    buf = replay.add(state.replay, tr)
    env_steps = state.env_steps + 1 if env_step is None else jnp.asarray(env_step, jnp.int32)
    learn, sgd_steps = learn_schedule(env_steps, config)

    def do_learn(_):
        batch = replay.sample(buf, k_sample, config.batch_size)
        return _sgd(state, batch, config, beta)

    def skip(_):
        return state.params, state.opt_state, jnp.zeros((), jnp.float32)

    params, opt_state, sigma = jax.lax.cond(learn, do_learn, skip, None)
    copy = sgd_steps % config.target_update_period == 0
    table, target, cell_major = state.target_table, None, config.sparse_first_layer
    if table is None:
        target = jax.lax.cond(copy, lambda: params, lambda: state.target_params)
    else:  # recompute only when the copied parameters changed (learn)
        table = jax.lax.cond(
            copy & learn,
            lambda: target_q_table(
                params, state.prior_table, config.prior_scale, table_cells, cell_major
            ),
            lambda: table,
        )
    new = state._replace(
        target_table=table,
        params=params,
        target_params=target,
        opt_state=opt_state,
        replay=buf,
        env_steps=env_steps,
        sgd_steps=sgd_steps.astype(jnp.int32),
    )
    return new, sigma


def make_deep_sea_episodes(
    size: int,
    config: BootDQNConfig,
    num_episodes: int,
    deterministic: bool = True,
    mapping_seed: int | None = 42,
    unscaled_move_cost: float = 0.01,
):
    """``run(agent, key, start_episode=0, beta=None, deterministic=None, action_mapping=None)
    -> (agent, out)``: ``num_episodes`` Deep Sea episodes from a given agent state, one
    ``lax.scan``.

    ``start_episode`` (episodes already run by ``agent``; keep it unbatched under ``vmap``)
    sets the global step count that drives the learning schedule, so training can be resumed
    in chunks. ``beta``, ``deterministic`` and ``action_mapping`` (``[N, N]`` int32) optionally
    override ``config.beta``, the variant and the MDP (all may be traced: one compiled program
    serves every value, and they vmap). ``out`` holds per-episode arrays, see
    :func:`make_deep_sea_train`.
    """
    config.validate()
    if int(num_episodes) < 1:
        raise ValueError(f"make_deep_sea_train: num_episodes must be >= 1, got {num_episodes}")
    env, env_params = deep_sea.make_deep_sea(size, deterministic, mapping_seed, unscaled_move_cost)
    reachable = deep_sea.reachable_cells(size)  # target-table rows worth recomputing

    def episode(agent: BootDQNState, xs, beta, env_params):
        key, ep = xs
        k_head, k_reset, k_steps = jax.random.split(key, 3)
        agent = begin_episode(k_head, agent, config)
        _, env_state = env.reset_env(k_reset, env_params)

        def step(carry, xs_t):
            key_t, t = xs_t
            agent, env_state = carry
            k_act, k_env, k_upd = jax.random.split(key_t, 3)
            cell = deep_sea.cell_index(env_state, size)
            a = act(k_act, agent, cell, config)
            _, env_state, r, done, _ = env.step_env(k_env, env_state, a, env_params)
            next_cell = deep_sea.cell_index(env_state, size)
            agent, sigma = update(
                k_upd,
                agent,
                cell,
                a,
                r,
                1.0 - done.astype(jnp.float32),
                next_cell,
                config,
                env_step=ep * size + t + 1,  # not batched over seeds: real lax.cond
                beta=beta,
                table_cells=reachable,
            )
            return (agent, env_state), (r, sigma)

        (agent, env_state), (r, sigma) = jax.lax.scan(
            step, (agent, env_state), (jax.random.split(k_steps, size), jnp.arange(size))
        )
        out = {
            "return": r.sum(),
            "bad": env_state.bad_episode.astype(jnp.float32),
            "success": (env_state.denoised_return > 0).astype(jnp.float32),
            "sigma": sigma.mean(),
        }
        return agent, out

    def run(
        agent: BootDQNState,
        key: jax.Array,
        start_episode: jax.Array | int = 0,
        beta: jax.Array | float | None = None,
        deterministic: jax.Array | bool | None = None,
        action_mapping: jax.Array | None = None,
    ) -> tuple[BootDQNState, dict[str, jax.Array]]:
        params = env_params
        if deterministic is not None:  # traced: one program serves both variants
            params = params.replace(deterministic=jnp.asarray(deterministic))
        if action_mapping is not None:  # traced: one program serves every MDP
            params = params.replace(action_mapping=jnp.asarray(action_mapping, jnp.int32))
        eps = start_episode + jnp.arange(int(num_episodes))
        xs = (jax.random.split(key, int(num_episodes)), eps)
        return jax.lax.scan(lambda a, x: episode(a, x, beta, params), agent, xs)

    return run


def make_deep_sea_train(
    size: int,
    config: BootDQNConfig,
    num_episodes: int,
    deterministic: bool = True,
    mapping_seed: int | None = 42,
    unscaled_move_cost: float = 0.01,
):
    """``train(key) -> metrics`` for the agent on Deep Sea, one ``lax.scan`` over episodes.

    Args:
      size: Deep Sea ``N`` (episode length ``N``).
      config: agent settings.
      num_episodes: episodes to run (>= 1).
      deterministic, mapping_seed, unscaled_move_cost: see ``deep_sea.make_deep_sea``.

    Returns:
      ``train(key, beta=None, deterministic=None, action_mapping=None)`` (optional overrides
      of ``config.beta``, the variant and the ``[N, N]`` action mapping; all may be traced, so
      seeds, agents, variants and MDPs vmap into one program) returning per-episode arrays
      ``[num_episodes]``: ``return`` (episode return), ``bad`` (1 if left while on the
      diagonal), ``success`` (1 if the +1 treasure was collected), ``sigma`` (mean TDU bonus
      over the episode's minibatches).
    """
    run = make_deep_sea_episodes(
        size, config, num_episodes, deterministic, mapping_seed, unscaled_move_cost
    )
    num_cells = size * size

    def train(
        key: jax.Array,
        beta: jax.Array | float | None = None,
        deterministic: jax.Array | bool | None = None,
        action_mapping: jax.Array | None = None,
    ) -> dict[str, jax.Array]:
        k_init, k_run = jax.random.split(key)
        agent = init(k_init, config, num_cells, 2)
        return run(agent, k_run, 0, beta, deterministic, action_mapping)[1]

    return train
