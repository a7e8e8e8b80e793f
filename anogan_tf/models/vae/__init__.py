"""Convolutional variational autoencoder (seed 004, section 1): score = reconstruction error of
the posterior mean's decoding, or the negative ELBO.

Networks: the autoencoder's (see ae.py), except that the encoder has two heads: its
Dense(2 * latent_dim) output is split into the posterior mean mu = code[:, :latent_dim] and
log-variance log(sigma^2) = code[:, latent_dim:]. While training, z = mu + sigma * eps with
eps ~ N(0, 1) (n, latent_dim) drawn by the driver through `noise()`, so a run is deterministic
and resumable; while scoring, z = mu (no sampling: scores are deterministic).

KL term. Seed 004 writes D_KL(N(mu, sigma) || N(0, 1)) = 1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
As written that is the NEGATIVE of the divergence (it is <= 0; minimising it would push the
posterior away from the prior), a sign typo: its own appendix derives the univariate KL
log(sigma_2 / sigma_1) + (sigma_1^2 + (mu_1 - mu_2)^2) / (2 sigma_2^2) - 1/2, which for
N(mu, sigma^2) against N(0, 1) is 1/2 (sigma^2 + mu^2 - 1 - log sigma^2) >= 0. This module uses
the correct sign, per image, summed over the latent dimensions:

  kl = 1/2 sum_j (sigma_j^2 + mu_j^2 - 1 - log sigma_j^2)

Loss (seed 004: "VAE: MAE + KL divergence"), per image, averaged over the batch:

  loss = reconstruction + kl_weight * kl,   reconstruction = ae.reconstruction_error (summed over pixels)

Both terms are sums (over pixels, over latent dimensions), so kl_weight = 1 is the negative ELBO
of a decoder with a Laplace likelihood of scale 1 (l1) or a Gaussian of variance 1/2 (l2), up to
a constant: the standard VAE. Averaging the reconstruction over pixels instead (a literal "MAE")
would be the same loss with kl_weight = 784 for 28x28 images, divided by 784: there the KL
dominates and the posterior collapses to the prior (experiments/vae.flags says what that did on
MNIST).

Scores (--vae_score): "reconstruction" = reconstruction_error(x, D(mu)) of the posterior mean's
decoding; "elbo" = that + kl_weight * kl, the negative ELBO with the training loss' weighting,
its expectation over q(z|x) evaluated at z = mu.
"""

from __future__ import annotations

from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

import anogan_tf.models.ae as ae
import anogan_tf.models.base as base
from anogan_tf.errors import AnoganError
from anogan_tf.nn import losses
from anogan_tf.nn.networks import Encoder, Generator

NAME = "vae"
NETWORKS = ("encoder", "decoder")
VAE_SCORES = ("reconstruction", "elbo")


# --- losses: one value per image

def split_code(code, latent_dim: int):
  """The encoder's (batch, 2 * latent_dim) output as (mean, log_var), each (batch, latent_dim)."""
  return code[:, :latent_dim], code[:, latent_dim:]


def reparameterize(mean, log_var, eps):
  """z = mu + sigma * eps, sigma = exp(log_var / 2): (batch, latent_dim)."""
  return mean + tf.exp(0.5 * log_var) * eps


def kl_divergence(mean, log_var):
  """D_KL(N(mu, sigma^2) || N(0, 1)) per image, summed over latent dimensions: (batch,), >= 0.
  (Seed 004's formula has the opposite sign; see the module docstring.)"""
  return 0.5 * tf.reduce_sum(tf.exp(log_var) + tf.square(mean) - 1.0 - log_var, axis=1)


# --- networks

def build_networks(config) -> Dict[str, keras.Model]:
  """{"encoder": x (N, h, w, c) -> [mu, log sigma^2] (N, 2 * latent_dim),
  "decoder": z (N, latent_dim) -> x' (N, h, w, c) in [-1, 1]}."""
  return {"encoder": Encoder(name="encoder", **ae.encoder_kwargs(config, heads=2)),
          "decoder": Generator(name="decoder", **config.generator_kwargs())}


def noise(rng: np.random.Generator, n: int, config) -> np.ndarray:
  """eps ~ N(0, 1), (n, latent_dim) float32: the reparameterisation noise, one row per image."""
  return rng.standard_normal((n, config.latent_dim)).astype(np.float32)


