"""A small ALE adapter: game modes and difficulties, frame skip, downsampled grey frames.

ALE is a C++ emulator stepped from Python; nothing here is traced by JAX. ale-py 0.12's
vectorised ``AtariVectorEnv`` / ``ALEVectorInterface`` takes no game mode or difficulty
argument, so the curricula need the plain ``ALEInterface`` (``setMode``/``setDifficulty``);
:class:`VariantBatch` steps several of them in lock-step so that one jitted, vmapped agent
call serves every variant at once.

Observation: the per-step grey frame is the pixel-wise max of the last two emulator frames of
the skipped block (removes sprite flicker), area-downsampled to ``obs_hw`` by two averaging
matrices, scaled to ``uint8``; the agent sees the last ``stack`` such frames, shape
``(stack, H, W)``. Rewards are the raw game score increments summed over the skipped frames.
"""

from __future__ import annotations

import numpy as np

SCREEN_HW = (210, 160)


def load_ale(game: str, mode: int | None = None, difficulty: int | None = None, seed: int = 0):
    """An ``ale_py.ALEInterface`` with ``game`` loaded (ROM shipped in the ale-py wheel).

    Sticky actions are off (``repeat_action_probability = 0``); ``mode``/``difficulty`` are
    applied and the game reset when given.

    Raises:
      ImportError: ale-py is not installed (the ``atari`` extra).
      ValueError: the mode or difficulty is not one the emulator offers for this game.
    """
    try:
        import ale_py
        from ale_py import roms
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise ImportError("the Atari curricula need ale-py: pip install 'metalab[atari]'") from e
    ale = ale_py.ALEInterface()
    ale.setLoggerMode(ale_py.LoggerMode.Error)
    ale.setInt("random_seed", int(seed) % (2**31 - 1))
    ale.setFloat("repeat_action_probability", 0.0)
    ale.loadROM(roms.get_rom_path(game))
    if mode is not None:
        modes = list(ale.getAvailableModes())
        if mode not in modes:
            raise ValueError(f"{game}: mode={mode} not available; allowed: {modes}")
        ale.setMode(int(mode))
    if difficulty is not None:
        diffs = list(ale.getAvailableDifficulties())
        if difficulty not in diffs:
            raise ValueError(f"{game}: difficulty={difficulty} not available; allowed: {diffs}")
        ale.setDifficulty(int(difficulty))
    ale.reset_game()
    return ale


def bin_edges(n_in: int, n_out: int) -> np.ndarray:
    """Start indices of ``n_out`` contiguous, near-equal integer bins covering ``0..n_in``."""
    if not 0 < n_out <= n_in:
        raise ValueError(f"downsampled size must be in 1..{n_in}, got {n_out}")
    return np.round(np.linspace(0, n_in, n_out + 1)).astype(np.int64)


