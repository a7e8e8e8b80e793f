"""Efficient GAN (EGBAD): a BiGAN trained on normal images, scored in one forward pass.

Zenati et al. 2018, "Efficient GAN-Based Anomaly Detection" (https://arxiv.org/abs/1802.06222),
as seed 003 and the book it follows (Ogawa, "つくりながら学ぶ! PyTorchによる発展ディープラーニング",
6-3/6-4; YutaroOgawa/pytorch_advanced, 6_gan_anomaly_detection/6-4_EfficientGAN.ipynb) write it:

  E: x -> z, G: z -> x, D(x, z) -> logit.
  D:  -log D(x, E(x)) - log(1 - D(G(z), z))         real pairs (x, E(x)), fake pairs (G(z), z)
  G:  -log D(G(z), z)                                 non-saturating
  E:  -log(1 - D(x, E(x)))                            seed 003's non-saturating form for E
  A(x) = (1 - lam) * |x - G(E(x))| + lam * |f(x, E(x)) - f(G(E(x)), E(x))|

f is D's last feature layer (the joint layer before the logit). The score needs no search over z,
so an image costs one pass through E, G and D instead of AnoGAN's hundreds of iterations.

Per batch, as the book's `train_model`: one D step on (x, E(x)) and (G(z1), z1); then one G step on a
fresh draw z2; then one E step on (x, E(x)) against the updated D. Each has its own loss and Adam
instance. G's and E's losses share no weights and D is fixed during both, so doing them in the
other order, or as one joint update, would give the same numbers; they are separate steps because
the book's are. BN runs in training mode during training; a network's BN statistics move only in
its own step (as GANTrainer does it): G's forward pass for the D step and D's forward passes for
the G and E steps leave the statistics they touch as they were. E(x) is computed once per batch,
on E's tape (E does not change in the D step), so E's statistics move once, with its step.

For photographs (beyond the sources, as AnoGAN's picture settings): `--diffaugment` passes the image
of every pair D sees through DiffAugment, real (x, E(x)) and fake (G(z), z) alike, in the D, G and
E steps (differentiably; E still encodes the plain x), its draws from a generator seeded by --seed
and checkpointed ("augment_rng"); `--d_spectral_norm` normalises every D weight (its convolutions,
the z and joint Dense layers and the logits).
"""

from __future__ import annotations

from typing import Dict, Sequence

import keras
import numpy as np
import tensorflow as tf

import anogan_tf.models.base as base
from anogan_tf.errors import AnoganError
from anogan_tf.nn import augment, losses, memory
from anogan_tf.nn.layers import SubpixelGradientConv2D
from anogan_tf.nn.networks import Encoder, Generator, batchnorm_statistics, build_chain, conv_blocks, dense, run_chain
from anogan_tf.nn.precision import to_float32

NAME = "egbad"
NETWORKS = ("generator", "encoder", "discriminator")
LOSS_NAMES = ("d_loss", "g_loss", "e_loss", "d_acc")
GAN_DISCRIMINATOR = True  # --diffaugment and --d_spectral_norm apply to D(x, z)


def _kernel(layer):
  """A Dense layer's kernel, through a SpectralNormalization wrapper."""
  return getattr(layer, "layer", layer).kernel