def sample(networks, noise) -> np.ndarray:
  """Decodings of prior draws z = noise ~ N(0, 1): (n, h, w, c) in [-1, 1], decoder in inference mode."""
  return networks["decoder"](tf.convert_to_tensor(noise, tf.float32), training=False).numpy()


# --- training

class VAETrainer(ae._EncoderDecoderTrainer):
  """train_step(x, noise, phase): one Adam step on the batch mean of reconstruction + kl_weight * kl
  with z = mu + sigma * noise, both networks in training mode. Returns batch means of loss,
  reconstruction and kl."""

  loss_names = ("loss", "reconstruction", "kl")

  def __init__(self, config, networks):
    super().__init__(config, networks, name="vae_trainer")

  def train_step(self, x, noise, phase: int):
    eps = tf.convert_to_tensor(noise, tf.float32)
    with tf.GradientTape() as tape:
      mean, log_var = split_code(self.encoder(x, training=True), self.config.latent_dim)
      reconstruction = self.decoder(reparameterize(mean, log_var, eps), training=True)
      error = ae.reconstruction_error(x, reconstruction, self.config.recon_loss)  # (batch,)
      kl = kl_divergence(mean, log_var)  # (batch,)
      loss = tf.reduce_mean(error + self.config.kl_weight * kl)
    self.apply(tape, loss, phase)
    return {"loss": loss, "reconstruction": tf.reduce_mean(error), "kl": tf.reduce_mean(kl)}


def make_trainer(config, networks) -> VAETrainer:
  return VAETrainer(config, networks)


# --- scoring

class VAEScorer(ae.EncoderDecoderScorer):
  """score = reconstruction error of D(mu) ("reconstruction") or that + kl_weight * kl ("elbo"),
  both networks in inference mode. parts: reconstruction, kl; extras: z = mu (N, latent_dim)."""

  part_names = ("reconstruction", "kl")

  def __init__(self, encoder, decoder, recon_loss: str = "l1", vae_score: str = "reconstruction",
               kl_weight: float = 1.0, batch_size: int = 0, ink_power: float = 0.0):
    if recon_loss not in ae.RECON_LOSSES:
      raise AnoganError(f"unknown recon_loss '{recon_loss}'; use l1 or l2")
    if vae_score not in VAE_SCORES:
      raise AnoganError(f"unknown vae_score '{vae_score}'; use reconstruction or elbo")
    if encoder.heads != 2:
      raise AnoganError(f"the VAE needs an encoder with 2 heads (mean, log-variance), not {encoder.heads}; "
                        "was this workdir trained with --model=vae?")
    super().__init__(encoder, decoder, batch_size, ink_power)
    self.recon_loss, self.vae_score, self.kl_weight = recon_loss, vae_score, float(kl_weight)

  def settings(self) -> dict:
    return {"recon_loss": self.recon_loss, "kl_weight": self.kl_weight, "vae_score": self.vae_score,
            "map_batch_size": self.batch_size, **losses.ink_setting(self.ink_power)}

  def _forward(self, x):
    mean, log_var = split_code(self.encoder(x, training=False), self.encoder.latent_dim)
    reconstruction = self.decoder(mean, training=False)
    error = ae.reconstruction_error(x, reconstruction, self.recon_loss)
    kl = kl_divergence(mean, log_var)
    score = error + self.kl_weight * kl if self.vae_score == "elbo" else error
    return {"score": score, "reconstruction": reconstruction, "part_reconstruction": error,
            "part_kl": kl, "extra_z": mean}


def make_scorer(config, networks, recon_loss: Optional[str] = None, vae_score: Optional[str] = None,
                kl_weight: Optional[float] = None, batch_size: Optional[int] = None) -> VAEScorer:
  """Overrides default to config.recon_loss, config.vae_score, config.kl_weight, and for
  batch_size --map_batch_size (0: chosen from the available memory, as ae.make_scorer)."""
  return VAEScorer(networks["encoder"], networks["decoder"], recon_loss=recon_loss or config.recon_loss,
                   vae_score=vae_score or config.vae_score,
                   kl_weight=config.kl_weight if kl_weight is None else kl_weight,
                   batch_size=base.score_batch_size(config, batch_size), ink_power=config.ink_power)
