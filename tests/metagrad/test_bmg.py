"""BMG meta-gradients: the L = 0 reduction, the L2 identity, KL matching gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.metagrad import bmg

A = jnp.array([[1.0, 0.5, 0.0], [0.2, 1.5, -0.3], [0.0, 0.1, 0.8]])
X0 = jnp.array([0.3, -0.2, 0.5])
BATCHES = jnp.array([[1.0, 0.0, 0.5], [0.5, -1.0, 0.2], [0.0, 0.3, -0.4]])  # K = 3
TARGET_B = jnp.array([0.2, 0.4, -0.1])


def f(x, b):  # outer objective, minimised
    return 0.5 * jnp.sum((A @ x - b) ** 2)


def update(x, w, b):  # inner rule: SGD on f with meta-learned step size w
    return x - w * jax.grad(f)(x, b)


def manual_mg(w):  # independent route: python loop, no scan
    x = X0
    for b in BATCHES:
        x = update(x, w, b)
    return f(x, TARGET_B)


def mg(**kw):
    return bmg.meta_gradient(update, f, **kw)


def test_L0_is_the_standard_meta_gradient():
    w = jnp.float32(0.2)
    loss, g = jax.jit(lambda w: mg(num_bootstrap=0).meta_grad(w, X0, BATCHES, TARGET_B))(w)
    assert float(loss) == pytest.approx(float(manual_mg(w)), rel=1e-5)
    assert float(g) == pytest.approx(float(jax.jit(jax.grad(manual_mg))(w)), rel=1e-4)
    fd = (manual_mg(w + 1e-3) - manual_mg(w - 1e-3)) / 2e-3
    assert float(g) == pytest.approx(float(fd), rel=1e-2)


@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_L1_squared_distance_equals_alpha_times_meta_gradient(alpha):
    w = jnp.float32(0.2)
    fn = mg(num_bootstrap=1, match="l2", target_step=alpha).meta_grad
    _, g_bmg = jax.jit(lambda w: fn(w, X0, BATCHES, TARGET_B))(w)
    _, g_mg = jax.jit(lambda w: mg(num_bootstrap=0).meta_grad(w, X0, BATCHES, TARGET_B))(w)
    assert float(g_bmg) == pytest.approx(alpha * float(g_mg), rel=1e-4)


def test_kl_matching_gradient_hand_computed_and_finite_differences():
    # K = 1, params are logits of 3 states x 3 actions flattened; project = reshape
    x0 = jnp.linspace(-0.5, 0.5, 9)
    g0 = jnp.linspace(1.0, -1.0, 9)
    tb = jnp.array([1.0, -0.5, 0.3, 0.0, 0.2, -0.2, 0.5, 0.1, -0.3])

    def upd(x, w, b):
        return x - w * b  # b plays the (constant) gradient

    def obj(x, b):
        return 0.5 * jnp.sum((x - b) ** 2)

    def proj(x, _):
        return x.reshape(3, 3)

    w, alpha, L = jnp.float32(0.3), 0.5, 2
    method = bmg.meta_gradient(
        upd, obj, num_bootstrap=L, target_step=alpha, match="kl", project_fn=proj
    )

    def loss(w):
        return method.meta_loss(w, x0, g0[None], tb)

    g = jax.jit(jax.grad(loss))(w)
    # hand: x1 = x0 - w g0; target = sg[x1 - w tb (L-1=1 update) then - alpha (x - tb)]
    x1 = x0 - w * g0
    xt = x1 - w * tb
    xt = xt - alpha * (xt - tb)
    p_t = jax.nn.softmax(xt.reshape(3, 3), -1)
    p_1 = jax.nn.softmax(x1.reshape(3, 3), -1)
    hand = jnp.sum((p_1 - p_t).reshape(-1) * (-g0))  # d KL(p_t || softmax(x1)) / dw, target fixed
    assert float(g) == pytest.approx(float(hand), rel=1e-4)
    # finite differences on the same loss with the target frozen at w
    target = jax.lax.stop_gradient(xt)

    def frozen(v):
        lt = jax.nn.log_softmax(target.reshape(3, 3), -1)
        lo = jax.nn.log_softmax((x0 - v * g0).reshape(3, 3), -1)
        return jnp.sum(jnp.exp(lt) * (lt - lo))

    fd = (frozen(w + 1e-3) - frozen(w - 1e-3)) / 2e-3
    assert float(g) == pytest.approx(float(fd), rel=1e-2)


def test_truncation_keeps_only_the_last_updates():
    """Truncation 1 of K = 3 inner steps equals the meta-gradient through the last step only."""
    w = jnp.float32(0.2)

    def last_only(w):
        x = X0
        for b in BATCHES[:-1]:
            x = jax.lax.stop_gradient(update(x, w, b))
        return f(update(x, w, BATCHES[-1]), TARGET_B)

    _, g = jax.jit(lambda w: mg(truncation=1).meta_grad(w, X0, BATCHES, TARGET_B))(w)
    assert float(g) == pytest.approx(float(jax.grad(last_only)(w)), rel=1e-4)


@pytest.mark.parametrize(
    "kw,msg",
    [
        (dict(num_bootstrap=-1), "num_bootstrap"),
        (dict(match="cosine"), "match"),
        (dict(target_step=0.0), "target_step"),
    ],
)
def test_bad_settings_raise(kw, msg):
    with pytest.raises(ValueError, match=msg):
        mg(**kw)


def test_kl_without_projection_raises():
    with pytest.raises(ValueError, match="project_fn"):
        mg(num_bootstrap=1, match="kl")


# --- the meta-gradient actor-critic and the epsilon learner -------------------------------


def test_meta_ac_with_zero_meta_lr_equals_the_fixed_baseline():
    from metalab.metagrad import meta_ac
    from metalab.rl import actor_critic as ac
    from metalab.rl.envs import two_colours as tc

    env = tc.env_fns(tc.TwoColoursParams(swap_every=8, step_cost=0.01, size=3))
    net = ac.ACNet(num_actions=tc.NUM_ACTIONS)
    base = ac.make_hyper(entropy=0.05, lr=1.0, discount=0.9)

    def hyper_fn(phi, c):
        return base._replace(entropy=jax.nn.sigmoid(phi))

    common = dict(num_envs=2, rollout_len=3, num_meta_steps=6, num_bootstrap=1, meta_lr=0.0)
    runs = {
        mode: jax.jit(
            meta_ac.make_train(meta_ac.MetaACConfig(mode=mode, **common), env, net, hyper_fn)
        )
        for mode in ("meta", "fixed")
    }
    key = jax.random.PRNGKey(0)
    params = meta_ac.MetaACParams(jnp.float32(-2.0), jnp.ones(meta_ac.NUM_CONTEXT))
    m, f = runs["meta"](key, params), runs["fixed"](key, params)
    np.testing.assert_allclose(m["reward"], f["reward"])
    assert np.all(np.isfinite(m["meta_loss"])) and float(jnp.abs(m["meta_loss"]).sum()) > 0
    with pytest.raises(ValueError, match="mode"):
        meta_ac.MetaACConfig(mode="sometimes")


def test_epsilon_meta_loss_pushes_epsilon_by_greedy_agreement():
    from metalab.metagrad import bmg_epsilon

    q = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    same, flipped = q, jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]])
    states = jnp.array([0, 1])
    phi = jnp.float32(-2.0)  # epsilon ~ 0.12
    grad = jax.jit(jax.grad(bmg_epsilon.epsilon_meta_loss))
    g_same = grad(phi, q, same, states)
    g_flip = grad(phi, q, flipped, states)
    assert float(g_same) > 0  # target agrees everywhere: decrease epsilon
    assert float(g_flip) < 0  # target's greedy action changes in one state: increase epsilon
    # hand value for the agreeing case: KL(onehot || (1-e) onehot + e/3) = -log(1 - 2e/3)
    e = jax.nn.sigmoid(phi)
    val = bmg_epsilon.epsilon_meta_loss(phi, q, same, states)
    assert float(val) == pytest.approx(float(-jnp.log(1 - 2 * e / 3)), rel=1e-5)


def test_epsilon_meta_gradient_target_is_L_sweeps_ahead():
    """meta_loss(phi, q, tr) equals the KL to the greedy policy of Q after L hand-run sweeps."""
    from metalab.metagrad import bmg_epsilon
    from metalab.rl import q_learning as ql

    tr = ql.Transitions(
        s=jnp.array([[0, 1], [1, 2]]),
        a=jnp.array([[1, 0], [2, 1]]),
        r=jnp.array([[1.0, 0.0], [0.0, 1.0]]),
        s2=jnp.array([[1, 2], [2, 0]]),
        done=jnp.array([[False, False], [False, True]]),
    )
    q = jnp.zeros((3, 3))
    for L in (1, 3):
        qq = q
        for _ in range(L):
            qq = ql.q_update(qq, tr, 0.5, 0.9)
        want = bmg_epsilon.epsilon_meta_loss(0.3, q, qq, tr.s.reshape(-1))
        got = bmg_epsilon.epsilon_meta_gradient(0.5, 0.9, L).meta_loss(0.3, q, tr)
        assert float(got) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ValueError, match="num_bootstrap"):
        bmg_epsilon.epsilon_meta_gradient(0.5, 0.9, 0)


def test_two_colours_and_epsilon_verdicts_can_pass_and_fail():
    from metalab.core.checks import stack_seeds
    from metalab.experiments import bmg_epsilon as be
    from metalab.experiments import bmg_two_colours as b2

    rng = np.random.default_rng(0)
    cfg = b2.PRESETS["quick"]  # L in (0, 1, 2, 4)

    def fake2(means):
        return {
            f"lifetime/{b2._label(L)}": np.float32(m + 0.005 * rng.normal())
            for L, m in means.items()
        }

    good = [fake2({0: 0.1, 1: 0.15, 2: 0.2, 4: 0.25}) for _ in range(5)]
    assert b2.EXPERIMENT.judge(good, cfg).reproduced
    bad = [fake2({0: 0.3, 1: 0.25, 2: 0.2, 4: 0.1}) for _ in range(5)]
    assert not any(c.passed for c in b2.EXPERIMENT.judge(bad, cfg).checks)

    ecfg = be.PRESETS["smoke"]

    def fake_e(bmg, fixed):
        m = {
            f"return/{be._label(e)}": np.float32(fixed + 0.005 * rng.normal())
            for e in be.FIXED_EPSILONS
        }
        m["return/bmg"] = np.float32(bmg + 0.005 * rng.normal())
        m["epsilon/bmg"] = np.array([0.1, 0.01], np.float32)
        return m

    assert be.EXPERIMENT.judge([fake_e(0.9, 0.7) for _ in range(5)], ecfg).reproduced
    # within noise of the grid: superiority cannot pass on a tie
    v = be.verdict(stack_seeds([fake_e(0.7, 0.7) for _ in range(5)]), ecfg)
    assert not v.reproduced