@keras.saving.register_keras_serializable(package="anogan_tf")
class BiGANDiscriminator(keras.Model):
  """D(x, z): one real/fake logit per (image, latent code) pair.

  Input: a pair (x, z), x (batch, h, w, c) in [-1, 1] and z (batch, latent_dim).
  Output: logits (batch, 1), unbounded (sigmoid: the probability that the pair is (x, E(x))).

  x path, shaped like seed 000's discriminator: per entry of `filters`, a 3x3 'same' convolution
  with its stride -> BN (if `batchnorm`) -> LeakyReLU(leaky_slope) -> Dropout (if `dropout`),
  then flatten to (batch, h/s * w/s * filters[-1]). z path: Dense(z_units), linear as in seed 003.
  Joint: concatenate -> per entry of `joint_units` Dense -> LeakyReLU -> Dropout (if `dropout`)
  -> Dense(1) logits. `features(x, z)` is f(x, z), the last joint layer's output
  (batch, joint_units[-1]) (the concatenation if `joint_units` is empty): seed 003's `feature`,
  used by the score. Layers are named conv1, bn1, act1, drop1, ..., flatten, z_dense, concat,
  joint1, joint_act1, joint_drop1, ..., logits. `spectral_norm` wraps every convolution and Dense
  layer in spectral.SpectralNormalization (same names).
  """

  def __init__(self, image_shape: Sequence[int] = (28, 28, 1), latent_dim: int = 50,
               filters: Sequence[int] = (16, 32), strides: Sequence[int] = (2, 2),
               batchnorm: bool = False, dropout: float = 0.0, z_units: int = 128,
               joint_units: Sequence[int] = (128,), leaky_slope: float = 0.2,
               bn_momentum: float = 0.99, spectral_norm: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.image_shape = tuple(int(s) for s in image_shape)
    self.latent_dim = int(latent_dim)
    self.filters = tuple(int(f) for f in filters)
    self.strides = tuple(int(s) for s in strides)
    self.batchnorm = bool(batchnorm)
    self.dropout = float(dropout)
    self.z_units = int(z_units)
    self.joint_units = tuple(int(u) for u in joint_units)
    self.leaky_slope = float(leaky_slope)
    self.bn_momentum = float(bn_momentum)
    self.spectral_norm = bool(spectral_norm)
    if (len(self.strides) != len(self.filters) or not self.filters or self.latent_dim < 1 or self.z_units < 1
        or any(v < 1 for v in self.filters + self.strides + self.joint_units)):
      raise AnoganError("BiGAN discriminator: one positive stride per positive filter count, and positive "
                        "latent_dim, z_units and joint units are needed")

    # G's step needs D's input gradient: the first convolution takes it in the sub-pixel form.
    x_chain = conv_blocks(self.filters, self.strides, self.batchnorm, self.leaky_slope, self.bn_momentum,
                          dropout=self.dropout, first_conv=SubpixelGradientConv2D, spectral_norm=self.spectral_norm)
    x_chain.append(keras.layers.Flatten(name="flatten"))
    joint_chain = []
    for i, units in enumerate(self.joint_units, start=1):
      joint_chain += [dense(units, f"joint{i}", self.spectral_norm),
                      keras.layers.LeakyReLU(negative_slope=self.leaky_slope, name=f"joint_act{i}")]
      if self.dropout > 0:
        joint_chain.append(keras.layers.Dropout(self.dropout, name=f"joint_drop{i}"))
    self.x_chain = x_chain
    self.z_dense = dense(self.z_units, "z_dense", self.spectral_norm)
    self.concat = keras.layers.Concatenate(name="concat")
    self.joint_chain = joint_chain
    self.logits = dense(1, "logits", self.spectral_norm)
    self._build_layers()

  def _build_layers(self):
    x_shape = build_chain(self.x_chain, (None,) + self.image_shape)
    z_shape = build_chain([self.z_dense], (None, self.latent_dim))
    self.concat.build([x_shape, z_shape])
    shape = build_chain(self.joint_chain, self.concat.compute_output_shape([x_shape, z_shape]))
    self.logits.build(shape)
    self.built = True

  def build(self, input_shape=None):
    if not self.built:
      self._build_layers()

  def features(self, inputs, training=False):
    """f(x, z): (batch, joint_units[-1]), the input of the logit layer."""
    x, z = inputs
    joint = self.concat([run_chain(self.x_chain, x, training), self.z_dense(z)])  # (batch, x features + z_units)
    return run_chain(self.joint_chain, joint, training)

  def call(self, inputs, training=False):
    return to_float32(self.logits(self.features(inputs, training=training)))

  def compute_output_shape(self, input_shape):
    return (input_shape[0][0], 1)

  def get_config(self):
    return {**super().get_config(), "image_shape": list(self.image_shape), "latent_dim": self.latent_dim,
            "filters": list(self.filters), "strides": list(self.strides), "batchnorm": self.batchnorm,
            "dropout": self.dropout, "z_units": self.z_units, "joint_units": list(self.joint_units),
            "leaky_slope": self.leaky_slope, "bn_momentum": self.bn_momentum,
            **({"spectral_norm": True} if self.spectral_norm else {})}


def build_networks(config) -> Dict[str, keras.Model]:
  """{"generator": G, "encoder": E, "discriminator": D(x, z)} from the Config's g_*, e_*, d_* settings
  (their depth following the image size, as every family's)."""
  d_layout = config.discriminator_kwargs()  # D(x, z)'s x path: seed 000's D body, deepened for larger images
  return {
      "generator": Generator(name="generator", **config.generator_kwargs()),
      "encoder": Encoder(name="encoder", **config.encoder_kwargs(), heads=1),
      "discriminator": BiGANDiscriminator(
          name="discriminator", image_shape=config.image_shape, latent_dim=config.latent_dim,
          filters=d_layout["filters"], strides=d_layout["strides"], batchnorm=config.d_batchnorm,
          dropout=config.d_dropout, z_units=config.d_z_units,
          joint_units=config.d_joint_units, leaky_slope=config.leaky_slope,
          bn_momentum=config.bn_momentum, spectral_norm=config.d_spectral_norm),
  }


def noise(rng: np.random.Generator, n: int, config) -> np.ndarray:
  """(n, 2, latent_dim) float32 from --z_prior: [:, 0] is the D step's z, [:, 1] the G step's
  (the book draws a fresh z for the G step)."""
  shape = (n, 2, config.latent_dim)
  if config.z_prior == "normal":
    return rng.standard_normal(shape).astype(np.float32)
  return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def sample(networks, noise) -> np.ndarray:
  """G(z) (n, h, w, c) in [-1, 1], inference mode; `noise` is (n, latent_dim) or this module's
  (n, 2, latent_dim), of which the first draw is used."""
  z = np.asarray(noise, np.float32)
  if z.ndim == 3:
    z = z[:, 0]
  return networks["generator"](z, training=False).numpy()


def _snapshot(variables):
  return [tf.identity(v) for v in variables]


def _restore(variables, values):
  for variable, value in zip(variables, values):
    variable.assign(value)


def _apply(optimizer, loss, tape, model):
  variables = model.trainable_variables
  optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))