def downsample(frame: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Mean over integer bins of rows and columns (exact block mean when sizes divide).

    Block reshape when the sizes divide, else ``np.add.reduceat`` over :func:`bin_edges`; a
    BLAS matmul with averaging matrices was ~8x slower on a contended 2-core machine.
    Rounds half up to ``uint8``.
    """
    (h, w), (oh, ow) = frame.shape, out_hw
    if h % oh == 0 and w % ow == 0:
        fh, fw = h // oh, w // ow
        b = frame.astype(np.uint16).reshape(oh, fh, w)
        r = b[:, 0].copy()
        for k in range(1, fh):  # strided slice sums beat a multi-axis reduction here
            r += b[:, k]
        c = r.reshape(oh, ow, fw)
        s = c[..., 0].astype(np.uint32)
        for k in range(1, fw):
            s += c[..., k]
        counts = np.uint32(fh * fw)
    else:
        rows, cols = bin_edges(h, oh), bin_edges(w, ow)
        s = np.add.reduceat(frame.astype(np.uint32), rows[:-1], axis=0)
        s = np.add.reduceat(s, cols[:-1], axis=1)
        counts = (np.diff(rows)[:, None] * np.diff(cols)[None, :]).astype(np.uint32)
    return ((s + counts // 2) // counts).astype(np.uint8)


class AtariVariantEnv:
    """One ALE game variant with frame skip, max-pooling, downsampling and frame stacking.

    Args:
      game, mode, difficulty: the variant.
      seed: emulator seed (also seeds the no-op starts).
      frame_skip: emulator frames per agent step (the action is repeated).
      obs_hw: downsampled frame size ``(H, W)``.
      stack: number of stacked frames in an observation.
      noop_max: up to this many random no-op steps after each reset (0 disables).
      max_episode_steps: agent steps after which an episode is truncated.
    """

    def __init__(
        self,
        game: str,
        mode: int,
        difficulty: int,
        seed: int = 0,
        frame_skip: int = 4,
        obs_hw: tuple[int, int] = (42, 40),
        stack: int = 2,
        noop_max: int = 0,
        max_episode_steps: int = 27_000,
    ) -> None:
        if frame_skip < 1:
            raise ValueError(f"frame_skip must be >= 1, got {frame_skip}")
        if stack < 1:
            raise ValueError(f"stack must be >= 1, got {stack}")
        self.game, self.mode, self.difficulty = game, int(mode), int(difficulty)
        self.ale = load_ale(game, mode, difficulty, seed)
        self.actions = list(self.ale.getMinimalActionSet())
        self.num_actions = len(self.actions)
        self.frame_skip, self.stack, self.noop_max = frame_skip, stack, noop_max
        self.max_episode_steps = max_episode_steps
        self._rng = np.random.default_rng(seed)
        self.obs_hw = (int(obs_hw[0]), int(obs_hw[1]))
        bin_edges(SCREEN_HW[0], self.obs_hw[0]), bin_edges(SCREEN_HW[1], self.obs_hw[1])
        self._buf = np.empty((2, *SCREEN_HW), np.uint8)
        self._frames = np.zeros((stack, *obs_hw), np.uint8)
        self._t = 0
        self.episode_return = 0.0

    def _frame(self) -> np.ndarray:
        self.ale.getScreenGrayscale(self._buf[1])
        return downsample(np.maximum(self._buf[0], self._buf[1]), self.obs_hw)

    def _push(self, frame: np.ndarray) -> np.ndarray:
        self._frames[:-1] = self._frames[1:]
        self._frames[-1] = frame
        return self._frames.copy()

    def reset(self) -> np.ndarray:
        """Reset the game (and the no-op start); return the first stacked observation."""
        self.ale.reset_game()
        n = int(self._rng.integers(0, self.noop_max + 1)) if self.noop_max else 0
        for _ in range(n):
            self.ale.act(self.actions[0])
            if self.ale.game_over():
                self.ale.reset_game()
        self.ale.getScreenGrayscale(self._buf[0])
        self._frames[:] = 0
        self._t = 0
        self.episode_return = 0.0
        return self._push(self._frame())

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        """Repeat ``action`` (an index into the minimal action set) for ``frame_skip`` frames.

        Returns:
          ``(obs, reward, done)``; ``done`` is True at game over or truncation (the caller
          resets). Rewards are raw score increments (not clipped here).
        """
        if not 0 <= action < self.num_actions:
            raise ValueError(f"action must be in 0..{self.num_actions - 1}, got {action}")
        a = self.actions[int(action)]
        reward = 0.0
        for i in range(self.frame_skip):
            if i == self.frame_skip - 1:
                self.ale.getScreenGrayscale(self._buf[0])
            reward += self.ale.act(a)
            if self.ale.game_over():
                break
        self._t += 1
        self.episode_return += reward
        done = self.ale.game_over() or self._t >= self.max_episode_steps
        return self._push(self._frame()), reward, bool(done)


class VariantBatch:
    """Several :class:`AtariVariantEnv` stepped in lock-step with automatic reset.

    All envs must share the number of actions (true for variants of one game). ``step``
    returns the *next* observations (reset observations where an episode ended), rewards,
    dones and the returns of the episodes that just ended (``nan`` elsewhere).
    """

    def __init__(self, envs: list[AtariVariantEnv]) -> None:
        if not envs:
            raise ValueError("VariantBatch needs at least one env")
        n = {e.num_actions for e in envs}
        if len(n) != 1:
            raise ValueError(f"all variants must share the action set size, got {sorted(n)}")
        self.envs = envs
        self.num_actions = n.pop()

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self) -> np.ndarray:
        return np.stack([e.reset() for e in self.envs])

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        obs, rew, done, ret = [], [], [], []
        for e, a in zip(self.envs, np.asarray(actions), strict=True):
            o, r, d = e.step(int(a))
            ret.append(e.episode_return if d else np.nan)
            if d:
                o = e.reset()
            obs.append(o)
            rew.append(r)
            done.append(d)
        return (
            np.stack(obs),
            np.asarray(rew, np.float32),
            np.asarray(done, bool),
            np.asarray(ret, np.float64),
        )
