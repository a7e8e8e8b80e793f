"""Convolutional autoencoder (seed 004, section 1): score = reconstruction error.

Encoder: `networks.Encoder` with one head, shaped like seed 000's discriminator (strided 3x3
convolutions, LeakyReLU(0.2), Dense(latent_dim) in place of the logit). Decoder: seed 000's
`networks.Generator`. So AnoGAN, the autoencoder and the VAE have the same networks and differ
in training only.

Loss (seed 004: "AE: MAE or MSE"; its equation L(x, x') = ||x - x'||^2), per image, then averaged
over the batch:

  reconstruction = sum over pixels of |x - x'|   (--recon_loss=l1)
                or sum over pixels of (x - x')^2 (--recon_loss=l2)

Summed over pixels, not averaged: ||x - x'||^2 in seed 004 is a sum, and a sum puts the
reconstruction on the scale of the VAE's KL, which is summed over latent dimensions (see vae.py).
For the autoencoder alone the choice only scales the loss by the pixel count (28 * 28 = 784 for
MNIST): Adam's steps and the ranking of scores are the same either way.

The same per-image error, of the decoding in inference mode, is the anomaly score; `residual_map`
is |x - x'| per pixel. Shared pieces (the encoder-decoder scorer, the error itself) live here and vae.py
builds on them; the input checks are every scorer's (base.check_images).
"""

from __future__ import annotations

from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

import anogan_tf.models.base as base
from anogan_tf.errors import AnoganError
from anogan_tf.nn import losses, memory
from anogan_tf.nn.networks import Encoder, Generator

NAME = "ae"
NETWORKS = ("encoder", "decoder")
RECON_LOSSES = ("l1", "l2")


# --- losses: one value per image

def reconstruction_error(x, reconstruction, kind: str = "l1"):
  """Per-image reconstruction error (batch,): the sum over pixels of |x - x'| (l1) or (x - x')^2 (l2)."""
  if kind not in RECON_LOSSES:
    raise AnoganError(f"unknown recon_loss '{kind}'; use l1 or l2")
  diff = x - reconstruction
  per_pixel = tf.abs(diff) if kind == "l1" else tf.square(diff)
  flat = tf.reshape(per_pixel, (tf.shape(per_pixel)[0], -1))  # (batch, h*w*c)
  return tf.reduce_sum(flat, axis=1)


# --- networks

def encoder_kwargs(config, heads: int) -> dict:
  return dict(**config.encoder_kwargs(), heads=heads)


def build_networks(config) -> Dict[str, keras.Model]:
  """{"encoder": x (N, h, w, c) -> z (N, latent_dim), "decoder": z -> x' (N, h, w, c) in [-1, 1]}."""
  return {"encoder": Encoder(name="encoder", **encoder_kwargs(config, heads=1)),
          "decoder": Generator(name="decoder", **config.generator_kwargs())}


def noise(rng: np.random.Generator, n: int, config) -> np.ndarray:
  """The autoencoder is deterministic: an empty (n, 0) array, so the driver can slice it like
  any family's noise. Draws nothing from rng."""
  return np.zeros((n, 0), np.float32)


def sample(networks, noise) -> None:
  """No prior to sample from: the driver draws no sample grid for the autoencoder."""
  return None


# --- training

class _EncoderDecoderTrainer(base.PhasedAdamTrainer):
  """One optimisation problem (encoder and decoder together), one Adam per learning-rate phase."""

  def __init__(self, config, networks, name: str):
    super().__init__(name=name)
    self.config = config
    self.encoder, self.decoder = networks["encoder"], networks["decoder"]
    self.build_optimizers()

  @property
  def variables_to_train(self) -> list:
    return self.encoder.trainable_variables + self.decoder.trainable_variables