class EGBADTrainer(base.Trainer):
  """D, G and E steps of one batch (see the module docstring) with Adam instances per network and
  learning-rate phase: `lr` until `lr_decay_epoch`, then fresh instances at `lr_after_decay`
  (no second phase when lr_decay_epoch is 0). D's rates are multiplied by `d_lr_scale`
  (seed 003: D at a quarter of G's and E's rate). With --diffaugment, `augmented` is what D sees of
  the images of its pairs, and the draws' generator is checkpointed."""

  loss_names = LOSS_NAMES
  collapse_loss = "d_loss"
  averages_weights = True

  def __init__(self, config, networks):
    super().__init__(name="egbad_trainer")
    self.config = config
    self.generator = networks["generator"]
    self.encoder = networks["encoder"]
    self.discriminator = networks["discriminator"]
    self.n_phases = 2 if config.lr_decay_epoch > 0 else 1
    rates = (config.lr, config.lr_after_decay)[:self.n_phases]
    d_scale = float(config.d_lr_scale)

    averaged = base.averaged_phase(config)  # --ema_momentum: the last phase's Adams keep the average

    def adams(model, scale):
      optimizers = [base.adam(config, lr * scale, i == averaged) for i, lr in enumerate(rates)]
      for opt in optimizers:  # built now: a tf.function may not create variables later
        opt.build(model.trainable_variables)
      return optimizers

    self.d_optimizers = adams(self.discriminator, d_scale)
    self.g_optimizers = adams(self.generator, 1.0)
    self.e_optimizers = adams(self.encoder, 1.0)
    self.policy = augment.parse_policy(config.diffaugment)
    self.rng = augment.generator(config.training_seed) if self.policy else None

  def augmented(self, images):
    """What D sees of a pair's images: DiffAugment's fresh variant with --diffaugment, else the images."""
    return augment.diff_augment(images, self.policy, self.rng) if self.policy else images

  def phase(self, epoch: int) -> int:
    decay = self.config.lr_decay_epoch
    return int(decay > 0 and epoch >= decay)

  def finalize(self) -> None:
    base.finalize_averages([(self.d_optimizers, self.discriminator.trainable_variables),
                            (self.g_optimizers, self.generator.trainable_variables),
                            (self.e_optimizers, self.encoder.trainable_variables)])

  def checkpoint_items(self) -> dict:
    items = {}
    for i, suffix in enumerate(("", "_after_decay")[:self.n_phases]):
      items.update({f"d_optimizer{suffix}": self.d_optimizers[i], f"g_optimizer{suffix}": self.g_optimizers[i],
                    f"e_optimizer{suffix}": self.e_optimizers[i]})
    if self.rng is not None:  # only then: the checkpoints of the other settings stay as they were
      items["augment_rng"] = self.rng
    return items

  def train_step(self, x, noise, phase: int) -> Dict[str, tf.Tensor]:
    """x (batch, h, w, c) in [-1, 1], noise (batch, 2, latent_dim) from `noise()`, phase a Python
    int; returns {d_loss, g_loss, e_loss, d_acc} as scalar tensors."""
    g, e, d, seen = self.generator, self.encoder, self.discriminator, self.augmented
    z_d, z_g = noise[:, 0], noise[:, 1]

    e_tape = tf.GradientTape()
    with e_tape:  # E's forward pass, once: the D step sees it as data, the E step differentiates it
      encoded = e(x, training=True)
    g_stats = _snapshot(batchnorm_statistics(g))
    fake = g(z_d, training=True)
    _restore(batchnorm_statistics(g), g_stats)  # the book's D step steps only D

    with tf.GradientTape() as tape:
      d_loss, _, d_acc = losses.gan_losses(d((seen(x), encoded), training=True), d((seen(fake), z_d), training=True))
    _apply(self.d_optimizers[phase], d_loss, tape, d)

    d_stats = _snapshot(batchnorm_statistics(d))
    with tf.GradientTape() as tape:
      g_loss = losses.discriminator_loss_on(d((seen(g(z_g, training=True)), z_g), training=True), 1.0)
    _apply(self.g_optimizers[phase], g_loss, tape, g)
    with e_tape:  # resumes the tape that holds E(x)
      e_loss = losses.discriminator_loss_on(d((seen(x), encoded), training=True), 0.0)  # -log(1 - D(x, E(x)))
    _apply(self.e_optimizers[phase], e_loss, e_tape, e)
    _restore(batchnorm_statistics(d), d_stats)
    return dict(d_loss=d_loss, g_loss=g_loss, e_loss=e_loss, d_acc=d_acc)


