"""n-step actor-critic: returns, loss terms and hyperparameter gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metalab.rl import actor_critic as ac


def _apply(p, obs):
    """Values read from obs[..., 0]; logits = obs[..., 1:] * w (a known, tiny 'network')."""
    return obs[..., 1:] * p["w"], obs[..., 0]


def _rollout():
    # T = 3, E = 1, 2 actions; obs = [value, feat_a0, feat_a1]
    obs = jnp.array([[[0.5, 1.0, 0.0]], [[0.2, 0.0, 1.0]], [[-0.1, 1.0, 1.0]], [[0.4, 0.0, 0.0]]])
    return ac.Rollout(
        obs=obs, actions=jnp.array([[0], [1], [0]]), rewards=jnp.array([[1.0], [0.0], [-1.0]])
    )


def test_terms_match_hand_computation():
    ro, p = _rollout(), {"w": jnp.array(0.3)}
    h = ac.make_hyper(entropy=0.1, lr=0.5, discount=0.9)
    t = jax.jit(lambda p, h, ro: ac.ac_terms(p, h, ro, _apply))(p, h, ro)
    g2 = -1.0 + 0.9 * 0.4
    g1 = 0.0 + 0.9 * g2
    g0 = 1.0 + 0.9 * g1
    adv = np.array([g0 - 0.5, g1 - 0.2, g2 + 0.1])
    np.testing.assert_allclose(t["adv"][:, 0], adv, rtol=1e-5)
    logits = np.array([[0.3, 0.0], [0.0, 0.3], [0.3, 0.3]])
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    pg = -np.mean(logp[[0, 1, 2], [0, 1, 0]] * adv)
    ent = np.mean(-(np.exp(logp) * logp).sum(-1))
    assert float(t["pg"]) == pytest.approx(pg, rel=1e-5)
    assert float(t["entropy"]) == pytest.approx(ent, rel=1e-5)
    assert float(t["value"]) == pytest.approx(0.5 * np.mean(adv**2), rel=1e-5)
    loss = ac.ac_loss(p, h, ro, _apply)
    assert float(loss) == pytest.approx(pg + 0.5 * 0.5 * np.mean(adv**2) - 0.1 * ent, rel=1e-5)


def test_update_is_differentiable_in_the_entropy_weight():
    ro, p = _rollout(), {"w": jnp.array(0.3)}

    def after(beta):
        h = ac.make_hyper(entropy=0.1, lr=0.5, discount=0.9)._replace(entropy=beta)
        return ac.ac_update(p, h, ro, _apply)["w"]

    g = jax.jit(jax.grad(after))(0.1)
    after_j = jax.jit(after)
    fd = (after_j(0.1 + 1e-3) - after_j(0.1 - 1e-3)) / 2e-3
    assert float(g) == pytest.approx(float(fd), rel=1e-2)
    # more entropy bonus moves w towards 0 (the uniform policy) from w > 0
    assert float(g) < 0


def test_make_hyper_rejects_bad_values():
    with pytest.raises(ValueError, match="discount"):
        ac.make_hyper(discount=1.0)
    with pytest.raises(ValueError, match="lr"):
        ac.make_hyper(lr=0.0)
    with pytest.raises(ValueError, match="entropy"):
        ac.make_hyper(entropy=-0.1)
