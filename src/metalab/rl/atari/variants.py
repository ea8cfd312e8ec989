"""Game variants of the Atari 2600 curricula and their factors of variation.

Reference: Rusu, Flennerhag, Rao, Pascanu, Hadsell (2022). *Probing Transfer in Deep
Reinforcement Learning without Task Engineering* (CoLLAs 2022, arXiv:2210.12448).

A *variant* is one (game, mode, difficulty) triple that the emulator accepts. The modes and
difficulties are read from the emulator itself (``ALEInterface.getAvailableModes`` and
``getAvailableDifficulties``), never hard-coded; what is hard-coded is how a mode number is
decomposed into human-designed *factors of variation* (the game manual's switches), which is
what the ANOVA uses as explanatory variables.

Factor coding (see ``docs/atari-transfer.md`` for the sources and what is unverified):

* ``space_invaders``: 16 modes = 2^4 one-player games; bit ``b`` of the mode is one binary
  factor. The manual lists four one-player features (moving shields, zigzagging laser bombs,
  fast laser bombs, invisible invaders); assigning them to bits 0..3 in that order is our
  inference from the manual's ordering, not verified frame by frame. Difficulty switch A
  (ALE difficulty 1) makes the player's laser cannon wider.
* ``breakout``: 12 modes ``0, 4, ..., 44``; ``k = mode // 4`` is the manual's game number
  minus one. We code ``k // 4`` as a 3-level ``game_type`` factor and ``k % 4`` as a 4-level
  ``rule`` factor (the manual groups its games in blocks of four; the meaning of the levels is
  not verified here). Difficulty A makes the paddle smaller (secondary sources).
* ``freeway``: 8 modes (the manual's games 1-8, eight traffic scenarios); we code
  ``mode % 4`` as a 4-level ``traffic`` factor and ``mode // 4`` as a binary ``block`` factor
  (the two blocks of four scenarios; the exact traffic rules per block are unverified).
  Difficulty A: a hit chicken is knocked back to the start; B (ALE 0): back one lane
  (Activision manual).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

GAMES = ("space_invaders", "breakout", "freeway")

FACTOR_DOCS: dict[str, dict[str, str]] = {
    "space_invaders": {
        "shields": "mode bit 0: moving shields (inferred from the manual's feature order)",
        "zigzag": "mode bit 1: zigzagging laser bombs (inferred)",
        "fast_bombs": "mode bit 2: fast laser bombs (inferred)",
        "invisible": "mode bit 3: invisible invaders (inferred)",
        "difficulty": "left difficulty switch: 0 = B (normal), 1 = A (wider, easier-to-hit "
        "laser cannon)",
    },
    "breakout": {
        "game_type": "(mode // 4) // 4: block of four games in the manual (3 levels; "
        "meaning of each block unverified)",
        "rule": "(mode // 4) % 4: game within a block (4 levels; unverified)",
        "difficulty": "0 = B (normal paddle), 1 = A (smaller paddle; secondary sources)",
    },
    "freeway": {
        "traffic": "mode % 4: traffic scenario within a block of four (4 levels)",
        "block": "mode // 4: first or second block of four scenarios (games 1-4 vs 5-8)",
        "difficulty": "0 = B (hit chicken knocked back one lane), 1 = A (knocked back to "
        "the start); Activision manual",
    },
}


@dataclass(frozen=True)
class Variant:
    """One game variant: ``(game, mode, difficulty)`` and its factor levels.

    Attributes:
      game: ROM name (``"space_invaders"``, ``"breakout"``, ``"freeway"``).
      mode: ALE game mode (as returned by ``getAvailableModes``).
      difficulty: ALE difficulty (as returned by ``getAvailableDifficulties``).
      factors: ``((factor_name, level), ...)`` in :data:`FACTOR_DOCS` order.
    """

    game: str
    mode: int
    difficulty: int
    factors: tuple[tuple[str, int], ...]

    @property
    def name(self) -> str:
        return f"{self.game}/m{self.mode}/d{self.difficulty}"

    def factor_dict(self) -> dict[str, int]:
        return dict(self.factors)


def _check_game(game: str) -> None:
    if game not in GAMES:
        raise ValueError(f"game={game!r} is not supported; allowed: {', '.join(GAMES)}")


def mode_factors(game: str, mode: int) -> dict[str, int]:
    """Decompose an ALE mode number into the game's factor levels (difficulty excluded)."""
    _check_game(game)
    if game == "space_invaders":
        if not 0 <= mode < 16:
            raise ValueError(f"space_invaders mode must be in 0..15, got {mode}")
        names = ("shields", "zigzag", "fast_bombs", "invisible")
        return {n: (mode >> b) & 1 for b, n in enumerate(names)}
    if game == "breakout":
        if mode % 4 or not 0 <= mode <= 44:
            raise ValueError(f"breakout mode must be one of 0, 4, ..., 44; got {mode}")
        k = mode // 4
        return {"game_type": k // 4, "rule": k % 4}
    if not 0 <= mode < 8:
        raise ValueError(f"freeway mode must be in 0..7, got {mode}")
    return {"traffic": mode % 4, "block": mode // 4}


def make_variant(game: str, mode: int, difficulty: int) -> Variant:
    """Build a :class:`Variant` with its factor levels (no emulator check; see
    :func:`enumerate_variants` for the emulator's list)."""
    f = mode_factors(game, mode)
    if difficulty not in (0, 1):
        raise ValueError(f"difficulty must be 0 or 1 for {game}, got {difficulty}")
    f["difficulty"] = int(difficulty)
    order = tuple(FACTOR_DOCS[game])
    return Variant(game, int(mode), int(difficulty), tuple((k, f[k]) for k in order))


@functools.cache
def available_modes_difficulties(game: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(modes, difficulties)`` exactly as the emulator reports them for ``game``."""
    _check_game(game)
    from metalab.rl.atari.env import load_ale

    ale = load_ale(game)
    modes = tuple(int(m) for m in ale.getAvailableModes())
    diffs = tuple(int(d) for d in ale.getAvailableDifficulties())
    return modes, diffs


def enumerate_variants(game: str) -> tuple[Variant, ...]:
    """Every (mode, difficulty) variant the emulator exposes for ``game``, with factors.

    The product ``modes x difficulties`` from the emulator; the factor decomposition of each
    mode is :func:`mode_factors`. Space Invaders gives 32 variants, Breakout 24, Freeway 16.
    """
    modes, diffs = available_modes_difficulties(game)
    return tuple(make_variant(game, m, d) for m in modes for d in diffs)


def select_variants(
    game: str, modes: tuple[int, ...] = (), difficulties: tuple[int, ...] = ()
) -> tuple[Variant, ...]:
    """Variants of ``game`` restricted to ``modes`` and ``difficulties`` (empty = all).

    Raises:
      ValueError: a requested mode or difficulty is not available in the emulator.
    """
    all_modes, all_diffs = available_modes_difficulties(game)
    for name, req, avail in (
        ("modes", modes, all_modes),
        ("difficulties", difficulties, all_diffs),
    ):
        bad = [x for x in req if x not in avail]
        if bad:
            raise ValueError(f"{game}: {name} {bad} not available; the emulator offers {avail}")
    ms = modes or all_modes
    ds = difficulties or all_diffs
    return tuple(make_variant(game, m, d) for m in ms for d in ds)


def factor_table(variants: tuple[Variant, ...]):
    """A pandas DataFrame with one row per variant: name, game, mode, difficulty, factors."""
    import pandas as pd

    rows = []
    for v in variants:
        row = {"variant": v.name, "game": v.game, "mode": v.mode}
        row.update(v.factor_dict())
        rows.append(row)
    return pd.DataFrame(rows)
