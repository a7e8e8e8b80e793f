"""AnoGAN's losses (Schlegl et al. 2017, eqs. 1-3), one value per example.

`reduction="mean"` is seed 000 (`tf.reduce_mean(..., axis=[1, 2, 3])`); `"sum"` is the paper's
and seed 001's sum of absolute differences.
"""

from __future__ import annotations

import tensorflow as tf

from anogan_tf.config import REDUCTIONS, one_of


def _reduce(values, reduction: str):
  one_of(reduction, REDUCTIONS, "reduction")
  flat = tf.reshape(values, (tf.shape(values)[0], -1))  # (batch, everything else)
  return tf.reduce_sum(flat, axis=1) if reduction == "sum" else tf.reduce_mean(flat, axis=1)


def residual_loss(x, generated, reduction: str = "mean"):
  """L_R = |x - G(z)| reduced over pixels: (batch,)."""
  return _reduce(tf.abs(x - generated), reduction)


def discrimination_loss(features_x, features_generated, reduction: str = "mean"):
  """L_D = |f(x) - f(G(z))| reduced over the discriminator features: (batch,)."""
  return _reduce(tf.abs(features_x - features_generated), reduction)


def anomaly_score(residual, discrimination, lam: float):
  """A(x) = (1 - lam) * L_R + lam * L_D, per example."""
  return (1.0 - lam) * residual + lam * discrimination


INK_FLOOR = 1e-3  # an all-background image has no ink: its score is divided by this instead of 0


def ink(x):
  """Per image (batch,): the mean of (x + 1) / 2 over its pixels and channels, for x in [-1, 1]:
  0 for an image of background only (-1, black), 1 for an all-white one."""
  return tf.reduce_mean((x + 1.0) / 2.0, axis=tf.range(1, tf.rank(x)))


def ink_normalised(score, x, power: float):
  """score / ink(x) ** power (`--ink_power`; 0: score unchanged). On a dark background an image
  with little ink, a 1 among digits, has a small residual whatever the model draws, so raw
  scores rank such anomalies as normal; dividing by the ink compares errors relative to it."""
  if not power:
    return score
  return score / tf.maximum(ink(x), INK_FLOOR) ** float(power)


def ink_setting(power: float) -> dict:
  """A scorer's settings entry for --ink_power: none when 0, so the settings (and thresholds
  stored with them) of scorers without it stay as they were."""
  return {"ink_power": float(power)} if power else {}


def gan_losses(real_logits, fake_logits):
  """Seed 000's sigmoid cross-entropy GAN losses and the discriminator's accuracy.

  d_acc thresholds the logits at 0 (probability 0.5); the seed compared logits with 0.5, a bug.
  """
  bce = tf.nn.sigmoid_cross_entropy_with_logits
  d_loss = (tf.reduce_mean(bce(labels=tf.ones_like(real_logits), logits=real_logits))
            + tf.reduce_mean(bce(labels=tf.zeros_like(fake_logits), logits=fake_logits)))
  g_loss = tf.reduce_mean(bce(labels=tf.ones_like(fake_logits), logits=fake_logits))
  correct = tf.concat([tf.cast(real_logits > 0, tf.float32), tf.cast(fake_logits <= 0, tf.float32)], axis=0)
  return d_loss, g_loss, tf.reduce_mean(correct)


def discriminator_loss_on(logits, label: float):
  """Sigmoid cross-entropy of D's logits against one label (1 real, 0 fake), averaged: the loss
  of one of seed 002's separate `train_on_batch` calls (binary_crossentropy on a sigmoid)."""
  labels = tf.fill(tf.shape(logits), tf.cast(label, logits.dtype))
  return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def wasserstein_losses(real_logits, fake_logits):
  """The WGAN critic's and generator's losses (Arjovsky et al. 2017) on D's outputs: d_loss =
  mean D(fake) - mean D(real) (without the gradient penalty), g_loss = -mean D(fake)."""
  d_loss = tf.reduce_mean(fake_logits) - tf.reduce_mean(real_logits)
  return d_loss, -tf.reduce_mean(fake_logits)


def gradient_penalty(critic, real, fake, epsilon):
  """WGAN-GP's penalty (Gulrajani et al. 2017): mean over the batch of (|grad critic(x_hat)| - 1)^2,
  x_hat = epsilon * real + (1 - epsilon) * fake with epsilon (batch, 1, 1, 1) in [0, 1], the
  gradient's norm taken per image over all its pixels. Differentiable in the critic's weights
  (the caller's tape records the inner gradient)."""
  x_hat = epsilon * real + (1.0 - epsilon) * fake
  with tf.GradientTape() as tape:
    tape.watch(x_hat)
    out = critic(x_hat)
  grad = tape.gradient(out, x_hat)
  norm = tf.sqrt(tf.reduce_sum(tf.square(tf.reshape(grad, (tf.shape(grad)[0], -1))), axis=1) + 1e-12)
  return tf.reduce_mean(tf.square(norm - 1.0))
