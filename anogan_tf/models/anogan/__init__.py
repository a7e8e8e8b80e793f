"""AnoGAN (Schlegl et al. 2017), seed 000: a DCGAN trained on normal images, scored by the
LatentMapper's search for z (mapper.py).

Networks: seed 000's `Generator` and `Discriminator` (networks.py), saved as generator.keras and
discriminator.keras. Training, per batch: one D step, then `g_steps` (2) G steps on the same z
batch, sigmoid cross-entropy on logits. Adam at `lr` until epoch `lr_decay_epoch`, then fresh
Adam instances at `lr_after_decay` (the seed switches to separately built TF1 optimizers, so the
moments restart). Scoring: `LatentMapper` with the mapping settings (lam, map_steps, ...,
feature_layer).

For photographs (beyond the seeds): `--gan_loss=wgan_gp` trains D as a Wasserstein critic with
the gradient penalty (Gulrajani et al. 2017; f-AnoGAN's GAN): d_loss = mean D(fake) - mean D(real)
+ gp_weight * penalty, g_loss = -mean D(fake), d_acc still the share of logits on the right side
of 0; `--diffaugment` passes every batch D sees, real and fake alike, through DiffAugment (in D's
and G's steps, differentiably); `--d_spectral_norm` normalises D's weights (networks.py). The
penalty's and DiffAugment's draws come from one tf.random.Generator seeded by --seed, checkpointed
with the trainer ("augment_rng"), so a resumed run draws the same.

Warm start (beyond the seeds: f-AnoGAN's izi_f encoder, Schlegl et al. 2019): after the GAN,
`--encoder_epochs` train an encoder E (image -> z, saved as encoder.keras) with G and D frozen
and in inference mode, on the normal training images; the loss per image is
mean |x - G(E(x))| + kappa * mean |f(x) - f(G(E(x)))| (losses.residual_loss and
discrimination_loss with seed 000's mean reduction, f = D at --feature_layer), averaged over the
batch, Adam at --lr with the training Adam settings and no decay. E is `networks.Encoder`
(--e_filters, --e_strides, --e_batchnorm) ending in tanh for the U(-1, 1) prior (f-AnoGAN bounds
its encoder likewise), unbounded for a normal prior. `--initial_z=encoder` starts the
LatentMapper's search at E(x); `--map_steps=0` scores at E(x) with no search. The driver
(train_lib) runs E's epochs after the GAN's, checkpointed apart in checkpoints/encoder/.
"""

from __future__ import annotations

from typing import Dict

import keras
import numpy as np
import tensorflow as tf

import anogan_tf.models.base as base
from anogan_tf.config import one_of
from anogan_tf.config.checks import check_number, need
from anogan_tf.errors import AnoganError
from anogan_tf.models.anogan.mapper import LatentMapper
from anogan_tf.nn import augment, losses
from anogan_tf.nn.networks import Discriminator, Encoder, Generator, batchnorm_statistics

NAME = "anogan"
NETWORKS = ("generator", "discriminator")
GAN_DISCRIMINATOR = True  # --diffaugment and --d_spectral_norm apply to its D
ENCODER = "encoder"  # the warm-start encoder: <workdir>/encoder.keras, trained after the GAN
OPTIONAL_NETWORKS = (ENCODER,)  # in a workdir once --encoder_epochs has run


