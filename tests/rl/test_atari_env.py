"""ALE adapter and variant enumeration, checked against the emulator itself."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

pytest.importorskip("ale_py")

from metalab.rl.atari.env import AtariVariantEnv, VariantBatch, bin_edges, downsample, load_ale
from metalab.rl.atari.variants import (
    FACTOR_DOCS,
    GAMES,
    enumerate_variants,
    factor_table,
    make_variant,
    mode_factors,
    select_variants,
)

EXPECTED = {"space_invaders": (16, 2), "breakout": (12, 2), "freeway": (8, 2)}


@pytest.mark.parametrize("game", GAMES)
def test_enumeration_matches_the_emulator(game):
    ale = load_ale(game)
    modes = [int(m) for m in ale.getAvailableModes()]
    diffs = [int(d) for d in ale.getAvailableDifficulties()]
    assert (len(modes), len(diffs)) == EXPECTED[game]
    vs = enumerate_variants(game)
    assert [(v.mode, v.difficulty) for v in vs] == list(itertools.product(modes, diffs))
    # The factor coding is a bijection between modes and factor-level tuples.
    levels = {tuple(v for k, v in x.factors if k != "difficulty") for x in vs if x.difficulty == 0}
    assert len(levels) == len(modes)
    assert [k for k, _ in vs[0].factors] == list(FACTOR_DOCS[game])
    table = factor_table(vs)
    assert len(table) == len(vs) and set(FACTOR_DOCS[game]) <= set(table.columns)


def test_factor_decomposition_by_hand():
    assert mode_factors("space_invaders", 13) == {
        "shields": 1,
        "zigzag": 0,
        "fast_bombs": 1,
        "invisible": 1,
    }
    assert mode_factors("breakout", 28) == {"game_type": 1, "rule": 3}
    assert mode_factors("freeway", 6) == {"traffic": 2, "block": 1}
    assert make_variant("freeway", 6, 1).name == "freeway/m6/d1"


def test_bad_variants_name_the_allowed_values():
    with pytest.raises(ValueError, match="breakout mode must be one of"):
        mode_factors("breakout", 3)
    with pytest.raises(ValueError, match="not supported; allowed"):
        mode_factors("pong", 0)
    with pytest.raises(ValueError, match=r"modes \[99\] not available"):
        select_variants("freeway", modes=(0, 99))
    with pytest.raises(ValueError, match="mode=3 not available"):
        load_ale("breakout", mode=3)


def _invader_pixels(mode: int) -> float:
    ale = load_ale("space_invaders", mode, 0)
    noop = ale.getMinimalActionSet()[0]
    px = []
    for t in range(120):
        ale.act(noop)
        if t % 20 == 19:
            px.append((ale.getScreenGrayscale()[30:150] > 0).sum())
    return float(np.mean(px))


def test_space_invaders_invisible_invaders_bit_is_mode_bit_3():
    """The documented meaning of a factor, checked on the screen: invaders vanish in mode 8."""
    visible, invisible = _invader_pixels(0), _invader_pixels(8)
    assert visible > 500 and invisible < 50


def test_downsample_is_the_block_mean():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (210, 160), dtype=np.uint8)
    ref = np.floor(frame.reshape(42, 5, 40, 4).astype(float).mean((1, 3)) + 0.5)
    np.testing.assert_array_equal(downsample(frame, (42, 40)), ref)
    # Non-divisible sizes: integer bins from bin_edges, checked by an explicit loop.
    out = downsample(frame, (84, 84))
    r, c = bin_edges(210, 84), bin_edges(160, 84)
    for i, j in [(0, 0), (41, 17), (83, 83)]:
        block = frame[r[i] : r[i + 1], c[j] : c[j + 1]].astype(float)
        assert out[i, j] == np.floor(block.mean() + 0.5)
    assert r[0] == 0 and r[-1] == 210 and np.all(np.diff(r) >= 2)


def test_env_steps_and_batch_autoreset():
    env = AtariVariantEnv("breakout", 4, 1, seed=3, obs_hw=(42, 40), stack=3, max_episode_steps=5)
    obs = env.reset()
    assert obs.shape == (3, 42, 40) and obs.dtype == np.uint8
    assert env.num_actions == 4
    dones = [env.step(1)[2] for _ in range(5)]
    assert dones == [False] * 4 + [True]  # truncation at max_episode_steps
    with pytest.raises(ValueError, match="action must be in 0..3"):
        env.step(7)
    batch = VariantBatch(
        [AtariVariantEnv("freeway", m, 0, seed=m, max_episode_steps=3) for m in (0, 5)]
    )
    obs = batch.reset()
    assert obs.shape == (2, 2, 42, 40)
    for _t in range(3):
        obs, rew, done, ret = batch.step(np.array([1, 1]))
    assert done.all() and np.isfinite(ret).all() and np.isfinite(rew).all()
    assert all(e._t == 0 for e in batch.envs)  # reset after the truncated episode
