"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"):
random colour, translation and cutout applied to every batch the discriminator sees, real and
generated alike, as differentiable tensor operations, so G learns through them and D, shown a
new variant of each of a few hundred training pictures at every step, cannot memorise them.

The operations follow the authors' TensorFlow code (DiffAugment_tf.py), for images in [-1, 1]:
  color        brightness + U(-0.5, 0.5); saturation: the deviation from the channel mean times
               U(0, 2); contrast: the deviation from the image mean times U(0.5, 1.5)
  translation  a shift by up to 1/8 of the side in each direction, filled with zeros
  cutout       a square of half the side, at a random place (clipped at the border), set to zero
each with its own draw per image. The draws come from a `tf.random.Generator` the caller owns (a
trainer checkpoints it, so a resumed run draws what an uninterrupted one draws).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf

from anogan_tf.config import one_of
from anogan_tf.config.values import DIFFAUGMENT_POLICIES

TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5
STREAM = 2**31 - 3  # the draws' seed stream: apart from the GAN's (--seed) and the encoder's


def generator(seed: int) -> tf.random.Generator:
  """The generator of a run's draws with --seed=seed (its trainer checkpoints it as "augment_rng")."""
  return tf.random.Generator.from_seed(int(np.random.default_rng([seed, STREAM]).integers(2**31)))


def parse_policy(text: str) -> Tuple[str, ...]:
  """'color,translation,cutout' -> ('color', 'translation', 'cutout'); '' -> ()."""
  policy = tuple(p.strip() for p in text.split(",") if p.strip())
  for p in policy:
    one_of(p, DIFFAUGMENT_POLICIES, "--diffaugment entry")
  return policy


def _per_image(rng: tf.random.Generator, x, minval=0.0, maxval=1.0):
  return rng.uniform((tf.shape(x)[0], 1, 1, 1), minval, maxval, dtype=x.dtype)


def color(x, rng: tf.random.Generator):
  x = x + (_per_image(rng, x) - 0.5)
  mean = tf.reduce_mean(x, axis=3, keepdims=True)
  x = (x - mean) * (_per_image(rng, x) * 2.0) + mean
  mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
  return (x - mean) * (_per_image(rng, x) + 0.5) + mean


def translation(x, rng: tf.random.Generator, ratio: float = TRANSLATION_RATIO):
  """Each image shifted by (dy, dx), each in [-shift, shift], the uncovered border zero."""
  h, w = int(x.shape[1]), int(x.shape[2])
  sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
  batch = tf.shape(x)[0]
  dy = rng.uniform((batch, 1), -sy, sy + 1, dtype=tf.int32)
  dx = rng.uniform((batch, 1), -sx, sx + 1, dtype=tf.int32)
  padded = tf.pad(x, [[0, 0], [sy, sy], [sx, sx], [0, 0]])
  rows = tf.range(h)[None, :] + sy - dy  # (batch, h): output row i reads padded row i + sy - dy
  cols = tf.range(w)[None, :] + sx - dx
  x = tf.gather(padded, rows, axis=1, batch_dims=1)
  return tf.gather(x, cols, axis=2, batch_dims=1)


def cutout(x, rng: tf.random.Generator, ratio: float = CUTOUT_RATIO):
  """Each image with a square of side ratio * side (its centre anywhere, clipped at the border) zeroed."""
  h, w = int(x.shape[1]), int(x.shape[2])
  ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
  batch = tf.shape(x)[0]
  top = rng.uniform((batch, 1, 1), 0, h + (1 - ch % 2), dtype=tf.int32) - ch // 2
  left = rng.uniform((batch, 1, 1), 0, w + (1 - cw % 2), dtype=tf.int32) - cw // 2
  i = tf.range(h)[None, :, None]
  j = tf.range(w)[None, None, :]
  inside = (i >= top) & (i < top + ch) & (j >= left) & (j < left + cw)  # (batch, h, w)
  return x * tf.cast(~inside, x.dtype)[..., None]


OPERATIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x, policy: Sequence[str], rng: tf.random.Generator):
  """x (batch, h, w, c) with the policy's operations applied in order, fresh draws per image."""
  for name in policy:
    x = OPERATIONS[name](x, rng)
  return x