def check_config(config) -> None:
  """AnoGAN's own settings, in a config of any family: the search (--map_steps, --map_lrs,
  --map_restarts) and the warm start (--initial_z, --encoder_epochs), which only AnoGAN reads."""
  one_of(config.initial_z, ("random", "encoder"), "--initial_z")
  warm = config.initial_z == "encoder"
  need(config.model == "anogan" or not warm and config.encoder_epochs == 0,
       f"--initial_z=encoder and --encoder_epochs are AnoGAN's warm start, not {config.model}'s; use "
       "--model=anogan, or drop them")
  check_number(config, "map_restarts", 1, fix="use 1 (one search per image) or more")
  check_number(config, "encoder_epochs", 0, fix="use 0 (no warm-start encoder) or more epochs")
  need(config.map_restarts == 1 or config.strategy == "default",
       f"--map_restarts={config.map_restarts} runs on one device only; use --strategy=default with it, or "
       "--map_restarts=1")
  need(config.map_restarts == 1 or not warm and config.model == "anogan",
       f"--map_restarts={config.map_restarts} restarts AnoGAN's search from random z; use --map_restarts=1 "
       "with --initial_z=encoder (every restart would start at E(x)) and with the other families")
  need(config.model == "anogan" or config.gan_loss == "bce",
       f"--gan_loss={config.gan_loss} is AnoGAN's GAN loss, not {config.model}'s; use --model=anogan, or drop it")
  need(config.strategy == "default" or config.gan_loss == "bce" and not config.diffaugment,
       f"--diffaugment and --gan_loss=wgan_gp draw on one device's random generator; use --strategy=default with "
       f"them, not --strategy={config.strategy}")
  need(config.gan_loss != "wgan_gp" or config.d_step == "joint",
       "--gan_loss=wgan_gp penalises D's gradient between real and fake pictures in one update; use "
       "--d_step=joint with it")
  if not (warm and config.map_steps == (0,)):  # no search: the score at E(x)
    check_number(config, "map_steps", 1, fix="use 1 or more iterations per stage, e.g. 50,100 (--map_steps=0, no "
                 "search, only with --initial_z=encoder)")
  stages = len(config.map_steps)
  need(stages > 0 and (stages == len(config.map_lrs) or warm and stages == 1),
       "--map_steps and --map_lrs need the same number of stages (at least one); with --initial_z=encoder a "
       "single --map_steps=K runs K steps at the last --map_lrs")


def build_networks(config) -> Dict[str, keras.Model]:
  """{"generator": G, z (N, latent_dim) -> images (N, h, w, c) in [-1, 1];
  "discriminator": D, images -> logits (N, 1)}."""
  return {"generator": Generator(name="generator", **config.generator_kwargs()),
          "discriminator": Discriminator(name="discriminator", **config.discriminator_kwargs())}


def noise(rng: np.random.Generator, n: int, config) -> np.ndarray:
  """z (n, latent_dim) float32 from the training prior: U(-1, 1) (seed 000) or N(0, 1)."""
  shape = (n, config.latent_dim)
  if config.z_prior == "normal":
    return rng.standard_normal(shape).astype(np.float32)
  return rng.uniform(-1.0, 1.0, shape).astype(np.float32)


def sample(networks, noise) -> np.ndarray:
  """G(z) (n, h, w, c) in [-1, 1], G in inference mode."""
  return networks["generator"](tf.convert_to_tensor(noise, tf.float32), training=False).numpy()


def _restore(variables, values):
  for variable, value in zip(variables, values):
    variable.assign(value)