def make_trainer(config, networks) -> EGBADTrainer:
  return EGBADTrainer(config, networks)


class EGBADScorer(base.OnePassScorer):
  """A(x) = (1 - lam) * L_R + lam * L_D with z = E(x), no search:

  L_R = |x - G(E(x))| and L_D = |f(x, E(x)) - f(G(E(x)), E(x))| (f = D's last feature layer),
  each the per-image mean over pixels / features with reduction="mean" (seed 000's convention, as
  --map_reduction) or the sum, Zenati's and seed 003's L1 norms, with "sum". E, G and D run in
  inference mode, so images do not affect each other: chunked scoring equals one-by-one scoring.
  One compiled function per chunk size; the last chunk is padded to it.
  """

  def __init__(self, generator, encoder, discriminator, lam: float = 0.1, reduction: str = "mean",
               batch_size: int = 0, ink_power: float = 0.0):
    if not 0.0 <= float(lam) <= 1.0:
      raise AnoganError(f"lam={lam} is outside [0, 1]")
    if reduction not in ("mean", "sum"):
      raise AnoganError(f"unknown reduction '{reduction}'; use mean or sum")
    self.generator, self.encoder, self.discriminator = generator, encoder, discriminator
    self.lam = float(lam)
    self.ink_power = base.checked_ink_power(ink_power)
    self.reduction = reduction
    self.example_shape = tuple(generator.image_shape)
    self.init_chunks(batch_size)

  def activation_floats_per_image(self) -> int:
    """Every layer output of E, G and D for one image (D twice: it sees x and G(E(x))), what the
    automatic chunk size budgets for."""
    d = self.discriminator
    joint_width = _kernel(d.joint_chain[0] if d.joint_chain else d.logits).shape[0]  # flatten + z_units
    joint_floats = memory.chain_floats(d.joint_chain, (joint_width,))
    return (memory.chain_floats(self.encoder.chain, self.image_shape)
            + memory.chain_floats(self.generator.chain, (self.generator.latent_dim,))
            + 2 * (memory.chain_floats(d.x_chain, self.image_shape) + d.z_units + joint_floats))

  def settings(self) -> dict:
    return {"lam": self.lam, "map_reduction": self.reduction, "map_batch_size": self.batch_size,
            **losses.ink_setting(self.ink_power)}

  def score_tensors(self, x) -> base.ScoreResult:
    z = self.encoder(x, training=False)
    reconstruction = self.generator(z, training=False)
    n = tf.shape(x)[0]
    # f of (x, E(x)) and (G(E(x)), E(x)) in one pass: (2 * batch, features), rows independent.
    features = self.discriminator.features((tf.concat([x, reconstruction], 0), tf.concat([z, z], 0)),
                                           training=False)
    residual = losses.residual_loss(x, reconstruction, self.reduction)
    discrimination = losses.discrimination_loss(features[:n], features[n:], self.reduction)
    score = losses.ink_normalised(losses.anomaly_score(residual, discrimination, self.lam), x, self.ink_power)
    return base.ScoreResult(score=score, reconstruction=reconstruction, residual_map=tf.abs(x - reconstruction),
                            parts={"residual": residual, "discrimination": discrimination}, extras={"z": z})


def make_scorer(config, networks, **overrides) -> EGBADScorer:
  """A scorer with --lam, --map_reduction, --map_batch_size (0: the largest power of two up to 1024
  images whose activations fit in a quarter of the available memory) and
  --ink_power; `overrides` replace any of lam, reduction, batch_size, ink_power."""
  settings = dict(lam=config.lam, reduction=config.map_reduction,
                  batch_size=config.map_batch_size, ink_power=config.ink_power)
  unknown = sorted(set(overrides) - set(settings))
  if unknown:
    raise AnoganError(f"egbad scorer has no setting {', '.join(unknown)}; use {', '.join(settings)}")
  settings.update(overrides)
  return EGBADScorer(networks["generator"], networks["encoder"], networks["discriminator"], **settings)
