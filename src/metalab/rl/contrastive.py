r"""Small contrastive image-text models (CLIP-style) trained on captioned rendered scenes.

Radford et al. (2021), *Learning Transferable Visual Models From Natural Language Supervision*
(CLIP) is the reward model of Baumli et al. (2023). No pretrained model can be downloaded here,
so :mod:`metalab.rl.vlm_reward` is fed by models trained in-process on scenes from
:mod:`metalab.rl.envs.scenes`, at several sizes.

Encoders map an image :math:`x` and a text :math:`y` to unit vectors
:math:`u = f_\theta(x)/\lVert f_\theta(x)\rVert`, :math:`v = g_\theta(y)/\lVert g_\theta(y)\rVert`.
Training minimises the symmetric InfoNCE loss over a batch, with multiple positives because
several images in a batch share a caption (:math:`P_{ij} = 1` iff captions :math:`i, j` match):

.. math:: \ell = -\frac{1}{2N}\sum_i\Big[\sum_j \tfrac{P_{ij}}{\sum_k P_{ik}}
          \log\mathrm{softmax}_j(s\,u_i^\top v_j) + \sum_j \tfrac{P_{ij}}{\sum_k P_{ik}}
          \log\mathrm{softmax}_j(s\,v_i^\top u_j)\Big],

with a learned inverse temperature :math:`s = e^{\log s}` (clipped to at most 100 as in CLIP).

Image encoder: a patch embedding (convolution with kernel = stride = one scene cell), ReLU, a
per-cell layer (1x1 convolution, ReLU), a sum over cells, then an MLP (a small convnet with
global pooling). Text encoder: token embeddings averaged over
non-padding tokens, then an MLP. Size is set by :class:`ModelSize`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from metalab.rl.envs.scenes import TEXT_LEN, VOCAB, SceneEnv

PyTree = Any


class ModelSize(NamedTuple):
    """Width knobs of a :class:`ContrastiveModel`.

    Attributes:
      channels: patch-embedding channels per cell.
      width: hidden width of the image and text MLPs.
      embed: joint embedding dimension.
    """

    channels: int
    width: int
    embed: int


class ContrastiveModel(nn.Module):
    """CLIP-style dual encoder over scene images and token sequences.

    Attributes:
      size: :class:`ModelSize`.
      patch: patch side in pixels (the scene's cell size).
    """

    size: ModelSize
    patch: int = 5

    def setup(self) -> None:
        s = self.size
        self.patch_embed = nn.Conv(s.channels, (self.patch, self.patch), strides=self.patch)
        self.cell_mlp = nn.Dense(s.width)
        self.img_hidden = nn.Dense(s.width)
        self.img_out = nn.Dense(s.embed)
        self.tok = nn.Embed(len(VOCAB), s.width)
        self.txt_hidden = nn.Dense(s.width)
        self.txt_out = nn.Dense(s.embed)
        self.log_scale = self.param("log_scale", lambda k: jnp.log(10.0))

    def encode_image(self, images: jnp.ndarray) -> jnp.ndarray:
        """``(N, H, W, 3)`` images in [0, 1] -> unit embeddings ``(N, embed)``."""
        x = nn.relu(self.patch_embed(images))  # (N, grid, grid, channels)
        x = nn.relu(self.cell_mlp(x)).sum(axis=(1, 2))
        x = nn.relu(self.img_hidden(x))
        return _normalise(self.img_out(x))

    def encode_text(self, tokens: jnp.ndarray) -> jnp.ndarray:
        """``(N, TEXT_LEN)`` token ids -> unit embeddings ``(N, embed)``."""
        mask = (tokens > 0)[..., None].astype(jnp.float32)
        e = (self.tok(tokens) * mask).sum(-2) / jnp.maximum(mask.sum(-2), 1.0)
        e = nn.relu(self.txt_hidden(e))
        return _normalise(self.txt_out(e))

    def scale(self) -> jnp.ndarray:
        return jnp.minimum(jnp.exp(self.log_scale), 100.0)

    def __call__(self, images: jnp.ndarray, tokens: jnp.ndarray):
        return self.encode_image(images), self.encode_text(tokens), self.scale()


def _normalise(x: jnp.ndarray) -> jnp.ndarray:
    # rsqrt(|x|^2 + eps) keeps the gradient finite at x = 0 (the norm's is not).
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + 1e-12)


def num_params(params: PyTree) -> int:
    """Total number of scalars in a parameter pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def multi_positive_infonce(
    img: jnp.ndarray, txt: jnp.ndarray, scale: jnp.ndarray, labels: jnp.ndarray
) -> jnp.ndarray:
    """Symmetric InfoNCE (to minimise) where pairs with equal ``labels`` are all positives.

    Args:
      img, txt: unit embeddings ``(N, E)``; row ``i`` of each is a matching pair.
      scale: inverse temperature.
      labels: ``(N,)`` caption ids; equal ids are treated as positives.
    """
    logits = scale * img @ txt.T
    pos = (labels[:, None] == labels[None, :]).astype(jnp.float32)
    target = pos / pos.sum(-1, keepdims=True)
    li = -(target * jax.nn.log_softmax(logits, axis=1)).sum(-1)
    lt = -(target * jax.nn.log_softmax(logits.T, axis=1)).sum(-1)
    return 0.5 * (li.mean() + lt.mean())


def make_train_contrastive(
    env: SceneEnv,
    size: ModelSize,
    *,
    steps: int,
    batch: int = 128,
    lr: float = 3e-3,
    p_on_object: float = 0.5,
) -> tuple[ContrastiveModel, Callable[[jax.Array], tuple[PyTree, jnp.ndarray]]]:
    """``(model, train)`` with ``train(key) -> (params, loss curve)``; fresh scenes each step.

    Captioned scenes come from :meth:`SceneEnv.captioned_sample` (the agent stands on an object
    with probability ``p_on_object``). Adam, one ``lax.scan``; vmappable over keys.
    """
    if steps < 1 or batch < 2:
        raise ValueError(f"steps must be >= 1 and batch >= 2, got steps={steps}, batch={batch}")
    model = ContrastiveModel(size, env.cell)
    opt = optax.adam(lr)
    sample = jax.vmap(lambda k: env.captioned_sample(k, p_on_object))

    def loss_fn(params, key):
        imgs, toks, ty = sample(jax.random.split(key, batch))
        u, v, s = model.apply(params, imgs, toks)
        return multi_positive_infonce(u, v, s, ty)

    def train(key: jax.Array) -> tuple[PyTree, jnp.ndarray]:
        k_init, k_loop = jax.random.split(key)
        img0 = jnp.zeros((1, *env.image_shape))
        params = model.init(k_init, img0, jnp.zeros((1, TEXT_LEN), jnp.int32))

        def body(carry, k):
            p, o = carry
            loss, g = jax.value_and_grad(loss_fn)(p, k)
            upd, o = opt.update(g, o, p)
            return (optax.apply_updates(p, upd), o), loss

        (params, _), curve = jax.lax.scan(
            body, (params, opt.init(params)), jax.random.split(k_loop, steps)
        )
        return params, curve

    return model, train