class GANTrainer(base.Trainer):
  """G, D and their four Adam instances (one per network and learning-rate phase).

  `train_step(x, z, phase)` is seed 000's batch (`_train_batch`); it returns g_loss, d_loss and
  d_acc. The checkpoint names (d_optimizer, g_optimizer, d_optimizer_after_decay,
  g_optimizer_after_decay) are those of the workdirs written before the families existed, so
  they resume; the decay phase's optimizers exist even when lr_decay_epoch is 0, as they did.
  """

  loss_names = ("g_loss", "d_loss", "d_acc")
  n_phases = 2
  collapse_loss = "d_loss"
  averages_weights = True

  def __init__(self, config, networks):
    super().__init__(name="gan_trainer")
    self.config = config
    self.generator, self.discriminator = networks["generator"], networks["discriminator"]

    self.policy = augment.parse_policy(config.diffaugment)
    self.wasserstein = config.gan_loss == "wgan_gp"
    if self.wasserstein:
      self.collapse_loss = None  # a critic's loss has no floor to collapse to
    self.rng = augment.generator(config.training_seed) if self.policy or self.wasserstein else None  # and the penalty's
    averaged = base.averaged_phase(config)  # --ema_momentum: the last phase's Adams keep the average
    rates = (config.lr, config.lr_after_decay)
    self.d_optimizers = [base.adam(config, lr, i == averaged) for i, lr in enumerate(rates)]
    self.g_optimizers = [base.adam(config, lr, i == averaged) for i, lr in enumerate(rates)]
    for opt in self.d_optimizers:  # built now: tf.function may not create variables later
      opt.build(self.discriminator.trainable_variables)
    for opt in self.g_optimizers:
      opt.build(self.generator.trainable_variables)

  def checkpoint_items(self) -> dict:
    items = dict(d_optimizer=self.d_optimizers[0], g_optimizer=self.g_optimizers[0],
                 d_optimizer_after_decay=self.d_optimizers[1], g_optimizer_after_decay=self.g_optimizers[1])
    if self.rng is not None:  # only then: the checkpoints of the other settings stay as they were
      items["augment_rng"] = self.rng
    return items

  def finalize(self) -> None:
    base.finalize_averages([(self.d_optimizers, self.discriminator.trainable_variables),
                            (self.g_optimizers, self.generator.trainable_variables)])

  def augmented(self, images):
    """What D sees of a batch: DiffAugment's fresh variant with --diffaugment, else the batch."""
    return augment.diff_augment(images, self.policy, self.rng) if self.policy else images

  def _losses(self, real_logits, fake_logits):
    """(d_loss, g_loss, d_acc) of the configured GAN loss, without the gradient penalty."""
    d_loss, g_loss, d_acc = losses.gan_losses(real_logits, fake_logits)
    if self.wasserstein:
      d_loss, g_loss = losses.wasserstein_losses(real_logits, fake_logits)
    return d_loss, g_loss, d_acc

  def _penalty(self, real, fake):
    """gp_weight * WGAN-GP's penalty between the batches D saw (0 for the bce loss)."""
    if not self.wasserstein:
      return 0.0
    epsilon = self.rng.uniform((tf.shape(real)[0], 1, 1, 1), dtype=real.dtype)
    critic = lambda images: self.discriminator(images, training=True)  # noqa: E731
    return self.config.gp_weight * losses.gradient_penalty(critic, real, fake, epsilon)

  def phase(self, epoch: int) -> int:
    decay = self.config.lr_decay_epoch
    return int(decay > 0 and epoch >= decay)

  def train_step(self, x, noise, phase: int) -> Dict[str, tf.Tensor]:
    d_loss, d_acc, g_loss = self._train_batch(x, noise, phase)
    return {"g_loss": g_loss, "d_loss": d_loss, "d_acc": d_acc}

  def _d_step(self, x, fake, optimizer):
    """D's update on real x and fake G(z), computed by the caller (D's tape does not see G).

    `d_step="joint"` (seed 000): one update on the summed loss. `"separate"` (seed 002): one
    update on the real batch, then one on the fake batch, which the updated D sees.
    """
    d = self.discriminator
    x, fake = self.augmented(x), self.augmented(fake)
    if self.config.d_step == "joint":
      with tf.GradientTape() as tape:
        d_loss, _, d_acc = self._losses(d(x, training=True), d(fake, training=True))
        d_loss += self._penalty(x, fake)
      optimizer.apply_gradients(zip(tape.gradient(d_loss, d.trainable_variables), d.trainable_variables))
      return d_loss, d_acc
    parts, logits = [], []
    for images, label in ((x, 1.0), (fake, 0.0)):
      with tf.GradientTape() as tape:
        batch_logits = d(images, training=True)
        loss = losses.discriminator_loss_on(batch_logits, label)
      optimizer.apply_gradients(zip(tape.gradient(loss, d.trainable_variables), d.trainable_variables))
      parts.append(loss)
      logits.append(batch_logits)
    _, _, d_acc = losses.gan_losses(*logits)
    return parts[0] + parts[1], d_acc

  def _g_step(self, z, optimizer, recorded=None):
    """G's update on z; `recorded` is (tape, G(z)) when G's forward pass is already on a tape."""
    g, d = self.generator, self.discriminator
    d_stats = [tf.identity(v) for v in batchnorm_statistics(d)]  # TF1 ran only G's update ops
    if recorded is None:
      tape = tf.GradientTape()
      with tape:
        fake = g(z, training=True)
    else:
      tape, fake = recorded
    with tape:  # resumes recording on the tape that holds G's forward pass
      fake_logits = d(self.augmented(fake), training=True)
      _, g_loss, _ = self._losses(tf.zeros_like(fake_logits), fake_logits)
    optimizer.apply_gradients(zip(tape.gradient(g_loss, g.trainable_variables), g.trainable_variables))
    _restore(batchnorm_statistics(d), d_stats)
    return g_loss

  def _train_batch(self, x, z, phase):
    """Seed 000's batch: one D step, then `g_steps` G steps on the same z; returns the losses.

    G does not change during the D step, so G(z) in the D step and in the first G step are the
    same tensor: it is computed once, on the tape of that G step. G's BN statistics update in
    that forward pass, once, as in the seed's first G step (the seed's D step ran only D's update
    ops, so it left them alone; with no G step they are put back).
    """
    g = self.generator
    if self.config.d_fakes_mode == "inference":  # seed 002: generator.predict, BN on moving statistics
      recorded = None
      d_fake = g(z, training=False)
    else:
      g_stats = [tf.identity(v) for v in batchnorm_statistics(g)]  # put back if no G step runs
      tape = tf.GradientTape()
      with tape:
        d_fake = g(z, training=True)
      recorded = (tape, d_fake)
    d_loss, d_acc = self._d_step(x, d_fake, self.d_optimizers[phase])
    g_loss = tf.constant(0.0)
    for step in range(self.config.g_steps):  # the seed's G loss is the last step's
      g_loss = self._g_step(z, self.g_optimizers[phase], recorded=recorded if step == 0 else None)
    if self.config.g_steps == 0 and recorded is not None:
      _restore(batchnorm_statistics(g), g_stats)
    return d_loss, d_acc, g_loss