class AutoencoderTrainer(_EncoderDecoderTrainer):
  """train_step(x, noise, phase): one Adam step on mean over the batch of reconstruction_error(x,
  D(E(x))), both networks in training mode (BN batch statistics). `noise` is ignored. The loss is
  the reconstruction error alone, so it is logged once (the VAE logs its two parts beside it)."""

  loss_names = ("loss",)

  def __init__(self, config, networks):
    super().__init__(config, networks, name="ae_trainer")

  def train_step(self, x, noise, phase: int):
    with tf.GradientTape() as tape:
      reconstruction = self.decoder(self.encoder(x, training=True), training=True)
      error = reconstruction_error(x, reconstruction, self.config.recon_loss)  # (batch,)
      loss = tf.reduce_mean(error)
    self.apply(tape, loss, phase)
    return {"loss": loss}


def make_trainer(config, networks) -> AutoencoderTrainer:
  return AutoencoderTrainer(config, networks)


# --- scoring

class EncoderDecoderScorer(base.OnePassScorer):
  """A one-pass scorer of an encoder and a decoder (the autoencoder's, the VAE's): subclasses
  define `_forward(x) -> dict of (batch, ...) tensors` with at least score, reconstruction, and
  part_<name> / extra_<name> for the names in `part_names` and `extra_names`; the score is then
  ink-normalised and the residual map is |x - reconstruction|."""

  part_names = ("reconstruction",)
  extra_names = ("z",)

  def __init__(self, encoder, decoder, batch_size: int = 0, ink_power: float = 0.0):
    self.encoder, self.decoder = encoder, decoder
    self.ink_power = base.checked_ink_power(ink_power)
    self.example_shape = tuple(getattr(encoder, "example_shape", None) or encoder.image_shape)
    self.init_chunks(batch_size)

  def activation_floats_per_image(self) -> int:
    """Every layer output of E and D for one image: what the automatic chunk size budgets for."""
    return (memory.chain_floats(self.encoder.chain, self.image_shape)
            + memory.chain_floats(self.decoder.chain, (self.decoder.latent_dim,)))

  def _forward(self, x) -> Dict[str, tf.Tensor]:
    raise NotImplementedError

  def score_tensors(self, x) -> base.ScoreResult:
    out = self._forward(x)
    return base.ScoreResult(score=losses.ink_normalised(out["score"], x, self.ink_power),
                            reconstruction=out["reconstruction"], residual_map=tf.abs(x - out["reconstruction"]),
                            parts={k: out[f"part_{k}"] for k in self.part_names},
                            extras={k: out[f"extra_{k}"] for k in self.extra_names})


class AutoencoderScorer(EncoderDecoderScorer):
  """score = reconstruction_error(x, D(E(x))) per image, both networks in inference mode;
  reconstruction = D(E(x)) in [-1, 1]; extras z = E(x) (N, latent_dim)."""

  def __init__(self, encoder, decoder, recon_loss: str = "l1", batch_size: int = 0, ink_power: float = 0.0):
    if recon_loss not in RECON_LOSSES:
      raise AnoganError(f"unknown recon_loss '{recon_loss}'; use l1 or l2")
    super().__init__(encoder, decoder, batch_size, ink_power)
    self.recon_loss = recon_loss

  def settings(self) -> dict:
    return {"recon_loss": self.recon_loss, "map_batch_size": self.batch_size, **losses.ink_setting(self.ink_power)}

  def _forward(self, x):
    z = self.encoder(x, training=False)
    reconstruction = self.decoder(z, training=False)
    error = reconstruction_error(x, reconstruction, self.recon_loss)
    return {"score": error, "reconstruction": reconstruction, "part_reconstruction": error, "extra_z": z}


def make_scorer(config, networks, recon_loss: Optional[str] = None,
                batch_size: Optional[int] = None) -> AutoencoderScorer:
  """Overrides: recon_loss (default config.recon_loss), batch_size (default --map_batch_size; 0:
  the largest power of two up to 1024 images whose activations fit in a quarter of the available memory)."""
  return AutoencoderScorer(networks["encoder"], networks["decoder"],
                           recon_loss=recon_loss or config.recon_loss,
                           batch_size=base.score_batch_size(config, batch_size), ink_power=config.ink_power)
