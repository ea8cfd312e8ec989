r"""Procedurally rendered scenes with language goals (pure JAX).

The environment for VLM rewards (Baumli et al. 2023, *Vision-Language Models as a Source of
Rewards*, arXiv:2312.09187), built small enough to train everything here:

* a ``grid x grid`` board holds ``num_objects`` distinct objects, each a (colour, shape) pair
  from :data:`COLORS` x :data:`SHAPES`, and an agent;
* the observation is an RGB image (``grid*cell`` pixels square): each object is drawn as its
  shape in the 3x3 interior of its cell, the agent as a white ring on the border of its cell
  (so an agent standing on an object leaves the object visible);
* a goal is a language string, ``"agent on <colour> <shape>"`` naming one object in the scene;
  ground-truth success is the agent standing on that object;
* actions: 0 up, 1 down, 2 left, 3 right (walls block). An episode ends on success or after
  ``max_steps`` steps.

Held-out compositions (zero-shot evaluation of a reward model): ``types`` restricts which object
types appear in a scene at all and ``goal_types`` which of them can be the goal. A reward model
trained on scenes of ``SceneEnv(types=seen)`` never sees the other (colour, shape) compositions,
in images or captions; ``SceneEnv(goal_types=heldout)`` then asks it for exactly those.
:func:`latin_square_heldout` gives one held-out shape per colour, so every colour and every
shape word still occurs in training (in other compositions).

Text is a fixed-length sequence of token ids over :data:`VOCAB` (0 is padding). The caption of
any scene (what the agent stands on) is :func:`caption_tokens`; the goal strings are the
captions of the success states, so a contrastive image-text model trained on captioned scenes
can score goals.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import struct

COLORS = ("red", "green", "blue", "yellow")
SHAPES = ("square", "ring", "plus")
RGB = jnp.array([[1.0, 0.1, 0.1], [0.1, 0.9, 0.1], [0.2, 0.3, 1.0], [1.0, 0.9, 0.1]])
_SHAPE_MASKS = jnp.array(
    [
        [[1, 1, 1], [1, 1, 1], [1, 1, 1]],  # square
        [[1, 1, 1], [1, 0, 1], [1, 1, 1]],  # ring
        [[0, 1, 0], [1, 1, 1], [0, 1, 0]],  # plus
    ],
    jnp.float32,
)
VOCAB = ("<pad>", "agent", "on", "nothing", *COLORS, *SHAPES)
TEXT_LEN = 4
NUM_TYPES = len(COLORS) * len(SHAPES)
MOVES = jnp.array([[-1, 0], [1, 0], [0, -1], [0, 1]], jnp.int32)


def type_name(t: int) -> str:
    """``"red square"`` for object type ``t = colour * len(SHAPES) + shape``."""
    return f"{COLORS[t // len(SHAPES)]} {SHAPES[t % len(SHAPES)]}"


def goal_text(t: int) -> str:
    """The goal string for object type ``t``."""
    return f"agent on {type_name(t)}"


def tokenize(text: str) -> jnp.ndarray:
    """Token ids of ``text`` padded to :data:`TEXT_LEN`; unknown words raise ``ValueError``."""
    words = text.lower().split()
    if len(words) > TEXT_LEN:
        raise ValueError(f"text longer than TEXT_LEN={TEXT_LEN} words: {text!r}")
    bad = [w for w in words if w not in VOCAB]
    if bad:
        raise ValueError(f"unknown words {bad}; vocabulary: {VOCAB}")
    ids = [VOCAB.index(w) for w in words] + [0] * (TEXT_LEN - len(words))
    return jnp.array(ids, jnp.int32)


def caption_tokens(on_type: jnp.ndarray) -> jnp.ndarray:
    """Traced caption: ``"agent on <type>"`` or ``"agent on nothing"`` if ``on_type < 0``."""
    color = 4 + on_type // len(SHAPES)
    shape = 4 + len(COLORS) + on_type % len(SHAPES)
    obj = jnp.array([1, 2, 0, 0]).at[2].set(color).at[3].set(shape)
    nothing = jnp.array([1, 2, 3, 0])
    return jnp.where(on_type >= 0, obj, nothing).astype(jnp.int32)


def latin_square_heldout(offset: int = 0) -> tuple[int, ...]:
    """One held-out type per colour, cycling through the shapes: colour ``c`` holds out shape
    ``(c + offset) % len(SHAPES)``. Every colour and every shape keeps >= 2 seen compositions."""
    return tuple(c * len(SHAPES) + (c + offset) % len(SHAPES) for c in range(len(COLORS)))


def all_goal_tokens() -> jnp.ndarray:
    """Token ids ``(NUM_TYPES, TEXT_LEN)`` of every goal string, in type order."""
    return jnp.stack([tokenize(goal_text(t)) for t in range(NUM_TYPES)])


@struct.dataclass
class SceneState:
    """Objects (types and cells), agent cell, goal slot and step counter."""

    obj_types: jnp.ndarray  # (n,) int in [0, NUM_TYPES)
    obj_pos: jnp.ndarray  # (n, 2)
    agent: jnp.ndarray  # (2,)
    goal: jnp.ndarray  # () slot index in [0, n)
    t: jnp.ndarray


@dataclass(frozen=True)
class SceneEnv:
    """Goal-conditioned scene environment.

    Attributes:
      grid: board side (>= 2).
      num_objects: objects per scene (1 .. min(NUM_TYPES, grid**2 - 1)).
      cell: pixels per cell side (>= 5: a 1-pixel agent ring around a 3x3 object).
      max_steps: episode length cap.
      types: object types that may appear in a scene (empty: all :data:`NUM_TYPES`).
      goal_types: types that may be the goal (empty: any of ``types``); the other objects of
        a scene are drawn from ``types`` without the goal's type.
    """

    grid: int = 5
    num_objects: int = 3
    cell: int = 5
    max_steps: int = 12
    types: tuple[int, ...] = ()
    goal_types: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if int(self.grid) < 2:
            raise ValueError(f"SceneEnv: grid must be >= 2, got {self.grid}")
        hi = min(NUM_TYPES, self.grid**2 - 1)
        if not 1 <= int(self.num_objects) <= hi:
            raise ValueError(f"SceneEnv: num_objects must be in [1, {hi}], got {self.num_objects}")
        if int(self.cell) < 5:
            raise ValueError(f"SceneEnv: cell must be >= 5 pixels, got {self.cell}")
        if int(self.max_steps) < 1:
            raise ValueError(f"SceneEnv: max_steps must be >= 1, got {self.max_steps}")
        for name in ("types", "goal_types"):
            bad = [t for t in getattr(self, name) if not 0 <= int(t) < NUM_TYPES]
            if bad or len(set(getattr(self, name))) != len(getattr(self, name)):
                raise ValueError(
                    f"SceneEnv: {name} must be distinct types in [0, {NUM_TYPES}), got "
                    f"{getattr(self, name)}"
                )
        allowed = set(self.types) if self.types else set(range(NUM_TYPES))
        if self.goal_types and not set(self.goal_types) <= allowed:
            raise ValueError(
                f"SceneEnv: goal_types {self.goal_types} must be among types {sorted(allowed)}"
            )
        if len(allowed) < int(self.num_objects):
            raise ValueError(
                f"SceneEnv: num_objects={self.num_objects} needs at least that many types, got "
                f"{len(allowed)}"
            )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        side = self.grid * self.cell
        return (side, side, 3)

    @property
    def num_actions(self) -> int:
        return 4

    def _cells(self, idx: jnp.ndarray) -> jnp.ndarray:
        return jnp.stack([idx // self.grid, idx % self.grid], -1).astype(jnp.int32)

    def reset(self, key: jax.Array) -> SceneState:
        """Random distinct objects on distinct cells, agent on an empty cell, random goal."""
        k_type, k_pos, k_goal = jax.random.split(key, 3)
        n = self.num_objects
        cells = jax.random.permutation(k_pos, self.grid**2)[: n + 1]
        goal = jax.random.randint(k_goal, (), 0, n)
        if not self.types and not self.goal_types:
            types = jax.random.permutation(k_type, NUM_TYPES)[:n]
        else:
            types = self._restricted_types(k_type, goal)
        return SceneState(
            obj_types=types.astype(jnp.int32),
            obj_pos=self._cells(cells[:n]),
            agent=self._cells(cells[n]),
            goal=goal,
            t=jnp.zeros((), jnp.int32),
        )

    def _restricted_types(self, key: jax.Array, goal: jax.Array) -> jax.Array:
        """Goal type uniform over ``goal_types``; the others distinct, uniform over ``types``
        minus the goal's type; the goal's type sits in slot ``goal``."""
        k_goal, k_rest = jax.random.split(key)
        allowed = jnp.zeros(NUM_TYPES, bool)
        allowed = allowed.at[jnp.array(self.types)].set(True) if self.types else ~allowed
        goals = (
            jnp.array(self.goal_types)
            if self.goal_types
            else jnp.nonzero(allowed, size=len(self.types) or NUM_TYPES)[0]
        )
        g = goals[jax.random.randint(k_goal, (), 0, goals.shape[0])]
        score = jax.random.uniform(k_rest, (NUM_TYPES,))
        score = jnp.where(allowed & (jnp.arange(NUM_TYPES) != g), score, -1.0)
        rest = jnp.argsort(-score)[: self.num_objects - 1]
        idx = jnp.arange(self.num_objects)
        return jnp.where(idx == goal, g, rest[idx - (idx > goal)])

    def place_agent(self, state: SceneState, cell: jnp.ndarray) -> SceneState:
        """The same scene with the agent moved to ``cell`` (row, col)."""
        return state.replace(agent=jnp.asarray(cell, jnp.int32))

    def on_type(self, state: SceneState) -> jnp.ndarray:
        """Type of the object under the agent, or -1."""
        hit = jnp.all(state.obj_pos == state.agent, axis=-1)
        return jnp.where(hit.any(), state.obj_types[jnp.argmax(hit)], -1)

    def success(self, state: SceneState) -> jnp.ndarray:
        """Ground truth: the agent stands on the goal object (bool)."""
        return jnp.all(state.obj_pos[state.goal] == state.agent)

    def goal_type(self, state: SceneState) -> jnp.ndarray:
        return state.obj_types[state.goal]

    def goal_tokens(self, state: SceneState) -> jnp.ndarray:
        return caption_tokens(self.goal_type(state))

    def step(self, state: SceneState, action: jnp.ndarray) -> tuple[SceneState, jnp.ndarray]:
        """Move the agent; returns the new state and ``done`` (ground-truth success or time)."""
        agent = jnp.clip(state.agent + MOVES[action], 0, self.grid - 1)
        state = state.replace(agent=agent, t=state.t + 1)
        return state, self.success(state) | (state.t >= self.max_steps)

    # gymnax-style raw API (the conventions shared by metalab's RL envs, see docs/tdu.md)
    default_params = None

    def reset_env(self, key: jax.Array, params=None) -> tuple[jnp.ndarray, SceneState]:
        """gymnax's ``reset_env``: ``(rendered image, state)``."""
        del params
        state = self.reset(key)
        return self.render(state), state

    def step_env(self, key: jax.Array, state: SceneState, action: jnp.ndarray, params=None):
        """gymnax's ``step_env``: ``(image, state, reward, done, info)`` with the ground-truth
        reward (1 on reaching the goal); a VLM reward replaces it in ``metalab.rl.vlm_reward``."""
        del key, params
        new, done = self.step(state, action)
        r = self.success(new).astype(jnp.float32)
        return self.render(new), new, r, done, {"success": self.success(new)}

    def render(self, state: SceneState) -> jnp.ndarray:
        """RGB image ``(grid*cell, grid*cell, 3)`` in [0, 1]."""
        c, g = self.cell, self.grid
        img = jnp.zeros((g, g, c, c, 3))
        off = (c - 3) // 2
        pad = ((off, c - 3 - off), (off, c - 3 - off))

        def draw(img, i):
            t = state.obj_types[i]
            mask = jnp.pad(_SHAPE_MASKS[t % len(SHAPES)], pad)
            patch = mask[..., None] * RGB[t // len(SHAPES)]
            r, col = state.obj_pos[i]
            return img.at[r, col].set(jnp.maximum(img[r, col], patch)), None

        img, _ = jax.lax.scan(draw, img, jnp.arange(self.num_objects))
        ring = jnp.ones((c, c)).at[1:-1, 1:-1].set(0.0)
        r, col = state.agent
        img = img.at[r, col].set(jnp.maximum(img[r, col], ring[..., None]))
        return img.transpose(0, 2, 1, 3, 4).reshape(g * c, g * c, 3)

    def features(self, state: SceneState) -> jnp.ndarray:
        """Goal-conditioned symbolic view ``(grid*grid*3,)``: goal object, other objects, agent.

        A cheap policy input (the reward still comes from the rendered image).
        """
        g = self.grid
        is_goal = jnp.arange(self.num_objects) == state.goal
        goal_map = jnp.zeros((g, g)).at[state.obj_pos[:, 0], state.obj_pos[:, 1]].add(is_goal)
        other = jnp.zeros((g, g)).at[state.obj_pos[:, 0], state.obj_pos[:, 1]].add(~is_goal)
        agent = jnp.zeros((g, g)).at[state.agent[0], state.agent[1]].set(1.0)
        return jnp.stack([goal_map, other, agent], -1).reshape(-1)

    def captioned_sample(self, key: jax.Array, p_on_object: float = 0.5):
        """A random scene for contrastive training: ``(image, caption tokens, on_type)``.

        With probability ``p_on_object`` the agent is moved onto a random object.
        """
        k_scene, k_on, k_which = jax.random.split(key, 3)
        st = self.reset(k_scene)
        which = jax.random.randint(k_which, (), 0, self.num_objects)
        on = jax.random.bernoulli(k_on, p_on_object)
        st = st.replace(agent=jnp.where(on, st.obj_pos[which], st.agent))
        ty = self.on_type(st)
        return self.render(st), caption_tokens(ty), ty