def make_trainer(config, networks) -> GANTrainer:
  return GANTrainer(config, networks)


def scoring_networks(config) -> tuple:
  """The networks make_scorer needs: G and D, and E with --initial_z=encoder."""
  return NETWORKS + ((ENCODER,) if config.initial_z == "encoder" else ())


def untrained_network_hint(name: str, workdir: str) -> str:
  """What to do when scoring needs network `name` (one outside NETWORKS) and the workdir has none."""
  return (f"--initial_z=encoder starts the search from AnoGAN's warm-start encoder, which this workdir has not "
          f"trained; train it with python -m anogan_tf.train --workdir={workdir} --encoder_epochs=10 (the "
          "GAN is kept), or use --initial_z=random")


def make_scorer(config, networks, **overrides) -> base.Scorer:
  """The LatentMapper with the config's mapping settings (Config.mapper_kwargs) and, with
  --initial_z=encoder, networks["encoder"] as its start; `overrides` replace any of them
  (LatentMapper's keyword arguments). With --map_restarts=R > 1, a `RestartScorer` over R such
  mappers whose random starts are independent (the first is the R = 1 mapper)."""
  kwargs = config.mapper_kwargs()
  if config.initial_z == "encoder":
    if ENCODER not in networks:
      raise AnoganError("--initial_z=encoder needs the warm-start encoder (networks['encoder']); train it with "
                        "--encoder_epochs, or use --initial_z=random")
    kwargs["encoder"] = networks[ENCODER]
  kwargs.update(overrides)
  mappers = [LatentMapper(networks["generator"], networks["discriminator"],
                          **{**kwargs, "seed": kwargs["seed"] + RESTART_SEED_STRIDE * k})
             for k in range(config.map_restarts)]
  return mappers[0] if len(mappers) == 1 else RestartScorer(mappers)


RESTART_SEED_STRIDE = 1_000_003  # restart k draws its starts from seed + k * this: streams apart from other seeds'


class RestartScorer(base.Scorer):
  """AnoGAN's search run from several independent random starts per image (one LatentMapper
  each, same settings, other seeds); per image the restart with the lowest final loss gives the
  score, reconstruction, residual map, parts and extras. A restart stuck in a poor local minimum
  makes a normal image look anomalous; the best of R cuts that, at R times the cost."""

  def __init__(self, mappers):
    self.mappers = list(mappers)
    first = self.mappers[0]
    self.batch_size, self.example_shape, self.latent_dim = first.batch_size, first.example_shape, first.latent_dim
    self.seed = first.seed  # restart k draws from seed + k * RESTART_SEED_STRIDE

  def settings(self) -> dict:
    return {**self.mappers[0].settings(), "map_restarts": len(self.mappers)}

  def export_metadata(self) -> dict:
    """Every restart draws its keyed start inside the graph, from seed + k * RESTART_SEED_STRIDE."""
    return {"latent_dim": int(self.latent_dim), "seed": self.seed, "start": "keyed", "restarts": len(self.mappers),
            "restart_seed_stride": RESTART_SEED_STRIDE}

  def score_chunks(self, images):
    for results in zip(*(mapper.score_chunks(images) for mapper in self.mappers)):
      best = np.argmin(np.stack([r.score for r in results]), axis=0)  # (n,) restart per image
      rows = np.arange(len(best))
      yield _each_field(results, lambda arrays: np.stack(arrays)[best, rows])

  def score_tensors(self, x) -> base.ScoreResult:
    """`score` as one graph (base.Scorer.score_tensors): each restart's search from its own keyed
    start (LatentMapper.score_tensors, that mapper's seed), per image the restart with the lowest
    final loss, ties to the first as in `score_chunks`."""
    results = [mapper.score_tensors(x) for mapper in self.mappers]
    best = tf.argmin(tf.stack([r.score for r in results], axis=1), axis=1, output_type=tf.int32)  # (batch,)
    # (batch, ...) per restart -> each image's row of its best restart
    return _each_field(results, lambda tensors: tf.gather(tf.stack(tensors, axis=1), best, axis=1, batch_dims=1))


def _each_field(results, pick) -> base.ScoreResult:
  """One ScoreResult whose every field is pick([that field of each result])."""
  first = results[0]
  return base.ScoreResult(
      score=pick([r.score for r in results]), reconstruction=pick([r.reconstruction for r in results]),
      residual_map=pick([r.residual_map for r in results]),
      parts={k: pick([r.parts[k] for r in results]) for k in first.parts},
      extras={k: pick([r.extras[k] for r in results]) for k in first.extras})


# --- warm start: the encoder E trained after the GAN

def build_encoder(config) -> Encoder:
  """E: images (N, h, w, c) in [-1, 1] -> z (N, latent_dim); in (-1, 1) (tanh) for the uniform
  prior, unbounded for the normal one."""
  return Encoder(name=ENCODER, **config.encoder_kwargs(), heads=1,
                 output_activation="tanh" if config.z_prior == "uniform" else "linear")


class EncoderTrainer(base.Trainer):
  """E's optimisation with G and D frozen: `train_step(x, noise, phase)` is one Adam step on the
  batch mean of mean |x - G(E(x))| + kappa * mean |f(x) - f(G(E(x)))|, E in training mode, G and
  D in inference mode (their weights and BN statistics stay as they are); returns loss and its
  two parts (batch means). `noise` is ignored; one learning-rate phase (--lr)."""

  loss_names = ("loss", "residual", "discrimination")

  def __init__(self, config, networks, encoder):
    super().__init__(name="encoder_trainer")
    self.config = config
    self.generator, self.discriminator, self.encoder = networks["generator"], networks["discriminator"], encoder
    self.feature_layer = config.feature_layer
    self.discriminator.check_feature_layer(self.feature_layer)
    self.optimizer = base.adam(config, config.lr)  # a stage: --ema_momentum averages the family's own epochs only
    self.optimizer.build(self.encoder.trainable_variables)  # now: tf.function may not create variables

  def checkpoint_items(self) -> dict:
    return {"optimizer": self.optimizer}

  def loss_parts(self, x, training: bool = False):
    """(per-image loss, residual, discrimination), each (batch,), and G(E(x))."""
    d, layer = self.discriminator, self.feature_layer
    generated = self.generator(self.encoder(x, training=training), training=False)
    residual = losses.residual_loss(x, generated)
    discrimination = losses.discrimination_loss(d.features(x, training=False, layer=layer),
                                                d.features(generated, training=False, layer=layer))
    return residual + self.config.kappa * discrimination, residual, discrimination, generated

  def train_step(self, x, noise, phase: int) -> Dict[str, tf.Tensor]:
    variables = self.encoder.trainable_variables
    with tf.GradientTape() as tape:
      per_image, residual, discrimination, _ = self.loss_parts(x, training=True)
      loss = tf.reduce_mean(per_image)
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return {"loss": loss, "residual": tf.reduce_mean(residual), "discrimination": tf.reduce_mean(discrimination)}


def _encoder_stage(config, networks):
  """(E, its trainer) on the trained G and D."""
  encoder = build_encoder(config)
  return encoder, EncoderTrainer(config, networks, encoder)


def _reconstructions(encoder, trainer, x) -> np.ndarray:
  """Rows of 8 images x over rows of their G(E(x)), all in inference mode: (2 * len(x), h, w, c)."""
  generated = trainer.generator(encoder(x, training=False), training=False).numpy()
  rows = [part for start in range(0, len(x), 8) for part in (x[start:start + 8], generated[start:start + 8])]
  return np.concatenate(rows)


# The warm-start encoder, trained after the GAN (--encoder_epochs). Its random streams are apart
# from the GAN's (seed, e); its settings are free to change until its training has begun.
WARM_START = base.Stage(name=ENCODER, network=ENCODER, epochs_field="encoder_epochs",
                        fields=("kappa", "e_filters", "e_strides", "e_batchnorm", "feature_layer"), seed=2**31 - 2,
                        build=_encoder_stage, samples=_reconstructions, what="the warm-start encoder",
                        retry="e.g. with a lower --kappa")
STAGES = (WARM_START,)
